"""A real HTTP receiver on loopback that records requests and plays back scripted responses."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpSink", "RecordedRequest", "ScriptedResponse", "running_http_sink"]


@dataclass(frozen=True)
class ScriptedResponse:
    """One answer; `delay` (seconds) before answering lets tests provoke client timeouts."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str = b"ok"
    delay: float = 0.0

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
        payload = response.body_bytes()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

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

    def record(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self._requests.append(request)
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
