"""A hostile CRDS server on loopback: a tiny self-made JWST universe, then whatever a test makes it do.

It answers the JSON-RPC calls crdswatch makes (get_default_context, get_context_history,
get_file_info_map, get_server_info) and serves mappings and reference files, all from
dictionaries a test may change while it runs. `hostile` names the misbehaviour:

    huge-rpc       every JSON-RPC reply is an endless body (stops at HUGE bytes)
    huge-mapping   every mapping download is an endless body
    trickle        every JSON-RPC reply comes one byte every TRICKLE_GAP seconds, forever
    redirect       reference downloads are redirected to `foreign_url` + /moved/... (another host,
                   or this one when foreign_url is our own url)
    ignore-range   reference downloads answer 200 with an endless body, whatever Range says

Mappings are made with valid sha1sum headers (see `mapping_text`), so crdswatch's checks pass
and the hostile part is the graph or the syntax, not the checksum.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crdswatch.sources.mapcache import mapping_checksum

__all__ = ["HUGE", "HostileCrds", "fits_header", "hostile_crds", "imap", "mapping_text", "pmap", "rmap"]

HUGE = 512 * 1024 * 1024  # far above every cap; a client that buffers it grows by as much
TRICKLE_GAP = 0.5
_CHUNK = b" " * 65536


def mapping_text(name: str, kind: str, selector: str, extra_header: str = "") -> str:
    """A mapping whose header sha1sum is right (computed as crds does)."""
    kinds = {"pmap": "PIPELINE", "imap": "INSTRUMENT", "rmap": "REFERENCE"}
    body = (f"header = {{\n    'mapping' : '{kinds[kind]}',\n    'name' : '{name}',\n"
            f"    'observatory' : 'JWST',\n{extra_header}    'sha1sum' : 'SHA1',\n}}\n\nselector = {selector}\n")
    return body.replace("'SHA1'", f"'{mapping_checksum(body)}'")


def pmap(name: str, selections: dict[str, str]) -> str:
    items = "".join(f"    '{k}' : '{v}',\n" for k, v in selections.items())
    return mapping_text(name, "pmap", "{\n" + items + "}", "    'parkey' : ('META.INSTRUMENT.NAME',),\n")


def imap(name: str, instrument: str, selections: dict[str, str]) -> str:
    items = "".join(f"    '{k}' : '{v}',\n" for k, v in selections.items())
    header = f"    'instrument' : '{instrument.upper()}',\n    'parkey' : ('REFTYPE',),\n"
    return mapping_text(name, "imap", "{\n" + items + "}", header)


def rmap(name: str, instrument: str, filekind: str, files: dict[str, str]) -> str:
    """`files`: detector -> reference file name (a Python string literal body, escapes allowed)."""
    rules = "".join(f"    ('{det}',) : UseAfter({{\n        '2020-01-01 00:00:00' : '{f}',\n    }}),\n"
                    for det, f in files.items())
    header = (f"    'filekind' : '{filekind.upper()}',\n    'instrument' : '{instrument.upper()}',\n"
              "    'parkey' : (('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),\n")
    return mapping_text(name, "rmap", "Match({\n" + rules + "})", header)


def fits_header(**cards: str) -> bytes:
    """A primary FITS header (no data) holding `cards`, padded to whole blocks."""
    lines = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0"]
    lines += [f"{k:<8}= '{v}'" for k, v in cards.items()]
    text = "".join(line.ljust(80) for line in lines) + "END".ljust(80)
    return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileCrds


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _endless(self, status: int = 200) -> None:
        """Chunked, no length announced: only the client's own cap stops it."""
        self.send_response(status)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            while sent < HUGE and not self.server.owner.stopping.is_set():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(_CHUNK), _CHUNK))
                sent += len(_CHUNK)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up: what a capped client does
        self.close_connection = True

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            while not self.server.owner.stopping.is_set():
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(TRICKLE_GAP)
        except OSError:
            pass
        self.close_connection = True

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        request = json.loads(body)
        method, params = request.get("method"), request.get("params") or []
        owner.count(f"rpc:{method}")
        if owner.hostile == "huge-rpc":
            return self._endless()
        if owner.hostile == "trickle":
            return self._trickle()
        result = owner.rpc(str(method), params)
        self._reply(200, json.dumps({"jsonrpc": "1.0", "id": request.get("id"), "result": result,
                                     "error": None}).encode())

    def do_GET(self) -> None:
        owner = self.server.owner
        moved = self.path.startswith("/moved/")  # where `redirect` sends reference downloads
        path = self.path.removeprefix("/moved")
        parts = path.split("/")
        if path.startswith("/unchecked_get/mappings/jwst/"):
            name = parts[-1]
            with owner.gauge():
                owner.count("mapping")
                if owner.hostile == "huge-mapping":
                    return self._endless()
                text = owner.mappings.get(name)
                if owner.download_delay:
                    time.sleep(owner.download_delay)
                if text is None:
                    return self._reply(404, b"not found", "text/plain")
                return self._reply(200, text.encode("utf-8"), "text/plain")
        if path.startswith("/unchecked_get/references/jwst/"):
            owner.count("reference")
            owner.reference_paths.append(self.path)
            if owner.hostile == "redirect" and not moved:
                return self._reply(302, b"", "text/plain", Location=owner.foreign_url + "/moved" + path)
            if owner.hostile == "ignore-range":
                return self._endless()
            data = owner.references.get(parts[-1])
            if data is None:
                return self._reply(404, b"", "text/plain")
            return self._reply(200, data, "application/octet-stream")
        self._reply(404, b"", "text/plain")


class HostileCrds:
    """The server, its universe (`mappings`, `history`, `references`) and its misbehaviour."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.hostile: str | None = None
        self.foreign_url = ""
        self.mappings: dict[str, str] = {}
        self.references: dict[str, bytes] = {}
        self.history: list[tuple[str, str, str]] = []  # oldest first: (date, context, description)
        self.current = ""
        self.download_delay = 0.0
        self.counts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.reference_paths: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.base_universe()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}"

    # -- the universe --------------------------------------------------------------------------

    def add(self, name: str, text: str) -> None:
        self.mappings[name] = text

    def base_universe(self) -> None:
        """jwst_0001.pmap -> jwst_nircam_0001.imap -> jwst_nircam_dark_0001.rmap, activated 2024-01-01."""
        self.add("jwst_0001.pmap", pmap("jwst_0001.pmap", {"NIRCAM": "jwst_nircam_0001.imap"}))
        self.add("jwst_nircam_0001.imap", imap("jwst_nircam_0001.imap", "nircam",
                                               {"DARK": "jwst_nircam_dark_0001.rmap"}))
        self.add("jwst_nircam_dark_0001.rmap", rmap("jwst_nircam_dark_0001.rmap", "nircam", "dark",
                                                    {"NRCA1": "jwst_nircam_dark_0001.fits"}))
        self.activate("jwst_0001.pmap", "2024-01-01 00:00:00")

    def activate(self, context: str, date: str, description: str = "delivery") -> None:
        with self._lock:
            self.history.append((date, context, description))
            self.current = context

    def context_with_rmap(self, serial: int, rmap_text_by_name: dict[str, str],
                          imap_selections: dict[str, str] | None = None) -> str:
        """A new context jwst_<serial>.pmap whose NIRCam imap names the given rmaps."""
        context, inst = f"jwst_{serial:04d}.pmap", f"jwst_nircam_{serial:04d}.imap"
        for name, text in rmap_text_by_name.items():
            self.add(name, text)
        selections = imap_selections or {f"T{i}": n for i, n in enumerate(rmap_text_by_name)}
        self.add(inst, imap(inst, "nircam", selections))
        self.add(context, pmap(context, {"NIRCAM": inst}))
        return context

    # -- serving ---------------------------------------------------------------------------------

    def rpc(self, method: str, params: list[Any]) -> Any:
        with self._lock:
            if method == "get_default_context":
                return self.current
            if method == "get_context_history":
                return [list(row) for row in reversed(self.history)]  # newest first, as CRDS sends
            if method == "get_server_info":
                return {"edit_context": self.current, "operational_context": self.current}
            if method == "get_file_info_map":
                files = params[1] or []
                out: dict[str, Any] = {}
                for name in files:
                    text = self.mappings.get(name)
                    if text is not None:
                        out[name] = {"sha1sum": hashlib.sha1(text.encode()).hexdigest()}
                    else:
                        out[name] = {"pedigree": "none", "description": "none"}  # FITS fallback fills these
                return out
        return None

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    @contextmanager
    def gauge(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def start(self) -> HostileCrds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def hostile_crds(host: str = "127.0.0.1") -> Iterator[HostileCrds]:
    server = HostileCrds(host).start()
    try:
        yield server
    finally:
        server.stop()
