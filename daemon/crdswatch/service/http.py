"""A deliberately small asyncio HTTP/1.1 server for /healthz, /metrics, /feed.atom and /unsubscribe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

__all__ = ["Handler", "Request", "Response", "start_http_server"]

_MAX_LINE = 8192
_MAX_HEADERS = 100
_MAX_BODY = 64 * 1024
_TIMEOUT = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name) or parse_qs(self.body.decode("latin-1")).get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


async def _read_request(reader: asyncio.StreamReader) -> Request | Response:
    try:  # the stream's limit is _MAX_LINE: a longer line overruns it
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        return Response(414, b"request line too long\n")
    try:
        method, target, _version = line.decode("latin-1").strip().split(" ", 2)
    except ValueError:
        return Response(400, b"bad request line\n")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        try:
            raw = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            return Response(431, b"header line too long\n")
        if raw in (b"\r\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        return Response(431, b"too many headers\n")
    length_text = headers.get("content-length", "0").strip() or "0"
    if not length_text.isdigit():
        return Response(400, b"bad Content-Length\n")
    length = int(length_text)
    if length > _MAX_BODY:
        return Response(413, b"body too large\n")
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    return Request(method.upper(), parts.path, parse_qs(parts.query), headers, body)


def _encode(response: Response) -> bytes:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}", "Connection: close",
            "X-Content-Type-Options: nosniff", "Cache-Control: no-store"]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


async def start_http_server(host: str, port: int, routes: Mapping[str, Handler]) -> asyncio.Server:
    """Serve `routes` (exact paths); anything else is 404. Each connection handles one request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            parsed = await asyncio.wait_for(_read_request(reader), _TIMEOUT)
            if isinstance(parsed, Response):
                response = parsed
            elif parsed.path not in routes:
                response = Response(404, b"not found\n")
            else:
                try:
                    response = await routes[parsed.path](parsed)
                except Exception:  # the client gets a 500, the log gets the details
                    log.exception("HTTP handler failed: %s %s", parsed.method, parsed.path)
                    response = Response(500, b"internal error\n")
            data = _encode(response)
            if not isinstance(parsed, Response) and parsed.method == "HEAD":  # headers only
                data = data[: data.index(b"\r\n\r\n") + 4]
            writer.write(data)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=_MAX_LINE)
