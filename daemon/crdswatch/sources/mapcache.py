"""On-disk, content-addressed cache of verified CRDS mapping texts (mappings never change)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import itertools
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from crdswatch.contexts.names import is_mapping_name
from crdswatch.errors import IntegrityError
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.sources.crds_rpc import check_mapping_name

__all__ = [
    "MappingCache",
    "MappingDownloader",
    "MappingFetcher",
    "header_checksum",
    "mapping_checksum",
    "verify_mapping_text",
]

_SHA1_BYTES_RE = re.compile(rb"^[0-9a-f]{40}$")
_HEADER_SHA1_RE = re.compile(r"""^\s*['"]sha1sum['"]\s*:\s*['"]([0-9a-fA-F]{40})['"]\s*,?\s*$""")
_HEADER_NAME_RE = re.compile(r"""^\s*['"]name['"]\s*:\s*['"]([^'"]*)['"]\s*,?\s*$""")


# The server's catalogue sha1 of each of some mapping names (CrdsSource.checksums).
Checksums = Callable[[list[str]], Awaitable[Mapping[str, str]]]


class MappingDownloader(Protocol):
    """What MappingFetcher needs from a client (CrdsRpcClient satisfies it)."""

    async def fetch_mapping(self, observatory: str, name: str) -> str: ...


# Where str.splitlines() ends a line: "\r\n" is one ending, each of the others one.
_EOL_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_EOL_RE = re.compile("\r\n|[" + _EOL_CHARS + "]")


def _lines_with(text: str, needle: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The lines of `text` (as str.splitlines() cuts them) that contain `needle`, without their
    endings, and the (start, end) span of each with its ending.

    Found with str.find and one regular-expression search per such line: a mapping has one or two
    of them in thousands of lines, and the per-line Python loop this replaces was most of what
    verifying a download cost.
    """
    lines: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0  # where the next line not yet looked at starts
    found = text.find(needle)
    while found != -1:
        start = max(pos, max(text.rfind(c, pos, found) for c in _EOL_CHARS) + 1)
        eol = _EOL_RE.search(text, found)
        end, stop = (eol.start(), eol.end()) if eol else (len(text), len(text))
        lines.append(text[start:end])
        spans.append((start, stop))
        pos = stop
        found = text.find(needle, pos)
    return lines, spans


def mapping_checksum(text: str) -> str:
    """sha1 of the mapping as crds.core.rmap computes it for the header's own `sha1sum`.

    Every line containing "sha1sum" is dropped and the rest re-joined with their own line
    endings (`splitlines(True)`), then hashed as UTF-8.
    """
    return _checksum(text, _lines_with(text, "sha1sum")[1])


def _checksum(text: str, dropped: list[tuple[int, int]]) -> str:
    digest = hashlib.sha1()
    pos = 0
    for start, stop in dropped:
        digest.update(text[pos:start].encode("utf-8"))
        pos = stop
    digest.update(text[pos:].encode("utf-8"))
    return digest.hexdigest()


def header_checksum(text: str) -> str | None:
    """The sha1sum the mapping's header claims, or None if it has none."""
    return _claimed(_lines_with(text, "sha1sum")[0])


def _claimed(lines: list[str]) -> str | None:
    found = [m.group(1).lower() for line in lines if (m := _HEADER_SHA1_RE.match(line))]
    return found[0] if len(found) == 1 else None


def verify_mapping_text(name: str, text: str, expected_sha1: str | None = None) -> str:
    """Check a downloaded mapping; return the sha1 of its bytes. Raises IntegrityError.

    `expected_sha1` is the server's download_metadata sha1sum (of the whole file), when known.
    """
    if not text:
        raise IntegrityError(f"{name}: empty download")
    lines, spans = _lines_with(text, "sha1sum")
    claimed = _claimed(lines)
    if claimed is None:
        raise IntegrityError(f"{name}: no single 'sha1sum' line in the mapping header")
    actual = _checksum(text, spans)
    if actual != claimed:
        raise IntegrityError(f"{name}: header sha1sum {claimed} but content hashes to {actual}")
    names = [m.group(1) for line in _lines_with(text, "name")[0] if (m := _HEADER_NAME_RE.match(line))]
    if names and names[0] != name:
        # A server handing out the wrong (but self-consistent) file under this name.
        raise IntegrityError(f"{name}: header says it is {names[0]!r}")
    file_sha1 = hashlib.sha1(text.encode("utf-8")).hexdigest()
    if expected_sha1 is not None and file_sha1 != expected_sha1.lower():
        raise IntegrityError(f"{name}: file sha1 {file_sha1} but the server's metadata says {expected_sha1}")
    return file_sha1


def _atomic_write(folder: str, name: str, data: bytes) -> None:
    """Write via a temporary file and rename: readers see the old file or the whole new one.

    No fsync, on purpose (a whole-history backfill writes ~1,300 of these files; fsyncs were a
    third of its time). Crash safety does not rest on durability here: the cache verifies
    everything it reads. Each file starts with the sha1 of the text after it, re-hashed on every
    read, so whatever a crash leaves behind (a zero-length or truncated file after the rename, a
    stray temporary file) reads as "not cached" and the mapping is downloaded and verified again;
    a damaged copy is never used. Nothing else (the state database's cursor included) depends on
    a mapping being on disk: losing the cache costs downloads, not correctness.
    """
    try:  # the folder is there but for the first file: no mkdir (and stat) per write
        fd, tmp = _create_temporary(folder, name)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = _create_temporary(folder, name)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# A temporary file is created as tempfile.mkstemp does (O_EXCL: never through a link someone left
# there; mode 0600), under a name unique to this process and write instead of mkstemp's random
# one: mkstemp's name drawing and checks were a third of what storing a mapping cost in Python.
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_TMP_SERIAL = itertools.count()  # next() on it is atomic: worker threads may write at once


def _create_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new file in `folder`, open for writing, and its path."""
    for _attempt in range(10_000):  # as many as mkstemp tries
        tmp = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TMP_SERIAL)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o600), tmp
        except FileExistsError:  # left by a process that had our pid: the next serial
            continue
    raise FileExistsError(f"no free temporary name for {name} in {folder}")


_PACK_MAGIC = b"crdswatch-pack 1\n"
# A record of a pack: "<name> <sha1 of the text> <bytes>\n", then the text's bytes.
_RECORD_RE = re.compile(rb"([!-~]{1,200}) ([0-9a-f]{40}) ([0-9]{1,9})\n")
_RECORD_HEAD_MAX = 200 + 1 + 40 + 1 + 9 + 1  # the longest head _RECORD_RE matches


class MappingCache:
    """Verified mapping texts on disk, in two layouts, each text found by name and checked against
    the sha1 stored with it on every read (a damaged copy is treated as missing, never used):

    - `<root>/texts/<obs>/<name>`: one mapping, the sha1 on the first line, then the text (put, store);
    - `<root>/packs/<obs>/<stamp>.pack`: the mappings of one batch of downloads (store_many), each
      a record "<name> <sha1> <bytes>\n" and its text.

    The sha1 is of the whole mapping file, i.e. what the server's download_metadata lists. A
    backfill stores ~1,300 mappings: one file each cost it 0.4-1.0 s of system CPU on a busy ext4
    (allocating an inode scans the recently deleted ones), a pack per batch ~20 files in all. A
    per-name file wins over a pack. The packs of other processes are seen when the folder changes
    (its mtime); one written in the same clock tick as a listing may go unseen until the next
    change, which costs a download, not correctness. The earlier layout (a sha1 per name pointing
    into a content-addressed `objects/` folder) is no longer read.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._texts = os.path.join(self.root, "texts")
        self._packs = os.path.join(self.root, "packs")
        self._lock = threading.Lock()  # the writer thread adds to the index while others read it
        # observatory -> name -> (pack path, offset, length, sha1): the newest record of each name
        self._index: dict[str, dict[str, tuple[str, int, int, str]]] = {}
        # observatory -> (the packs folder's mtime when listed, the pack files indexed)
        self._listed: dict[str, tuple[int, set[str]]] = {}

    def get(self, observatory: str, name: str) -> str | None:
        """The cached text, or None if absent or damaged."""
        check_mapping_name(observatory, name)
        try:  # a string path: a backfill asks for ~1,300 names not stored yet, and pathlib's joins were most of a miss
            with open(os.path.join(self._texts, observatory, name), "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return self._from_pack(observatory, name)
        sha1, newline, text = data.partition(b"\n")
        if not newline or not _SHA1_BYTES_RE.match(sha1) or hashlib.sha1(text).hexdigest().encode() != sha1:
            return self._from_pack(observatory, name)
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.get(*key) is not None

    def put(self, observatory: str, name: str, text: str, expected_sha1: str | None = None) -> str:
        """Verify, then store; returns the file sha1. Nothing is written if verification fails."""
        check_mapping_name(observatory, name)
        sha1 = verify_mapping_text(name, text, expected_sha1)
        self.store(observatory, name, text, sha1)
        return sha1

    def store(self, observatory: str, name: str, text: str, sha1: str) -> None:
        """Store a text verify_mapping_text passed, `sha1` being what it returned (put does both)."""
        check_mapping_name(observatory, name)
        # string paths, as in get(): pathlib's joins cost more than the checks
        _atomic_write(os.path.join(self._texts, observatory), name, sha1.encode("ascii") + b"\n" + text.encode("utf-8"))

    def store_many(self, observatory: str, items: list[tuple[str, str, str]]) -> None:
        """Store (name, text, sha1) of texts verify_mapping_text passed, in one new pack file."""
        if not items:
            return
        for name, _text, _sha1 in items:
            check_mapping_name(observatory, name)
        parts = [_PACK_MAGIC]
        offset = len(_PACK_MAGIC)
        records: list[tuple[str, int, int, str]] = []
        for name, text, sha1 in items:
            data = text.encode("utf-8")
            head = b"%s %s %d\n" % (name.encode("ascii"), sha1.encode("ascii"), len(data))
            offset += len(head)
            records.append((name, offset, len(data), sha1))
            offset += len(data)
            parts += (head, data)
        folder = os.path.join(self._packs, observatory)
        # newest last in a listing: a name stored again (its earlier copy damaged) is found in its new pack
        pack = f"{time.time_ns():020d}-{os.getpid()}-{next(_TMP_SERIAL)}.pack"
        _atomic_write(folder, pack, b"".join(parts))
        path = os.path.join(folder, pack)
        with self._lock:
            index = self._index.setdefault(observatory, {})
            for name, start, length, sha1 in records:
                index[name] = (path, start, length, sha1)
            listed = self._listed.get(observatory)
            if listed is not None:
                listed[1].add(pack)

    def names(self, observatory: str) -> list[str]:
        folder = self.root / "texts" / observatory
        found = {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()
        with self._lock:
            self._refresh(observatory)
            found.update(self._index.get(observatory, {}))
        return sorted(found)

    def _from_pack(self, observatory: str, name: str) -> str | None:
        with self._lock:
            where = self._index.get(observatory, {}).get(name)
            if where is None:
                self._refresh(observatory)
                where = self._index.get(observatory, {}).get(name)
        if where is None:
            return None
        path, offset, length, sha1 = where
        try:
            with open(path, "rb") as file:
                file.seek(offset)
                data = file.read(length)
        except OSError:  # a pack removed (the cache cleared) since it was indexed
            return None
        if len(data) != length or hashlib.sha1(data).hexdigest() != sha1:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _refresh(self, observatory: str) -> None:
        """Index the packs of `observatory` not indexed yet, if its folder changed since it was listed
        (under the lock)."""
        folder = os.path.join(self._packs, observatory)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return
        listed = self._listed.get(observatory)
        if listed is not None and listed[0] == mtime:
            return
        seen = listed[1] if listed is not None else set()
        try:
            packs = sorted(n for n in os.listdir(folder) if n.endswith(".pack") and not n.startswith("."))
        except OSError:
            return
        index = self._index.setdefault(observatory, {})
        for pack in packs:
            if pack not in seen:
                seen.add(pack)
                _index_pack(os.path.join(folder, pack), index)
        self._listed[observatory] = (mtime, seen)


def _index_pack(path: str, index: dict[str, tuple[str, int, int, str]]) -> None:
    """Add the records of one pack to `index`. Whatever does not read as a record ends the pack
    (a file cut short by a crash); a record's text is checked when it is read, not here. Only the
    record heads are read, each text skipped by a seek: a backfill's packs hold tens of MB of
    texts, and every new process indexes them all at its first miss."""
    try:
        with open(path, "rb") as file:
            if file.read(len(_PACK_MAGIC)) != _PACK_MAGIC:
                return
            size = os.fstat(file.fileno()).st_size
            while True:
                record = _RECORD_RE.fullmatch(file.readline(_RECORD_HEAD_MAX))
                if record is None:  # the end, or a head cut short or damaged
                    return
                start, length = file.tell(), int(record.group(3))
                if start + length > size:
                    return
                name = record.group(1).decode("ascii")
                if is_mapping_name(name):
                    index[name] = (path, start, length, record.group(2).decode("ascii"))
                file.seek(length, os.SEEK_CUR)
    except OSError:
        return


class MappingFetcher:
    """Cached-or-downloaded mapping texts; every download is verified before it is stored or used.

    `expected_sha1` maps file names to download_metadata sha1sums (a dict or a callable), so a
    download can be checked against the server's catalogue as well as against its own header.
    """

    def __init__(
        self,
        client: MappingDownloader,
        cache: MappingCache,
        expected_sha1: Mapping[str, str] | Callable[[str], str | None] | None = None,
        concurrency: int = DEFAULT_LIMITS.download_concurrency,
    ) -> None:
        self.client = client
        self.cache = cache
        # 3,000 changed rmaps queue here instead of opening 3,000 requests (and starving httpx's pool).
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._expected = expected_sha1
        self._inflight: dict[tuple[str, str], asyncio.Future[str]] = {}  # downloads under way
        self.downloads = 0
        self.cache_hits = 0

    def set_expected_sha1(self, expected: Mapping[str, str] | Callable[[str], str | None] | None) -> None:
        self._expected = expected

    def _expected_for(self, name: str) -> str | None:
        if self._expected is None:
            return None
        if callable(self._expected):
            return self._expected(name)
        return self._expected.get(name)

    async def get_text(self, observatory: str, name: str) -> str:
        return (await self.get_many(observatory, [name]))[name]

    async def get_many(self, observatory: str, names: list[str], checksums: Checksums | None = None) -> dict[str, str]:
        """The texts of `names`, cached or downloaded; raises the first fault in `names` order.

        With `checksums` (the server's catalogue sha1s of the names given it), the names about to
        be downloaded are looked up first, in one call, and each download must match its sha1 as
        well as its own header (instead of the fetcher's `expected_sha1`).

        The downloads run together (`concurrency` at a time), each verified as it arrives, and the
        verified ones are written together, one pack, by one writer thread once they are all in;
        this returns once they are on disk. A
        name another caller is downloading is waited for, not downloaded again (one download per
        name even when many diffs ask for the same rmap at once); if that download fails, the
        waiter tries itself, as it would have next.
        """
        for name in names:
            check_mapping_name(observatory, name)
        out: dict[str, str] = {}
        faults: dict[str, BaseException] = {}
        todo = list(dict.fromkeys(names))
        while todo:
            waits: dict[str, asyncio.Future[str]] = {}
            mine: list[str] = []
            for name in todo:
                pending = self._inflight.get((observatory, name))
                if pending is not None:
                    waits[name] = pending
                    continue
                cached = self.cache.get(observatory, name)
                if cached is not None:
                    self.cache_hits += 1
                    out[name] = cached
                    continue
                mine.append(name)
            if mine:
                await self._fetch(observatory, mine, out, faults, checksums)
            todo = []
            for name, pending in waits.items():
                await asyncio.wait([pending])  # not `await pending`: our cancellation must not cancel it
                if pending.cancelled() or pending.exception() is not None:
                    todo.append(name)  # theirs failed: this caller tries (and fails) on its own
                else:
                    out[name] = pending.result()
        for name in names:
            if name in faults:
                raise faults[name]
        return {name: out[name] for name in names}

    async def _fetch(self, observatory: str, names: list[str], out: dict[str, str],
                     faults: dict[str, BaseException], checksums: Checksums | None) -> None:
        """Download, verify and store `names` (the files written behind the downloads); texts to `out`."""
        loop = asyncio.get_running_loop()
        futures = {name: loop.create_future() for name in names}
        for name, future in futures.items():
            self._inflight[(observatory, name)] = future
        verified: list[tuple[str, str, str]] = []
        try:
            known = dict(await checksums(names)) if checksums is not None else None
            results = await asyncio.gather(*(self._download(observatory, n, known, verified) for n in names),
                                           return_exceptions=True)
            written: Exception | None = None
            if verified:
                # One pack for the batch, by the one writer thread: creating a file takes the kernel
                # 0.1-1 ms here (see MappingCache), and the loop is not held up by it.
                try:
                    await asyncio.wrap_future(_writer().submit(self.cache.store_many, observatory, verified))
                except Exception as exc:  # noqa: BLE001 - a fault of each of these names, as a write of each was
                    written = exc
            for name, result in zip(names, results):
                if isinstance(result, str):
                    if written is None:
                        out[name] = result
                    else:
                        faults[name] = written
                elif isinstance(result, Exception):
                    faults[name] = result
                else:  # KeyboardInterrupt, SystemExit: not a fault of this download
                    raise result
        finally:
            for name, future in futures.items():
                del self._inflight[(observatory, name)]
                if name in out:
                    future.set_result(out[name])
                else:
                    future.cancel()  # a waiter downloads it itself

    async def _download(self, observatory: str, name: str, known: dict[str, str] | None,
                        verified: list[tuple[str, str, str]]) -> str:
        """One download, verified (IntegrityError: nothing stored, nothing used), then added to the
        batch's pack (`verified`), written once the batch's downloads are done."""
        async with self._gate:
            text = await self.client.fetch_mapping(observatory, name)
        self.downloads += 1
        # On the loop: C-speed hashing and a few searches, ~30 us a mapping (see _lines_with).
        sha1 = verify_mapping_text(name, text, known.get(name) if known is not None else self._expected_for(name))
        verified.append((name, text, sha1))
        return text


@functools.cache
def _writer() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that writes cache files, for every fetcher, one batch after another."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="crdswatch-mapcache")
