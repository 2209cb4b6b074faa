"""Catalog fallback (the [fits] extra): PEDIGREE/DESCRIP/USEAFTER read from a reference file's own header.

Only the first header blocks are fetched, with an HTTP Range request: reference files can be
gigabytes, their primary header a few kilobytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

import httpx

from crdswatch.contexts.names import is_file_name
from crdswatch.errors import FitsReadError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.model import FileInfo

__all__ = ["BLOCK", "FitsReadError", "fill_from_fits", "fits_available", "read_fits_header"]

BLOCK = 2880  # FITS header and data come in 2880-byte blocks
_MAX_REDIRECTS = 3
_FIELDS = {"PEDIGREE": "pedigree", "DESCRIP": "description", "USEAFTER": "useafter_date"}


def fits_available() -> bool:
    try:
        import astropy.io.fits  # noqa: F401
    except ImportError:
        return False
    return True


def _end_of_header(data: bytes) -> int | None:
    for start in range(0, len(data) - 79, 80):
        if data[start:start + 8] == b"END     ":
            return start + 80
    return None


async def read_fits_header(
    client: httpx.AsyncClient, url: str, max_bytes: int = DEFAULT_LIMITS.fits_header_max_bytes,
    deadline: float = DEFAULT_LIMITS.request_deadline,
) -> dict[str, str]:
    """PEDIGREE, DESCRIP and USEAFTER of the primary header at `url` (those present).

    At most `max_bytes` are read in all, whether or not the server honours Range, and the whole
    read ends after `deadline` seconds. Redirects are followed only on the same host.
    """
    from astropy.io import fits

    data = b""
    blocks = 4
    try:
        async with asyncio.timeout(deadline):
            while True:
                end = min(blocks * BLOCK, max_bytes)
                chunk = await _read_range(client, url, len(data), end)
                data += chunk
                stop = _end_of_header(data)
                if stop is not None:
                    header = fits.Header.fromstring(data[:stop].decode("ascii", errors="replace"))
                    return {k: str(header[k]).strip() for k in _FIELDS if k in header and str(header[k]).strip()}
                if not chunk or end >= max_bytes:
                    raise FitsReadError(f"{url}: no END card in the first {len(data)} bytes")
                blocks *= 2
    except TimeoutError:
        raise FitsReadError(f"{url}: header not read within {deadline:g} s") from None


async def _read_range(client: httpx.AsyncClient, url: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of the file, streamed; a server that ignores Range is cut off at `end`."""
    for _hop in range(_MAX_REDIRECTS + 1):
        async with client.stream("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}) as response:
            if response.is_redirect:
                url = _same_host_redirect(url, response)
                continue
            if response.status_code not in (200, 206):
                raise httpx.HTTPStatusError(f"GET {url}: HTTP {response.status_code}", request=response.request,
                                            response=response)
            skip = start if response.status_code == 200 else 0  # 200: the whole file, from byte 0
            want = end - start
            out = bytearray()
            async for piece in response.aiter_bytes():
                if skip:
                    dropped = min(skip, len(piece))
                    piece, skip = piece[dropped:], skip - dropped
                out += piece[: want - len(out)]
                if len(out) >= want:
                    break  # leaving the block closes the stream: the rest is never read
            return bytes(out)
    raise FitsReadError(f"{url}: more than {_MAX_REDIRECTS} redirects")


def _same_host_redirect(url: str, response: httpx.Response) -> str:
    """Where a redirect points, if it stays on the same scheme, host and port (else FitsReadError)."""
    target = response.request.url.join(response.headers.get("location", ""))
    origin = httpx.URL(url)
    if (target.scheme, target.host, target.port) != (origin.scheme, origin.host, origin.port):
        raise FitsReadError(f"{url}: redirect to another host ({target.host}) not followed")
    return str(target)


async def fill_from_fits(
    client: httpx.AsyncClient, reference_url: str, infos: Iterable[FileInfo], concurrency: int = 4,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, FileInfo]:
    """Complete the infos lacking pedigree, description or USEAFTER from their FITS headers.

    `reference_url` ends where the file name goes (`<server>/unchecked_get/references/<obs>/`).
    A file that cannot be read keeps its unknowns: never guessed. A name that is not a plain
    file name (see contexts.names) is never put into a URL.
    """
    gate = asyncio.Semaphore(concurrency)
    out: dict[str, FileInfo] = {}

    async def one(info: FileInfo) -> None:
        out[info.name] = info
        if not info.name.lower().endswith(".fits") or (info.pedigree and info.description and info.useafter_date):
            return
        if not is_file_name(info.name):
            return
        async with gate:
            try:
                found = await read_fits_header(client, reference_url + info.name, limits.fits_header_max_bytes,
                                               limits.request_deadline)
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError):
                return
        updates = {attr: found[key] for key, attr in _FIELDS.items() if key in found and not getattr(info, attr)}
        if updates:
            out[info.name] = dataclasses.replace(info, **updates, source="fits-header")

    await asyncio.gather(*(one(i) for i in infos))
    return out
