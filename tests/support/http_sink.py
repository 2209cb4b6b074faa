"""A real HTTP receiver on loopback that records requests and plays back scripted responses."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpSink", "RecordedRequest", "ScriptedResponse", "running_http_sink"]


@dataclass(frozen=True)
class ScriptedResponse:
    """One answer; `delay` (seconds) before answering lets tests provoke client timeouts.

    `trickle` (seconds) sends the answer one byte at a time with that pause between bytes, after
    the status line, so a client's per-read timeout never fires; `hold` (a threading.Event) keeps
    trickling bytes of padding headers until it is set, then finishes the answer.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str = b"ok"
    delay: float = 0.0
    trickle: float = 0.0
    hold: threading.Event | None = None

    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass(frozen=True)
class RecordedRequest:
    """What arrived; header names are lower-cased (HTTP header names are case-insensitive)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _SinkServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real receivers; needs Content-Length below

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.sink.record(RecordedRequest(self.command, self.path, headers, body))
        if response.delay:
            time.sleep(response.delay)
        try:
            self._answer(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests); nothing to report

    def _answer(self, response: ScriptedResponse) -> None:
        if response.trickle:
            self._trickle(response)
            return
        payload = response.body_bytes()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        self.server.sink.answered(self.path)

    def _trickle(self, response: ScriptedResponse) -> None:
        payload = response.body_bytes()
        head = f"HTTP/1.1 {response.status} Scripted\r\n".encode()
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in response.headers.items())
        self.wfile.write(head)
        self.wfile.flush()
        while response.hold is not None and not response.hold.is_set():
            for byte in b"X-Slow: 1\r\n":  # one padding header, a byte at a time
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(response.trickle)
        tail = f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
        for byte in tail:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            if response.hold is None:
                time.sleep(response.trickle)
        self.server.sink.answered(self.path)

    do_POST = do_PUT = do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler sleeping for a timeout test must not block shutdown

    def __init__(self, sink: HttpSink) -> None:
        self.sink = sink
        super().__init__(("127.0.0.1", 0), _Handler)


class HttpSink:
    """Threaded HTTP server; script answers with `respond(...)`, read `requests` afterwards."""

    def __init__(self, default: ScriptedResponse | None = None) -> None:
        self.default = default or ScriptedResponse()
        self._script: deque[ScriptedResponse] = deque()
        self._routes: dict[str, ScriptedResponse] = {}
        self.events: list[tuple[str, str]] = []  # ("request" | "answered", path), in order
        self.on_event: Callable[[str, str], None] | None = None  # also told of each event
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = _SinkServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def respond(self, *responses: ScriptedResponse) -> None:
        """Queue answers for the next requests, in order; afterwards `default` answers."""
        with self._lock:
            self._script.extend(responses)

    def route(self, path: str, response: ScriptedResponse) -> None:
        """Every request for `path` gets `response` (before the script and the default)."""
        with self._lock:
            self._routes[path] = response

    def _event(self, kind: str, path: str) -> None:
        with self._lock:
            self.events.append((kind, path))
        if self.on_event is not None:
            self.on_event(kind, path)

    def answered(self, path: str) -> None:
        self._event("answered", path)

    def record(self, request: RecordedRequest) -> ScriptedResponse:
        self._event("request", request.path)
        with self._lock:
            self._requests.append(request)
            if request.path in self._routes:
                return self._routes[request.path]
            return self._script.popleft() if self._script else self.default

    def start(self) -> HttpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def running_http_sink(default: ScriptedResponse | None = None) -> Iterator[HttpSink]:
    sink = HttpSink(default).start()
    try:
        yield sink
    finally:
        sink.stop()
