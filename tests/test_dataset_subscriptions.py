"""Dataset subscriptions end to end: real JWST activations replayed, real polls, the real outbox.

A MIRI MRS observer who subscribes with the parameters of their exposure (or its FITS file)
hears only about activations that change a reference file their exposure gets, not about the
imager darks and coronagraph masks an instrument or EXP_TYPE filter lets through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.app.outbox_notices import NoticeBuilder
from crdswatch.app.poll import Watch, poll_once
from crdswatch.devtools.replay import ReplayServer
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.sources.crds import CrdsSource
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.store import Store

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MRS = {"instrument": "miri", "EXP_TYPE": "MIR_MRS", "DETECTOR": "MIRIFULONG", "CHANNEL": "34", "BAND": "LONG",
       "READPATT": "SLOW", "SUBARRAY": "FULL", "DATE-OBS": "2019-03-01", "TIME-OBS": "00:00:00"}
# Real history after jwst_0531: 0532 new MIRI darks (imager), 0534 PSF masks, 0538 extract1d,
# 0535 and 0537 other instruments, 0540 new MRS regions. Only 0540 changes what an MRS exposure gets.
START, STEPS = "jwst_0531.pmap", 6


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    fits = pytest.importorskip("astropy.io.fits")
    primary = fits.PrimaryHDU()
    for key, value in {**MRS, "INSTRUME": "MIRI"}.items():
        if key != "instrument":
            primary.header[key] = value
    fits.HDUList([primary]).writeto(tmp_path / "jw01234001001_01101_00001_mirifulong_uncal.fits")
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as s:
        s.upsert_subscriber("mrs-observer", subscriber_from_json({"email": ["mrs@example.org"], "datasets": [{"id": "MRS 3/4 LONG", **MRS}]}))
        s.upsert_subscriber("mrs-fits", subscriber_from_json({"email": ["fits@example.org"], "datasets": [
            {"fits": str(tmp_path / "jw01234001001_01101_00001_mirifulong_uncal.fits")}]}))
        s.upsert_subscriber("miri-all", subscriber_from_json({"email": ["miri@example.org"], "instruments": ["miri"]}))
        s.upsert_subscriber("mrs-exp-type", subscriber_from_json({"email": ["exp@example.org"], "instruments": ["miri"],
                                             "parameters": {"EXP_TYPE": ["MIR_MRS"]}}))
        yield s


@pytest.fixture
def server(jwst_data: Path) -> Iterator[ReplayServer]:
    with ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", upto=START) as srv:
        yield srv


@pytest.fixture
async def source(server: ReplayServer, tmp_path: Path) -> AsyncIterator[CrdsSource]:
    client = CrdsRpcClient(server.url, timeout=5, retries=1, backoff=0.01, max_backoff=0.02)
    src = CrdsSource(server.url, "jwst", tmp_path / "cache", client=client)
    yield src
    await src.aclose()


async def test_mrs_dataset_subscriber_hears_only_about_its_own_references(
    store: Store, source: CrdsSource, server: ReplayServer
) -> None:
    watch = Watch(source)
    await poll_once(watch, store, NOW)  # baseline
    seen: list[str] = []
    for _ in range(STEPS):
        server.activate_next()
        seen += (await poll_once(watch, store, NOW)).processed
    assert seen[0] == "jwst_0532.pmap" and seen[-1] == "jwst_0540.pmap", seen
    rows = store.outbox_rows(limit=500)
    heard = {name: sorted({r.context for r in rows if r.subscriber == name}) for name in
             ("mrs-observer", "mrs-fits", "miri-all", "mrs-exp-type")}
    # The instrument and EXP_TYPE filters flood: imager darks (0532) and PSF masks (0534) too.
    assert "jwst_0532.pmap" in heard["miri-all"] and "jwst_0532.pmap" in heard["mrs-exp-type"]
    assert "jwst_0534.pmap" in heard["mrs-exp-type"]
    # The dataset subscribers hear about the one activation that changes their references.
    assert heard["mrs-observer"] == ["jwst_0540.pmap"]
    assert heard["mrs-fits"] == ["jwst_0540.pmap"]
    row = next(r for r in rows if r.subscriber == "mrs-observer")
    notices = NoticeBuilder(store)  # rows refer to the activation stored once; the drain builds notices so
    await notices.load(rows)
    notice = notices.notice([row])
    changes = notice.activations[0].changes
    assert changes and {(c.instrument, c.reftype) for c in changes} == {("miri", "regions")}
    assert notice.dataset_hits == {
        "jwst_miri_regions_0025.asdf": ("MRS 3/4 LONG: REGIONS jwst_miri_regions_0019.asdf → jwst_miri_regions_0025.asdf",)
    }
    assert notice.interest is not None and notice.interest.datasets == ("MRS 3/4 LONG",)
    fits_notice = notices.notice([next(r for r in rows if r.subscriber == "mrs-fits")])
    assert fits_notice.interest is not None and fits_notice.interest.datasets == ("MIRIFULONG MIR_MRS",)
