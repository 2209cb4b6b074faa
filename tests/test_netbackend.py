"""sources.netbackend: httpcore's network layer on asyncio streams, against real loopback servers
(plain and TLS), including peers that close idle connections, never answer, or present a
certificate nobody trusts."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore
import pytest

from crdswatch.sources.netbackend import AsyncioBackend
from tests.support.smtp_server import make_pki

TIMEOUTS = {"timeout": {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}}


class _Server:
    """A minimal HTTP/1.1 server: answers every request with its own number, and either keeps the
    connection (keep-alive) or closes it after each answer without saying so, as a server whose
    idle timeout fired does; `silent` reads requests and never answers."""

    def __init__(self, *, close_after_answer: bool = False, silent: bool = False) -> None:
        self.close_after_answer = close_after_answer
        self.silent = silent
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                if self.silent:
                    await asyncio.sleep(3600)
                body = f"answer {self.requests}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if self.close_after_answer:
                    return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(server: _Server, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def _get(pool: httpcore.AsyncConnectionPool, url: str) -> bytes:
    response = await pool.request("GET", url, extensions=TIMEOUTS)
    assert response.status == 200
    return response.content


async def test_keep_alive_reuses_one_connection() -> None:
    server = _Server()
    async with serving(server) as port, httpcore.AsyncConnectionPool(
            max_connections=1, network_backend=AsyncioBackend()) as pool:
        answers = [await _get(pool, f"http://127.0.0.1:{port}/m{i}") for i in range(5)]
    assert answers == [f"answer {i}".encode() for i in range(1, 6)]
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    server = _Server(close_after_answer=True)
    async with serving(server) as port, httpcore.AsyncConnectionPool(
            max_connections=1, network_backend=AsyncioBackend()) as pool:
        for i in range(3):
            assert await _get(pool, f"http://127.0.0.1:{port}/") == f"answer {i + 1}".encode()
            await asyncio.sleep(0.05)  # the close reaches the client's loop before the next request
    assert server.connections == 3


async def test_tls_with_a_trusted_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    client = ssl.create_default_context(cafile=str(pki.ca_file))
    server = _Server()
    async with serving(server, pki.server_context) as port, httpcore.AsyncConnectionPool(
            ssl_context=client, max_connections=1, network_backend=AsyncioBackend()) as pool:
        assert await _get(pool, f"https://127.0.0.1:{port}/a") == b"answer 1"
        assert await _get(pool, f"https://127.0.0.1:{port}/b") == b"answer 2"
    assert server.connections == 1


async def test_tls_with_an_untrusted_certificate_is_a_connect_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server = _Server()
    async with serving(server, pki.server_context) as port, httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(), network_backend=AsyncioBackend()) as pool:
        with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await _get(pool, f"https://127.0.0.1:{port}/")
    assert server.requests == 0


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    server = _Server(silent=True)
    short = {"timeout": {"connect": 5.0, "read": 0.2, "write": 5.0, "pool": 5.0}}
    async with serving(server) as port, httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as pool:
        with pytest.raises(httpcore.ReadTimeout):
            await pool.request("GET", f"http://127.0.0.1:{port}/", extensions=short)


async def test_nothing_listening_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as pool:
        with pytest.raises(httpcore.ConnectError):
            await _get(pool, f"http://127.0.0.1:{port}/")
