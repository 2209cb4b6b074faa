"""uvicorn inside the daemon's own event loop, with every HTTP client bounded.

uvicorn's h11 protocol arms no timer until a first response is sent, so a client that connects
and says nothing (or trickles its request head a byte at a time) holds a descriptor forever:
about 1,000 of them exhaust a 1024-descriptor limit and /healthz stops answering. The protocol
here adds what is missing: a cap on open connections (the oldest idle one makes room for a new
one, so a health check always gets in), a deadline for the request head, a request-line limit
(414) and status codes from h11's own hints (431 for a head too large). Body size and the whole
request's deadline are the ASGI guard's (`guard.py`).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["WebLimits", "WebServer", "WebStats", "raise_descriptor_limit"]

log = structlog.get_logger("crdswatch.web")

FD_RESERVE = 128  # descriptors kept for everything that is not an HTTP client (DB, SMTP, CRDS, logs)
# asyncio accepts up to `backlog` connections per wake-up before any connection_made can shed one,
# and a shed connection's descriptor is released only a loop turn later: on a busy machine a batch
# still closing and a new batch are open together above max_connections. The descriptor budget
# counts both (with one batch counted, a 256-descriptor daemon hit EMFILE under load).
ACCEPT_BATCH = 128
_BATCHES_IN_FLIGHT = 2


def accept_batch(max_connections: int) -> int:
    return min(ACCEPT_BATCH, max_connections)


def connection_cap(descriptors: int) -> int:
    """The most connections that fit in `descriptors` with their accept batch and FD_RESERVE."""
    room = descriptors - FD_RESERVE
    if room >= (_BATCHES_IN_FLIGHT + 1) * ACCEPT_BATCH:
        return max(8, room - _BATCHES_IN_FLIGHT * ACCEPT_BATCH)
    return max(8, room // (_BATCHES_IN_FLIGHT + 1))  # the cap and its batches, each as large


@dataclass(frozen=True)
class WebLimits:
    """Bounds on HTTP clients; `[http]` keys of the same names (config/crdswatch.example.toml)."""

    max_connections: int = 256  # open client connections at once
    header_timeout: float = 10.0  # seconds from connect (or the previous response) to a complete head
    keepalive_timeout: float = 5.0  # an idle kept-alive connection is closed after this
    request_deadline: float = 30.0  # one request, body read to last response byte
    max_body_bytes: int = 64 * 1024  # a form post or an RFC 8058 one-click body is tiny
    max_line_bytes: int = 8192  # the request line (method, target, version)
    max_head_bytes: int = 32 * 1024  # request line plus all headers
    max_headers: int = 100


@dataclass
class WebStats:
    """Connections the protocol cut short, by reason, for /metrics and the log.

    shed: an idle connection closed to make room for a new one; refused: a new connection turned
    away because every open one had a request in flight; head_timeout: no complete request head
    in time; rejected: a request answered 4xx by the protocol itself (line, head, syntax).
    """

    counts: dict[str, int] = field(default_factory=dict)
    listener: Callable[[str], None] | None = None

    def count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.listener is not None:
            self.listener(reason)
        if reason in ("shed", "refused") and self.counts[reason] in (1, 100, 10_000):  # log, not flood
            log.warning("web connections cut", reason=reason, total=self.counts[reason])


class _Connection(h11.Connection):
    """h11's connection, remembering the last protocol error (its status hint picks 400 or 431)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class BoundedH11Protocol(H11Protocol):
    LIMITS = WebLimits()
    STATS = WebStats()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._h11 = _Connection(h11.SERVER, self.LIMITS.max_head_bytes)
        self.conn = self._h11
        self.opened = time.monotonic()
        self._line = 0  # bytes of the current request line seen so far; -1 once it is complete
        self._head_timer: asyncio.TimerHandle | None = None

    # -- connection cap -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()
        if len(self.connections) > self.LIMITS.max_connections:
            self._make_room()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self) -> None:
        # A closed transport leaves the set only on the next loop turn; in a burst many
        # connection_made calls run before that, so count (and pick from) the live ones only.
        live = [c for c in self.connections if isinstance(c, BoundedH11Protocol) and not c.transport.is_closing()]
        if len(live) <= self.LIMITS.max_connections:
            return
        idle = [c for c in live if c is not self and c._idle()]
        if idle:
            oldest = min(idle, key=lambda c: c.opened)
            oldest.transport.close()  # connection_lost removes it from the set
            self.STATS.count("shed")
            return
        self.STATS.count("refused")
        self._reply_and_close(503, "too many connections\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # -- request head: deadline and line length -------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.LIMITS.header_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.STATS.count("head_timeout")
            self._reply_and_close(408, "request head not received in time\n")

    def data_received(self, data: bytes) -> None:
        if self._line >= 0 and self.conn.their_state is h11.IDLE:
            end = data.find(b"\n")
            self._line += len(data) if end < 0 else end
            if self._line > self.LIMITS.max_line_bytes:
                self.STATS.count("rejected")
                self._reply_and_close(414, "request line too long\n")
                return
            if end >= 0:
                self._line = -1
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head is in: the request deadline takes over
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        self._line = 0
        self._arm_head_timer()  # a kept-alive connection owes its next head in time too
        super().on_response_complete()

    # -- error replies --------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        error = self._h11.last_error
        status = error.error_status_hint if error is not None else 400
        self.STATS.count("rejected")
        self._reply_and_close(status, "request head too large\n" if status == 431 else "bad request\n")

    def _reply_and_close(self, status: int, text: str) -> None:
        body = text.encode()
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n")
        if not self.transport.is_closing():
            self.transport.write(head.encode("latin-1") + body)
            self.transport.close()


def raise_descriptor_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward `wanted` (never past the hard limit); the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class WebServer:
    """One uvicorn server on the running loop; `start` binds (an OSError says why), `stop` drains."""

    def __init__(self, app: Any, host: str, port: int, limits: WebLimits, stats: WebStats | None = None) -> None:
        self.app, self.host, self.port = app, host, port
        self.limits = limits
        self.stats = stats or WebStats()
        self._server: uvicorn.Server | None = None

    def _effective_limits(self) -> WebLimits:
        wanted = self.limits.max_connections
        soft = raise_descriptor_limit(wanted + _BATCHES_IN_FLIGHT * accept_batch(wanted) + FD_RESERVE)
        if soft == resource.RLIM_INFINITY or connection_cap(soft) >= wanted:
            return self.limits
        cap = connection_cap(soft)
        log.warning("descriptor limit below [http] max_connections; connections capped lower",
                    rlimit_nofile=soft, max_connections=self.limits.max_connections, cap=cap)
        return WebLimits(**{**self.limits.__dict__, "max_connections": cap})

    async def start(self) -> None:
        limits = self._effective_limits()
        protocol = type("CrdswatchH11Protocol", (BoundedH11Protocol,), {"LIMITS": limits, "STATS": self.stats})
        backlog = accept_batch(limits.max_connections)  # the peak above max_connections
        sock = _bind(self.host, self.port, backlog)
        config = uvicorn.Config(
            self.app, http=protocol, lifespan="off", log_config=None, access_log=False,
            server_header=False, date_header=False, proxy_headers=False, backlog=backlog,
            timeout_keep_alive=max(1, round(limits.keepalive_timeout)), timeout_graceful_shutdown=3,
            h11_max_incomplete_event_size=limits.max_head_bytes,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server

    @property
    def open_connections(self) -> int:
        return len(self._server.server_state.connections) if self._server is not None else 0

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()
