"""[fits] fallback: catalog gaps filled from the reference file's own header, read with HTTP Range."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits

from crdswatch.model import FileInfo
from crdswatch.sources.fitsheader import BLOCK, fill_from_fits, read_fits_header


class RangeServer(ThreadingHTTPServer):
    files: dict[str, bytes]
    ranges: list[str]
    honour_range: bool = True


class Handler(BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if data is None:
            self.send_error(404)
            return
        wanted = self.headers.get("Range", "")
        self.server.ranges.append(wanted)
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", wanted)
        if found and self.server.honour_range:
            start, end = int(found.group(1)), min(int(found.group(2)), len(data) - 1)
            body, status = data[start:end + 1], 206
        else:
            body, status = data, 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RangeServer]:
    big = fits.PrimaryHDU(np.zeros((256, 256), dtype=np.float32))  # 256 KB of data after the header
    big.header["PEDIGREE"] = "INFLIGHT 2022-07-01 2022-07-31"
    big.header["DESCRIP"] = "Dark for NRS1 from commissioning"
    big.header["USEAFTER"] = "2022-07-01T00:00:00"
    for i in range(250):  # a header longer than the first request reads (4 blocks = 144 cards)
        big.header["HISTORY"] = f"processing step {i}"
    path = tmp_path / "jwst_nirspec_dark_0400.fits"
    big.writeto(path)
    srv = RangeServer(("127.0.0.1", 0), Handler)
    srv.files = {path.name: path.read_bytes(), "broken.fits": b"not a fits file" * 10}
    srv.ranges = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def base(srv: RangeServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/unchecked_get/references/jwst/"


async def test_reads_only_the_header_blocks(server: RangeServer) -> None:
    async with httpx.AsyncClient() as client:
        found = await read_fits_header(client, base(server) + "jwst_nirspec_dark_0400.fits")
    assert found == {"PEDIGREE": "INFLIGHT 2022-07-01 2022-07-31", "DESCRIP": "Dark for NRS1 from commissioning",
                     "USEAFTER": "2022-07-01T00:00:00"}
    assert len(server.ranges) == 2  # the long header needed a second, larger range
    last = re.fullmatch(r"bytes=(\d+)-(\d+)", server.ranges[-1])
    assert last is not None and int(last.group(2)) < 16 * BLOCK  # never the 256 KB of data


async def test_a_server_ignoring_range_still_works(server: RangeServer) -> None:
    server.honour_range = False
    async with httpx.AsyncClient() as client:
        found = await read_fits_header(client, base(server) + "jwst_nirspec_dark_0400.fits")
    assert found["PEDIGREE"].startswith("INFLIGHT")


async def test_fill_only_gaps_and_never_guess(server: RangeServer) -> None:
    infos = [
        FileInfo("jwst_nirspec_dark_0400.fits", pedigree="GROUND", change_level="SEVERE"),
        FileInfo("missing.fits"),
        FileInfo("broken.fits"),
        FileInfo("complete.fits", pedigree="A", description="B", useafter_date="C"),
    ]
    async with httpx.AsyncClient() as client:
        out = await fill_from_fits(client, base(server), infos)
    dark = out["jwst_nirspec_dark_0400.fits"]
    assert dark.pedigree == "GROUND" and dark.change_level == "SEVERE"  # the catalog wins where it spoke
    assert dark.description == "Dark for NRS1 from commissioning" and dark.source == "fits-header"
    assert out["missing.fits"] == FileInfo("missing.fits")  # 404: still unknown
    assert out["broken.fits"] == FileInfo("broken.fits")  # not FITS: still unknown
    assert out["complete.fits"] == infos[3]
    assert not any("complete.fits" in r for r in server.ranges)
