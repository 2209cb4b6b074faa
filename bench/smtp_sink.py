"""A minimal, fast SMTP sink for benchmarks: PIPELINING, 8BITMIME, counts and discards (loopback only).

aiosmtpd tops out near 110 msg/s for 48 KB notices, which would make the sink the bottleneck; this
one is an asyncio.Protocol that answers every command at once and scans DATA with bytes.find.
It runs in a process of its own so it never shares a core's time slice with the sender.

    with Sink() as sink:      # sink.port, sink.count (messages accepted so far)
        ...
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Self

__all__ = ["Sink"]

_EHLO = (b"250-sink.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
         b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")


class _Session(asyncio.Protocol):
    def __init__(self, count: Synchronized[int], data_bytes: Synchronized[int]) -> None:
        self.count, self.data_bytes = count, data_bytes
        self.buf = bytearray()
        self.in_data = False
        self.at_start = False  # first bytes of a DATA body: an empty body is just ".\r\n"
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(b"220 sink.invalid ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = bytearray()
        while True:
            if self.in_data:
                # The body may end right at the start of the buffer (".\r\n" after a CRLF already consumed).
                if self.at_start and self.buf.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end = self.buf.find(b"\r\n.\r\n")
                    skip = 5
                if end < 0:
                    self.at_start = self.at_start and len(self.buf) < 3
                    # Keep only a tail long enough to hold a split terminator.
                    if len(self.buf) > 8:
                        with self.data_bytes.get_lock():
                            self.data_bytes.value += len(self.buf) - 4
                        del self.buf[:-4]
                    break
                with self.data_bytes.get_lock():
                    self.data_bytes.value += end
                del self.buf[:end + skip]
                self.in_data = False
                with self.count.get_lock():
                    self.count.value += 1
                out += b"250 2.0.0 queued\r\n"
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line = bytes(self.buf[:nl])
            del self.buf[:nl + 2]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                out += _EHLO
            elif verb == b"DATA":
                out += b"354 go ahead\r\n"
                self.in_data = self.at_start = True
            elif verb == b"QUIT":
                out += b"221 bye\r\n"
                self.transport.write(bytes(out))
                self.transport.close()
                return
            else:  # MAIL, RCPT, RSET, NOOP
                out += b"250 2.0.0 ok\r\n"
        if out:
            self.transport.write(bytes(out))


def _serve(sock: socket.socket, count: Synchronized[int], data_bytes: Synchronized[int]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Session(count, data_bytes), sock=sock, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Sink:
    """The sink in a child process, bound to 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        ctx = mp.get_context("fork")
        self._count: Synchronized[int] = ctx.Value("q", 0)  # type: ignore[assignment]
        self._bytes: Synchronized[int] = ctx.Value("q", 0)  # type: ignore[assignment]
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port: int = self._sock.getsockname()[1]
        self._proc = ctx.Process(target=_serve, args=(self._sock, self._count, self._bytes), daemon=True)

    @property
    def count(self) -> int:
        return int(self._count.value)

    @property
    def data_bytes(self) -> int:
        return int(self._bytes.value)

    def __enter__(self) -> Self:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(5)
        self._sock.close()
