"""A loopback CRDS server replaying real JWST history, with activation control and fault injection."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from crdswatch.contexts.history import crds_encode
from crdswatch.devtools.replay_state import ReplayState, RpcFault, load_config_cached

__all__ = ["FAULT_KINDS", "Fault", "ReplayServer", "serve_forever"]

FAULT_KINDS = ("http500", "timeout", "reset", "nonjson", "rpcerror", "truncated", "badsha1")
DEFAULT_ENCODE_THRESHOLD = 32 * 1024  # bytes of JSON; bigger results go out crds_encoded


@dataclass
class Fault:
    """The next `count` matching requests misbehave as `kind`; target is any, rpc or download."""

    kind: str
    count: int
    target: str = "any"
    delay: float = 3.0  # how long a "timeout" request hangs before the socket is dropped


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's listen backlog is 5: a client opening its 8 download connections at once had
    # one SYN dropped now and then, and that connection waited for the kernel's retry, 1 s later
    # (bench/replay_history.py: 1 run in 2 had one GET of ~1,030 ms). A real server's is larger.
    request_queue_size = 128
    replay: ReplayServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server behind a proxy
    # Small responses otherwise wait on the peer's delayed ACK (~40 ms each on Linux).
    disable_nagle_algorithm = True
    # Buffered: an answer's head and body leave in one write when the handler returns (the server
    # flushes then), one segment on loopback and one wake-up of the client instead of two each; a
    # backfill downloads ~1,300 mappings from this server.
    wbufsize = 256 * 1024
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo stay quiet; the CLI reports activations itself

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str = "application/json", fault: Fault | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault is not None and fault.kind == "truncated":
            # Promise the whole body, deliver half, hang up: what a dropped proxy connection looks like.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self._hang_up(abortive=False)
            return
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"))

    def _hang_up(self, abortive: bool) -> None:
        self.close_connection = True
        try:
            if abortive:  # SO_LINGER 0 turns close() into a TCP RST
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _apply_fault(self, fault: Fault | None) -> bool:
        """Misbehave before answering; True when the request has been dealt with."""
        if fault is None:
            return False
        if fault.kind == "http500":
            self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
        elif fault.kind == "nonjson":
            self._send(200, b"<html><body>Service temporarily unavailable</body></html>", "text/html")
        elif fault.kind == "reset":
            self._hang_up(abortive=True)
        elif fault.kind == "timeout":
            self.server.replay.stopping.wait(fault.delay)
            self._hang_up(abortive=False)
        else:
            return False  # rpcerror, truncated, badsha1 shape the real answer instead
        return True

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        replay = self.server.replay
        if self.path == "/control/state":
            self._json(200, replay.state())
            return
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["unchecked_get", "mappings"]:
            fault = replay.take_fault("download")
            if self._apply_fault(fault):
                return
            path = replay.state_model.mapping_path(parts[3]) if parts[2] == replay.state_model.observatory else None
            if path is None:
                self._send(404, b"Not Found", "text/plain")
                return
            data = path.read_bytes()
            if fault is not None and fault.kind == "badsha1":
                data += b"# altered in transit\n"  # still a clean transfer, but not the file
            self._send(200, data, "text/plain", fault)
            return
        self._send(404, b"Not Found", "text/plain")

    def do_POST(self) -> None:
        replay = self.server.replay
        body = self._body()
        if self.path.startswith("/control/"):
            self._control(self.path, body)
            return
        if not (self.path == "/json" or self.path.startswith("/json/")):
            self._send(404, b"Not Found", "text/plain")
            return
        fault = replay.take_fault("rpc")
        if self._apply_fault(fault):
            return
        try:
            request = json.loads(body)
            method, params, msg_id = request["method"], request.get("params", []), request.get("id")
            if not isinstance(method, str) or not isinstance(params, list):
                raise TypeError("method must be a string and params a list")
        except (ValueError, KeyError, TypeError) as exc:
            self._json(400, {"error": {"code": 400, "name": "ParseError", "message": str(exc), "data": None}})
            return
        replay.calls.append(method)
        reply: dict[str, Any] = {"jsonrpc": "1.0", "id": msg_id, "error": None, "result": None}
        try:
            if fault is not None and fault.kind == "rpcerror":
                raise RpcFault("OtherError", f"Injected fault in {method}")
            result = replay.state_model.dispatch(method, params, replay.url)
            if len(json.dumps(result)) > replay.encode_threshold:
                result = crds_encode(result)
            reply["result"] = result
        except RpcFault as exc:
            reply["error"] = {"code": 500, "name": exc.name, "message": exc.message, "data": None}
        self._send(200, json.dumps(reply).encode("utf-8"), fault=fault)

    def _control(self, path: str, body: bytes) -> None:
        replay = self.server.replay
        try:
            args = json.loads(body) if body.strip() else {}
            if not isinstance(args, dict):
                raise TypeError("body must be a JSON object")
            if path == "/control/activate-next":
                row = replay.activate_next()
                if row is None:
                    self._json(409, {"error": "no more activations in history"})
                else:
                    self._json(200, row)
            elif path == "/control/activate":
                self._json(200, replay.activate(str(args["context"])))
            elif path == "/control/fault":
                replay.inject_fault(
                    str(args["kind"]), int(args.get("count", 1)),
                    target=args.get("target"), delay=float(args.get("delay", 3.0)),
                )
                self._json(200, replay.state())
            elif path == "/control/affected-not-ready":
                replay.state_model.affected_not_ready = max(0, int(args.get("count", 0)))
                self._json(200, replay.state())
            elif path == "/control/clear-faults":
                replay.clear_faults()
                self._json(200, replay.state())
            else:
                self._json(404, {"error": f"unknown control endpoint {path}"})
        except LookupError as exc:
            self._json(404, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            self._json(400, {"error": str(exc)})


class ReplayServer:
    """Real HTTP on 127.0.0.1 (ephemeral port unless told), one thread per request."""

    def __init__(
        self,
        mappings_dir: Path,
        server_config_path: Path,
        upto: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        encode_threshold: int = DEFAULT_ENCODE_THRESHOLD,
        legacy_default_context: bool = False,
        affected_not_ready: int = 0,
    ) -> None:
        config = load_config_cached(Path(server_config_path))
        self.state_model = ReplayState(Path(mappings_dir), config, upto, legacy_default_context)
        # get_affected_datasets answers "not computed yet" to the first N calls for each switch.
        self.state_model.affected_not_ready = affected_not_ready
        self.host = host
        self.port = port
        self.encode_threshold = encode_threshold
        self.calls: list[str] = []  # JSON-RPC method names served, in order (list.append is atomic)
        self.stopping = threading.Event()
        self._faults: list[Fault] = []
        self._fault_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ReplayServer is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    @property
    def context(self) -> str:
        return self.state_model.current

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = _Server((self.host, self.port), _Handler)
        httpd.replay = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="crds-replay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.stopping.set()  # wakes handlers parked in a "timeout" fault
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control, also reachable over HTTP under /control/ -------------------------------------

    def activate_next(self) -> dict[str, Any] | None:
        return self.state_model.activate_next()

    def activate(self, context: str) -> dict[str, Any]:
        return self.state_model.activate(context)

    def inject_fault(self, kind: str, count: int = 1, *, target: str | None = None, delay: float = 3.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        target = target or ("download" if kind == "badsha1" else "any")
        if target not in ("any", "rpc", "download"):
            raise ValueError(f"unknown fault target {target!r}")
        if count > 0:
            with self._fault_lock:
                self._faults.append(Fault(kind, count, target, delay))

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def take_fault(self, kind_of_request: str) -> Fault | None:
        with self._fault_lock:
            for fault in self._faults:
                if fault.target in ("any", kind_of_request):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def state(self) -> dict[str, Any]:
        with self._fault_lock:
            faults = [{"kind": f.kind, "count": f.count, "target": f.target} for f in self._faults]
        return {**self.state_model.snapshot(), "faults": faults, "rpc_calls": len(self.calls),
                "affected_not_ready": self.state_model.affected_not_ready}


def serve_forever(
    mappings_dir: Path,
    server_config_path: Path,
    upto: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    encode_threshold: int = DEFAULT_ENCODE_THRESHOLD,
    legacy_default_context: bool = False,
    on_ready: Callable[[ReplayServer], None] | None = None,
    affected_not_ready: int = 0,
) -> None:
    """Run a ReplayServer in the foreground until Ctrl-C or SIGTERM."""
    server = ReplayServer(
        mappings_dir, server_config_path, upto, host=host, port=port,
        encode_threshold=encode_threshold, legacy_default_context=legacy_default_context,
        affected_not_ready=affected_not_ready,
    )
    with server:
        if on_ready is not None:
            on_ready(server)
        else:
            print(f"CRDS replay server at {server.url} serving {server.context}", flush=True)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (docker stop, kill) ends the server as cleanly as Ctrl-C does.
            signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())
        try:
            while not server.stopping.wait(0.5):  # a timed wait keeps Ctrl-C responsive
                pass
        except KeyboardInterrupt:
            pass
