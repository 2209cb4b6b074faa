"""The ASGI guard around every request: size and time bounds in, security headers out.

It sits outside Starlette, so its answers (413, 431, 408) never pass through an error handler,
and a handler failure is logged here once, as one structured line, never shown to the client.
"""

from __future__ import annotations

import asyncio
import traceback

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crdswatch.service.web.server import WebLimits

__all__ = ["SECURITY_HEADERS", "Guard"]

log = structlog.get_logger("crdswatch.web")

# No third-party assets, no inline script or style: the pages' one stylesheet is ours.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # Links carry tokens (/manage/<token>, /confirm/<token>): never hand them on in a Referer.
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class _TooLarge(Exception):
    pass


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, limits: WebLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _plain(send, *refusal)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            async with asyncio.timeout(self.limits.request_deadline):
                body = await self._read_body(receive)
                await self.app(scope, _replay(body, receive), guarded_send)
        except _TooLarge:
            if not started:
                await _plain(send, 413, "body too large\n")
        except TimeoutError:
            log.warning("web request deadline exceeded", path=scope.get("path"),
                        deadline=self.limits.request_deadline)
            if not started:
                await _plain(send, 408, "request took too long\n")
        except Exception as exc:  # noqa: BLE001 - Starlette already answered 500; the log gets the details
            # One line (a rendered traceback with locals would stall the loop for seconds).
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("web handler failed", method=scope.get("method"), path=scope.get("path"),
                      error=f"{type(exc).__name__}: {exc}", where=f"{frame.filename}:{frame.lineno}")

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if len(headers) > self.limits.max_headers:
            return 431, "too many headers\n"
        for name, value in headers:
            if name == b"content-length" and int(value) > self.limits.max_body_bytes:  # h11: all digits
                return 413, "body too large\n"
        return None

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, at most max_body_bytes (bodies here are forms of a few hundred bytes)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the app sees an empty body
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return dict(await receive())

    return replay


