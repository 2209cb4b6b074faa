"""Issue 9, class 6: the cursor is the server's history, so A -> B -> A between polls and backdated
entries are noticed (within history_every x poll_interval), against the hostile CRDS server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.app.poll import Watch, poll_once
from crdswatch.limits import Limits
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import Store
from tests.support.hostile_crds import HostileCrds, hostile_crds, rmap

NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture
def crds() -> Iterator[HostileCrds]:
    with hostile_crds() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/state.db") as s:
        yield s


def second_context(crds: HostileCrds, serial: int) -> str:
    name = f"jwst_nircam_dark_{serial:04d}.rmap"
    return crds.context_with_rmap(serial, {name: rmap(name, "nircam", "dark", {"NRCA1": f"d{serial}.fits"})},
                                  {"DARK": name})


async def test_a_b_a_between_polls_is_noticed_within_history_every(
    crds: HostileCrds, store: Store, tmp_path: Path
) -> None:
    watch = Watch(CrdsSource(crds.url, "jwst", tmp_path / "cache", limits=Limits(history_every=3)), "latest")
    assert (await poll_once(watch, store, NOW)).baseline
    b = second_context(crds, 2)
    crds.activate(b, "2024-05-02 00:00:00")
    crds.activate("jwst_0001.pmap", "2024-05-03 00:00:00", "reverted")  # current is A again
    before = crds.counts.get("rpc:get_context_history", 0)
    assert (await poll_once(watch, store, NOW)).processed == []  # idle polls: one request each
    assert (await poll_once(watch, store, NOW)).processed == []
    assert crds.counts.get("rpc:get_context_history", 0) == before
    report = await poll_once(watch, store, NOW)  # the 3rd reads the history
    assert report.processed == [b, "jwst_0001.pmap"]
    for _ in range(3):  # and then nothing more
        assert (await poll_once(watch, store, NOW)).processed == []
    await watch.source.aclose()


async def test_backdated_entry_is_processed(crds: HostileCrds, store: Store, tmp_path: Path) -> None:
    watch = Watch(CrdsSource(crds.url, "jwst", tmp_path / "cache"), "latest")
    await poll_once(watch, store, NOW)
    c = second_context(crds, 3)
    crds.activate(c, "2023-01-01 00:00:00", "backdated")  # newest entry, dated before the cursor's
    report = await poll_once(watch, store, NOW)
    assert report.processed == [c]
    await watch.source.aclose()


async def test_a_lone_surrogate_in_the_servers_history_does_not_stop_the_polls(
    crds: HostileCrds, store: Store, tmp_path: Path
) -> None:
    """Class 8 at the source: a history description holding a JSON '\\ud800' escape decodes to a
    lone surrogate that no database can store; every poll failed on it. It arrives as U+FFFD."""
    watch = Watch(CrdsSource(crds.url, "jwst", tmp_path / "cache"), "latest")
    await poll_once(watch, store, NOW)
    c = second_context(crds, 2)
    crds.activate(c, "2024-05-02 00:00:00", "lone \ud800 surrogate")  # json.dumps sends it as \ud800
    report = await poll_once(watch, store, NOW)
    assert report.processed == [c]
    assert store.list_activations(watch.key)[0].description == "lone \ufffd surrogate"
    await watch.source.aclose()
