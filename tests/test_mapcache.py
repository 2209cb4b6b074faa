"""Verified, content-addressed mapping cache: crds's own checksum rule, and nothing bad ever stored."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from crdswatch.contexts.history import load_server_config
from crdswatch.devtools.replay import ReplayServer
from crdswatch.errors import IntegrityError, ServerError, UnknownMappingError
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.sources.mapcache import (
    MappingCache,
    MappingFetcher,
    header_checksum,
    mapping_checksum,
    verify_mapping_text,
)
from tests.support.crds_fixtures import crds_jwst_root, replay_server

__all__ = ["crds_jwst_root", "replay_server"]

RMAP = "jwst_miri_flat_0032.rmap"


def _read(root: Path, name: str) -> str:
    return (root / "mappings" / name).read_text(encoding="utf-8")


def _stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_checksum_rule_reproduces_every_real_header(crds_jwst_root: Path) -> None:
    metadata = load_server_config(crds_jwst_root / "config" / "server_config").download_metadata
    count = 0
    for path in (crds_jwst_root / "mappings").iterdir():
        if path.suffix not in (".pmap", ".imap", ".rmap"):
            continue
        text = path.read_bytes().decode("utf-8")
        assert mapping_checksum(text) == header_checksum(text), path.name
        assert verify_mapping_text(path.name, text, metadata[path.name]["sha1sum"]) == metadata[path.name]["sha1sum"]
        count += 1
    assert count == 2482


def test_put_get_layout(tmp_path: Path, crds_jwst_root: Path) -> None:
    cache = MappingCache(tmp_path)
    text = _read(crds_jwst_root, RMAP)
    sha1 = cache.put("jwst", RMAP, text)
    assert sha1 == hashlib.sha1(text.encode()).hexdigest()
    assert (tmp_path / "texts" / "jwst" / RMAP).read_bytes() == sha1.encode() + b"\n" + text.encode()
    assert _stored_files(tmp_path) == [tmp_path / "texts" / "jwst" / RMAP]  # one file per mapping
    assert cache.get("jwst", RMAP) == text and ("jwst", RMAP) in cache
    assert cache.get("jwst", "jwst_miri_flat_0001.rmap") is None
    assert cache.names("jwst") == [RMAP]
    assert not [p for p in _stored_files(tmp_path) if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda t: t.replace("'MIRIMAGE'", "'MIRIMAGX'", 1), "content hashes to"),
        (lambda t: t[: len(t) // 2], "content hashes to"),  # truncated
        (lambda t: "\n".join(l for l in t.splitlines() if "sha1sum" not in l), "no single 'sha1sum'"),
        (lambda t: t.replace(RMAP, "jwst_miri_flat_0031.rmap"), "content hashes to"),
        (lambda t: "", "empty download"),
    ],
)
def test_bad_text_is_refused_and_not_stored(tmp_path: Path, crds_jwst_root: Path, mutate: Callable[[str], str], needle: str) -> None:
    cache = MappingCache(tmp_path)
    bad = mutate(_read(crds_jwst_root, RMAP))
    with pytest.raises(IntegrityError, match=needle):
        cache.put("jwst", RMAP, bad)
    assert _stored_files(tmp_path) == []


def test_self_consistent_file_under_the_wrong_name(tmp_path: Path, crds_jwst_root: Path) -> None:
    with pytest.raises(IntegrityError, match="header says it is"):
        MappingCache(tmp_path).put("jwst", "jwst_miri_flat_0031.rmap", _read(crds_jwst_root, RMAP))
    assert _stored_files(tmp_path) == []


def test_metadata_sha1_mismatch(tmp_path: Path, crds_jwst_root: Path) -> None:
    with pytest.raises(IntegrityError, match="server's metadata"):
        MappingCache(tmp_path).put("jwst", RMAP, _read(crds_jwst_root, RMAP), expected_sha1="0" * 40)
    assert _stored_files(tmp_path) == []


@pytest.mark.parametrize(
    "damage",
    [lambda b: b"garbage", lambda b: b"", lambda b: b[: len(b) // 2], lambda b: b[:41], lambda b: b[41:],
     lambda b: b.replace(b"MIRIMAGE", b"MIRIMAGX", 1), lambda b: b"0" * 40 + b[40:]],
)
def test_damaged_file_is_a_miss(tmp_path: Path, crds_jwst_root: Path, damage: Callable[[bytes], bytes]) -> None:
    cache = MappingCache(tmp_path)
    cache.put("jwst", RMAP, _read(crds_jwst_root, RMAP))
    path = tmp_path / "texts" / "jwst" / RMAP
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get("jwst", RMAP) is None and ("jwst", RMAP) not in cache


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    for bad in ("../../etc/passwd", "a/b.rmap", "x.fits"):
        with pytest.raises(UnknownMappingError):
            MappingCache(tmp_path).get("jwst", bad)


async def test_fetcher_downloads_once_then_serves_from_disk(
    tmp_path: Path, replay_server: ReplayServer, crds_jwst_root: Path
) -> None:
    metadata = load_server_config(crds_jwst_root / "config" / "server_config").download_metadata
    expected = {name: info["sha1sum"] for name, info in metadata.items()}
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        fetcher = MappingFetcher(client, MappingCache(tmp_path), expected)
        texts = await asyncio.gather(*(fetcher.get_text("jwst", RMAP) for _ in range(5)))
        assert set(texts) == {_read(crds_jwst_root, RMAP)}
        assert client.requests == 1 and fetcher.downloads == 1
        # A new fetcher over the same directory needs no network at all.
        again = MappingFetcher(client, MappingCache(tmp_path))
        assert await again.get_text("jwst", RMAP) == texts[0]
        assert client.requests == 1 and again.cache_hits == 1


async def test_corrupted_download_is_refused_and_not_cached(tmp_path: Path, replay_server: ReplayServer) -> None:
    replay_server.inject_fault("badsha1", 1)
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        fetcher = MappingFetcher(client, MappingCache(tmp_path))
        with pytest.raises(IntegrityError, match="content hashes to"):
            await fetcher.get_text("jwst", RMAP)
        assert _stored_files(tmp_path) == []
        assert "altered" not in await fetcher.get_text("jwst", RMAP)  # the next poll gets a clean copy
        assert client.requests == 2


async def test_download_metadata_mismatch_is_refused(tmp_path: Path, replay_server: ReplayServer) -> None:
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        fetcher = MappingFetcher(client, MappingCache(tmp_path), lambda name: "f" * 40)
        with pytest.raises(IntegrityError, match="metadata"):
            await fetcher.get_text("jwst", RMAP)
    assert _stored_files(tmp_path) == []


async def test_truncated_download(tmp_path: Path, replay_server: ReplayServer) -> None:
    replay_server.inject_fault("truncated", 1, target="download")
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        fetcher = MappingFetcher(client, MappingCache(tmp_path))
        with pytest.raises(ServerError):
            await fetcher.get_text("jwst", RMAP)
        assert _stored_files(tmp_path) == []
    replay_server.inject_fault("truncated", 1, target="download")
    async with CrdsRpcClient(replay_server.url, retries=1, backoff=0.01) as client:
        text = await MappingFetcher(client, MappingCache(tmp_path)).get_text("jwst", RMAP)
        assert header_checksum(text) == mapping_checksum(text) and client.requests == 2


async def test_get_many_downloads_each_name_once_and_stores_the_good_ones(
    tmp_path: Path, replay_server: ReplayServer, crds_jwst_root: Path
) -> None:
    names = [RMAP, "jwst_miri_flat_0031.rmap", "jwst_miri_flat_0030.rmap"]
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        fetcher = MappingFetcher(client, MappingCache(tmp_path))
        both = await asyncio.gather(fetcher.get_many("jwst", names), fetcher.get_many("jwst", names[::-1]),
                                    fetcher.get_text("jwst", RMAP))
        assert both[0] == both[1] == {n: _read(crds_jwst_root, n) for n in names} and both[2] == both[0][RMAP]
        assert client.requests == 3 and fetcher.downloads == 3
        replay_server.inject_fault("badsha1", 1)  # one of the next downloads is altered
        other = MappingFetcher(client, MappingCache(tmp_path / "other"))
        with pytest.raises(IntegrityError, match="content hashes to"):
            await other.get_many("jwst", names)
        assert len(MappingCache(tmp_path / "other").names("jwst")) == 2  # the two good ones are stored all the same
        assert len(_stored_files(tmp_path / "other")) == 1  # in one pack
        assert await other.get_many("jwst", names) == both[0] and client.requests == 7


def _pack(root: Path, crds_jwst_root: Path, names: list[str]) -> dict[str, str]:
    texts = {n: _read(crds_jwst_root, n) for n in names}
    MappingCache(root).store_many("jwst", [(n, t, verify_mapping_text(n, t)) for n, t in texts.items()])
    return texts


PACKED = [RMAP, "jwst_miri_flat_0031.rmap", "jwst_0500.pmap"]


def test_a_batch_is_one_pack_read_by_name_in_any_process(tmp_path: Path, crds_jwst_root: Path) -> None:
    texts = _pack(tmp_path, crds_jwst_root, PACKED)
    [pack] = _stored_files(tmp_path)
    assert pack.parent == tmp_path / "packs" / "jwst" and pack.name.endswith(".pack")
    fresh = MappingCache(tmp_path)  # another process: it lists the packs
    assert {n: fresh.get("jwst", n) for n in PACKED} == texts and fresh.names("jwst") == sorted(PACKED)
    assert fresh.get("jwst", "jwst_miri_flat_0001.rmap") is None
    # a pack written after this one listed the folder is seen once the folder has changed
    later = MappingCache(tmp_path)
    assert later.get("jwst", "jwst_miri_flat_0030.rmap") is None
    _pack(tmp_path, crds_jwst_root, ["jwst_miri_flat_0030.rmap"])
    folder = tmp_path / "packs" / "jwst"
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns + 1))  # not in the same clock tick
    assert later.get("jwst", "jwst_miri_flat_0030.rmap") == _read(crds_jwst_root, "jwst_miri_flat_0030.rmap")


def test_a_damaged_pack_record_is_a_miss(tmp_path: Path, crds_jwst_root: Path) -> None:
    texts = _pack(tmp_path, crds_jwst_root, PACKED)
    [pack] = _stored_files(tmp_path)
    data = pack.read_bytes()
    at = data.index(b"'MIRIMAGE'", data.index(RMAP.encode()))
    pack.write_bytes(data[:at] + b"'MIRIMAGX'" + data[at + 10:])
    cache = MappingCache(tmp_path)
    assert cache.get("jwst", RMAP) is None
    assert cache.get("jwst", PACKED[1]) == texts[PACKED[1]]
    # a text stored again (downloaded again) is read from its new copy; a per-name file comes first
    _pack(tmp_path, crds_jwst_root, [RMAP])
    assert MappingCache(tmp_path).get("jwst", RMAP) == texts[RMAP]
    cut = data[: data.index(PACKED[2].encode()) + 60]  # a pack cut short (a crash): the records before the cut serve
    pack.write_bytes(cut)
    cache = MappingCache(tmp_path)
    assert cache.get("jwst", PACKED[1]) == texts[PACKED[1]] and cache.get("jwst", PACKED[2]) is None
    pack.write_bytes(b"not a pack")
    assert MappingCache(tmp_path).get("jwst", PACKED[1]) is None


def test_a_per_name_file_comes_before_a_pack(tmp_path: Path, crds_jwst_root: Path) -> None:
    texts = _pack(tmp_path, crds_jwst_root, PACKED)
    cache = MappingCache(tmp_path)
    cache.put("jwst", RMAP, texts[RMAP])
    path = tmp_path / "texts" / "jwst" / RMAP
    assert cache.get("jwst", RMAP) == texts[RMAP]
    path.write_bytes(path.read_bytes()[:-5])  # damaged: the pack's copy serves
    assert MappingCache(tmp_path).get("jwst", RMAP) == texts[RMAP]


def test_checksum_lines_are_cut_as_splitlines_cuts_them() -> None:
    """The find-based line cutting against the rule's own words: every line containing "sha1sum"
    dropped from splitlines(True); every line ending str.splitlines knows, "\\r\\n" as one."""
    import random

    pieces = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u2029",
              "sha1sum", "sha1", "sum", "'sha1sum' : '" + "ab" * 20 + "',", '"sha1sum": "' + "CD" * 20 + '"', " ",
              "\t", "a", "\u00e9", "'name' : 'x.rmap',", "name"]
    claim = re.compile(r"""^\s*['"]sha1sum['"]\s*:\s*['"]([0-9a-fA-F]{40})['"]\s*,?\s*$""")
    rng = random.Random(20)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        kept = "".join(line for line in text.splitlines(True) if "sha1sum" not in line)
        assert mapping_checksum(text) == hashlib.sha1(kept.encode()).hexdigest(), repr(text)
        claims = [m.group(1).lower() for line in text.splitlines() if (m := claim.match(line))]
        assert header_checksum(text) == (claims[0] if len(claims) == 1 else None), repr(text)
