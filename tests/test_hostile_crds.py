"""Issue 9, classes 1-4 and 7: a hostile CRDS server of our own on loopback cannot grow, hang or spin us."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.errors import MappingError, MappingSyntaxError, ServerError
from crdswatch.limits import Limits
from crdswatch.model import DiffResult, FileInfo
from crdswatch.sources.crds import CrdsSource
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.sources.fitsheader import fill_from_fits, read_fits_header
from tests.support.hostile_crds import HostileCrds, fits_header, hostile_crds, imap, pmap, rmap

FAST = Limits(request_deadline=2.0, poll_deadline=10.0)


async def _diff(src: CrdsSource, old: str, new: str) -> DiffResult:
    """What the poll does: the source fetches the mappings, then the pure diff runs over them."""
    return diff_contexts(old, new, await src.load_for_diff(old, new))


@pytest.fixture
def crds() -> Iterator[HostileCrds]:
    with hostile_crds() as server:
        yield server


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def source(crds: HostileCrds, tmp_path: Path, limits: Limits = FAST, **kwargs: object) -> CrdsSource:
    src = CrdsSource(crds.url, "jwst", tmp_path / "cache", timeout=5, limits=limits, **kwargs)  # type: ignore[arg-type]
    src.client.retries = 0
    return src


# -- class 1: size caps --------------------------------------------------------------------------------


async def test_huge_rpc_reply_is_aborted_not_buffered(crds: HostileCrds) -> None:
    crds.hostile = "huge-rpc"
    before = peak_rss_mb()
    async with CrdsRpcClient(crds.url, retries=0, limits=Limits(crds_reply_max_bytes=1 << 20)) as client:
        with pytest.raises(ServerError, match="cap of 1048576 bytes"):
            await asyncio.wait_for(client.get_default_context("jwst"), 60)
        assert client.bytes_received < 2 << 20
    assert peak_rss_mb() - before < 100  # a buffering client would grow by the 512 MB sent


async def test_huge_mapping_download_is_aborted(crds: HostileCrds, tmp_path: Path) -> None:
    src = source(crds, tmp_path, Limits(mapping_max_bytes=256 * 1024, request_deadline=30))
    crds.hostile = "huge-mapping"
    before = peak_rss_mb()
    with pytest.raises(ServerError, match="cap of 262144 bytes"):
        await asyncio.wait_for(_diff(src, "jwst_0001.pmap", "jwst_0001.pmap"), 60)
    assert peak_rss_mb() - before < 100
    await src.aclose()


async def test_fits_reader_reads_at_most_its_cap_from_a_range_ignoring_server(crds: HostileCrds) -> None:
    crds.hostile = "ignore-range"
    before = peak_rss_mb()
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match="no END card"):
            await asyncio.wait_for(read_fits_header(
                http, f"{crds.url}/unchecked_get/references/jwst/x.fits", max_bytes=8 * 2880), 60)
    assert peak_rss_mb() - before < 100


# -- class 2: overall deadline ---------------------------------------------------------------------------


async def test_trickled_reply_hits_the_request_deadline(crds: HostileCrds) -> None:
    crds.hostile = "trickle"  # one byte every 0.5 s: the 5 s gap timeout never fires
    async with CrdsRpcClient(crds.url, retries=1, backoff=0.01, timeout=5,
                             limits=Limits(request_deadline=1.5)) as client:
        with pytest.raises(ServerError, match="request_deadline"):
            await asyncio.wait_for(client.get_default_context("jwst"), 30)
        assert client.requests == 2  # each attempt bounded, then given up


# -- class 3: mapping graphs -----------------------------------------------------------------------------


async def test_imap_that_selects_itself_is_refused(crds: HostileCrds, tmp_path: Path) -> None:
    crds.add("jwst_nircam_0002.imap", imap("jwst_nircam_0002.imap", "nircam", {"DARK": "jwst_nircam_0002.imap"}))
    crds.add("jwst_0002.pmap", pmap("jwst_0002.pmap", {"NIRCAM": "jwst_nircam_0002.imap"}))
    src = source(crds, tmp_path)
    with pytest.raises(MappingSyntaxError, match="may only name .rmap mappings"):
        await asyncio.wait_for(_diff(src, "jwst_0001.pmap", "jwst_0002.pmap"), 30)
    await src.aclose()


async def test_1500_deep_chain_is_refused_after_a_few_downloads(crds: HostileCrds, tmp_path: Path) -> None:
    names = [f"jwst_nircam_{i:04d}.imap" for i in range(2, 1502)]
    for name, child in zip(names, [*names[1:], "jwst_nircam_dark_0001.rmap"]):
        crds.add(name, imap(name, "nircam", {"DARK": child}))
    crds.add("jwst_0002.pmap", pmap("jwst_0002.pmap", {"NIRCAM": names[0]}))
    src = source(crds, tmp_path)
    with pytest.raises(MappingSyntaxError):
        await asyncio.wait_for(_diff(src, "jwst_0001.pmap", "jwst_0002.pmap"), 30)
    assert crds.counts["mapping"] < 10
    await src.aclose()


async def test_cap_on_mappings_per_context(crds: HostileCrds, tmp_path: Path) -> None:
    rmaps = {f"jwst_nircam_t{i}_0002.rmap": rmap(f"jwst_nircam_t{i}_0002.rmap", "nircam", f"t{i}",
                                                 {"NRCA1": f"jwst_nircam_t{i}_0002.fits"}) for i in range(60)}
    old = crds.context_with_rmap(2, {})
    new = crds.context_with_rmap(3, rmaps, {f"T{i}": n for i, n in enumerate(rmaps)})
    crds.add(old.replace(".pmap", ".pmap"), crds.mappings[old])
    crds.add("jwst_nircam_0002.imap", imap("jwst_nircam_0002.imap", "nircam",
                                           {f"T{i}": "jwst_nircam_dark_0001.rmap" for i in range(60)}))
    src = source(crds, tmp_path, Limits(max_mappings_per_context=50))
    with pytest.raises(MappingError, match="max_mappings_per_context"):
        await _diff(src, old, new)
    assert crds.counts["mapping"] <= 5  # the pmaps and imaps; none of the 60 rmaps
    await src.aclose()


# -- class 4: bounded download concurrency -----------------------------------------------------------------


async def test_many_changed_rmaps_download_a_few_at_a_time(crds: HostileCrds, tmp_path: Path) -> None:
    n = 120
    old = {f"T{i}": f"jwst_nircam_t{i}_0001.rmap" for i in range(n)}
    new = {f"T{i}": f"jwst_nircam_t{i}_0002.rmap" for i in range(n)}
    for sel in (old, new):
        for name in sel.values():
            crds.add(name, rmap(name, "nircam", name.split("_")[2], {"NRCA1": name.replace(".rmap", ".fits")}))
    crds.add("jwst_nircam_0002.imap", imap("jwst_nircam_0002.imap", "nircam", old))
    crds.add("jwst_nircam_0003.imap", imap("jwst_nircam_0003.imap", "nircam", new))
    crds.add("jwst_0002.pmap", pmap("jwst_0002.pmap", {"NIRCAM": "jwst_nircam_0002.imap"}))
    crds.add("jwst_0003.pmap", pmap("jwst_0003.pmap", {"NIRCAM": "jwst_nircam_0003.imap"}))
    crds.download_delay = 0.02
    src = source(crds, tmp_path, Limits(download_concurrency=4))
    result = await _diff(src, "jwst_0002.pmap", "jwst_0003.pmap")
    assert len({c.new_mapping for c in result.changes if c.level == "reference"}) == n
    assert crds.max_in_flight <= 4
    await src.aclose()


# -- class 7: untrusted names, foreign redirects ----------------------------------------------------------


async def test_bad_reference_names_never_reach_a_url(crds: HostileCrds, tmp_path: Path) -> None:
    bad = ["jwst_nircam_dark_\\r\\n0002.fits", "jwst_nircam_dark_\\x000003.fits", "../../etc/passwd.fits",
           "a b.fits", "x%2fy.fits"]
    rmaps = {"jwst_nircam_dark_0002.rmap": rmap("jwst_nircam_dark_0002.rmap", "nircam", "dark",
                                                {f"NRCA{i}": name for i, name in enumerate(bad)})}
    new = crds.context_with_rmap(2, rmaps, {"DARK": "jwst_nircam_dark_0002.rmap"})
    src = source(crds, tmp_path)
    result = await _diff(src, "jwst_0001.pmap", new)
    files = {c.new_file for c in result.changes if c.new_file and c.new_file.endswith(".fits")}
    assert len(files) == len(bad) and any("\r" in f for f in files)
    catalog = await src.catalog(sorted(files))  # catalogue lookup, FITS fallback: no exception
    assert set(catalog) == files
    assert crds.counts.get("reference", 0) == 0  # none of those names went into a URL
    await src.aclose()


async def test_fits_reader_does_not_follow_a_redirect_to_another_host(crds: HostileCrds) -> None:
    with hostile_crds("127.0.0.2") as foreign:
        foreign.references["jwst_nircam_dark_0009.fits"] = fits_header(PEDIGREE="FOREIGN", DESCRIP="from elsewhere")
        crds.hostile, crds.foreign_url = "redirect", foreign.url
        async with httpx.AsyncClient() as http:
            infos = [FileInfo("jwst_nircam_dark_0009.fits")]
            out = await fill_from_fits(http, f"{crds.url}/unchecked_get/references/jwst/", infos)
        assert out["jwst_nircam_dark_0009.fits"] == FileInfo("jwst_nircam_dark_0009.fits")
        assert foreign.counts.get("reference", 0) == 0
        with pytest.raises(ValueError, match="another host"):
            async with httpx.AsyncClient() as http:
                await read_fits_header(http, f"{crds.url}/unchecked_get/references/jwst/jwst_nircam_dark_0009.fits")


async def test_fits_reader_follows_a_redirect_on_the_same_host(crds: HostileCrds) -> None:
    crds.references["jwst_nircam_dark_0009.fits"] = fits_header(PEDIGREE="INFLIGHT 2024-01-01 2024-01-02")
    crds.hostile, crds.foreign_url = "redirect", crds.url
    async with httpx.AsyncClient() as http:
        found = await read_fits_header(http, f"{crds.url}/unchecked_get/references/jwst/jwst_nircam_dark_0009.fits")
    assert found == {"PEDIGREE": "INFLIGHT 2024-01-01 2024-01-02"}
    assert crds.reference_paths[-1].startswith("/moved/")


async def test_pathological_rule_keys_cannot_freeze_a_poll(crds: HostileCrds, tmp_path: Path) -> None:
    """Class 4 through the daemon: an rmap whose rule keys are catastrophic regular expressions,
    and a subscriber whose parameter filter makes each of them backtrack (Python's re would take
    longer than the age of the universe on one). The poll ends, /healthz answers meanwhile, and a
    key that ran out of its regex_timeout counts as may-match: the subscriber is told."""
    from tests.support.daemon_env import Clock, make_daemon, raw_http, write_config
    from tests.test_service import NOW

    evil = [f"((A|AA)+$|X{i})" for i in range(20)]
    from tests.support.daemon_env import free_port

    subscriber = ('[[subscribers]]\nname = "detectors"\n'
                  f'webhook_url = "http://127.0.0.1:{free_port()}/hook"\n'
                  'webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
                  f'parameters = {{ "META.INSTRUMENT.DETECTOR" = ["{"A" * 60}B"] }}\n')
    config = write_config(tmp_path, server_url=crds.url, subscribers=subscriber,
                          extra="[limits]\nregex_timeout = 0.05\n")
    daemon = make_daemon(config, Clock(NOW))
    watch = daemon.watches[0]
    await daemon.start_http()
    try:
        await daemon.poll(watch)  # baseline
        name = "jwst_nircam_dark_0002.rmap"
        crds.activate(crds.context_with_rmap(2, {name: rmap(name, "nircam", "dark", {k: f"d{i}.fits"
                                                                                    for i, k in enumerate(evil)})},
                                             {"DARK": name}), "2024-05-01 00:00:00")
        poll = asyncio.create_task(daemon.poll(watch))
        status, _, _ = await asyncio.wait_for(raw_http(daemon.settings.http.port, b"GET /healthz HTTP/1.1\r\n"
                                                       b"Host: x\r\nConnection: close\r\n\r\n"), 5)
        assert status == 200
        await asyncio.wait_for(poll, 60)
        assert daemon.health.failures[watch.key] == 0
        rows = daemon.store.outbox_rows()
        assert [(r.subscriber, r.context) for r in rows] == [("detectors", "jwst_0002.pmap")]
    finally:
        await daemon.shutdown()


# -- class 1 on the delivery side: a receiver's reply ---------------------------------------------------


async def test_a_webhook_receiver_answering_an_endless_body_is_not_buffered(crds: HostileCrds) -> None:
    """A webhook (or Slack) receiver whose reply body never ends (512 MB, chunked): the send reads
    the status and the first bytes, then hangs up; the daemon does not grow by what was sent."""
    from crdswatch.channels.webhook import WebhookChannel

    crds.hostile = "huge-rpc"  # every POST is answered 200 with an endless chunked body
    before = peak_rss_mb()
    async with httpx.AsyncClient(timeout=10) as http:
        channel = WebhookChannel(f"{crds.url}/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", http)
        await asyncio.wait_for(channel.send({"event": "test"}, "key-1"), 60)  # 200: sent
    assert peak_rss_mb() - before < 100  # a buffering client grows by the 512 MB sent
