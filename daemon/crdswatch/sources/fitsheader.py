"""Catalog fallback (the [fits] extra): PEDIGREE/DESCRIP/USEAFTER read from a reference file's own header.

Only the first header blocks are fetched, with an HTTP Range request: reference files can be
gigabytes, their primary header a few kilobytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

import httpx

from crdswatch.model import FileInfo

__all__ = ["BLOCK", "fill_from_fits", "fits_available", "read_fits_header"]

BLOCK = 2880  # FITS header and data come in 2880-byte blocks
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


async def read_fits_header(client: httpx.AsyncClient, url: str, max_blocks: int = 36) -> dict[str, str]:
    """PEDIGREE, DESCRIP and USEAFTER of the primary header at `url` (those present)."""
    from astropy.io import fits

    data = b""
    blocks = 4
    while True:
        end = blocks * BLOCK
        response = await client.get(url, headers={"Range": f"bytes={len(data)}-{end - 1}"})
        if response.status_code not in (200, 206):
            raise httpx.HTTPStatusError(f"GET {url}: HTTP {response.status_code}", request=response.request,
                                        response=response)
        # A server that ignores Range answers 200 with the whole file: keep only what we asked for.
        chunk = response.content if response.status_code == 206 else response.content[len(data):end]
        data += chunk
        stop = _end_of_header(data)
        if stop is not None:
            header = fits.Header.fromstring(data[:stop].decode("ascii", errors="replace"))
            return {k: str(header[k]).strip() for k in _FIELDS if k in header and str(header[k]).strip()}
        if not chunk or blocks >= max_blocks:
            raise ValueError(f"{url}: no END card in the first {len(data)} bytes")
        blocks = min(max_blocks, blocks * 2)


async def fill_from_fits(
    client: httpx.AsyncClient, reference_url: str, infos: Iterable[FileInfo], concurrency: int = 4
) -> dict[str, FileInfo]:
    """Complete the infos lacking pedigree, description or USEAFTER from their FITS headers.

    `reference_url` ends where the file name goes (`<server>/unchecked_get/references/<obs>/`).
    A file that cannot be read keeps its unknowns: never guessed.
    """
    gate = asyncio.Semaphore(concurrency)
    out: dict[str, FileInfo] = {}

    async def one(info: FileInfo) -> None:
        out[info.name] = info
        if not info.name.lower().endswith(".fits") or (info.pedigree and info.description and info.useafter_date):
            return
        async with gate:
            try:
                found = await read_fits_header(client, reference_url + info.name)
            except (httpx.HTTPError, ValueError, OSError):
                return
        updates = {attr: found[key] for key, attr in _FIELDS.items() if key in found and not getattr(info, attr)}
        if updates:
            out[info.name] = dataclasses.replace(info, **updates, source="fits-header")

    await asyncio.gather(*(one(i) for i in infos))
    return out
