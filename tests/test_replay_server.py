"""The replay server: control endpoints, faithful catalogue, and the real crds client against it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crdswatch.contexts.history import parse_history_date
from crdswatch.devtools.replay import ReplayServer
from crdswatch.sources.crds_rpc import CrdsRpcClient
from tests.support.crds_fixtures import REPLAY_UPTO, crds_jwst_root, replay_server, start_replay

__all__ = ["crds_jwst_root", "replay_server"]

PROBE = Path(__file__).parent / "support" / "crds_client_probe.py"


def test_control_activate_next_and_state(replay_server: ReplayServer) -> None:
    with httpx.Client(base_url=replay_server.url) as http:
        state = http.get("/control/state").json()
        assert state["context"] == REPLAY_UPTO and state["next"] == "jwst_0501.pmap" and state["remaining"] == 13
        row = http.post("/control/activate-next").json()
        assert row["context"] == "jwst_0501.pmap" and row["history_length"] == 138
        assert replay_server.context == "jwst_0501.pmap"
        assert http.get("/control/state").json()["next"] == "jwst_0502.pmap"


def test_activate_jumps_ahead_through_real_history(replay_server: ReplayServer) -> None:
    reply = httpx.post(f"{replay_server.url}/control/activate", json={"context": "jwst_0508.pmap"})
    assert reply.status_code == 200 and reply.json()["context"] == "jwst_0508.pmap"
    history = replay_server.state_model.get_context_history("jwst")
    # Activations between 0500 and 0510 happened too, with their real dates.
    assert [row[1] for row in history[:4]] == ["jwst_0508.pmap", "jwst_0504.pmap", "jwst_0502.pmap", "jwst_0501.pmap"]
    assert history[0][0] == "2019-04-23 16:46:33" and replay_server.state()["next"] == "jwst_0523.pmap"


async def test_activate_a_revert_uses_the_modern_date_style(replay_server: ReplayServer) -> None:
    replay_server.activate("jwst_0480.pmap")  # earlier than the current context: a revert
    async with CrdsRpcClient(replay_server.url, retries=0) as client:
        history = await client.get_context_history("jwst")
        assert await client.get_default_context("jwst") == "jwst_0480.pmap"
    assert history[-1].context == "jwst_0480.pmap" and "." in history[-1].date  # microseconds
    raw = replay_server.state_model.get_context_history("jwst")[0][0]
    assert raw.endswith("+00:00") and parse_history_date(raw).year >= 2024


def test_control_errors(crds_jwst_root: Path) -> None:
    with start_replay(crds_jwst_root, upto="jwst_0541.pmap") as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/control/activate-next").status_code == 409
        assert http.post("/control/activate", json={"context": "jwst_9999.pmap"}).status_code == 404
        assert http.post("/control/activate", json={"context": "../x.pmap"}).status_code == 400
        assert http.post("/control/activate", content=b"{").status_code == 400
        assert http.post("/control/fault", json={"kind": "gremlins"}).status_code == 400
        assert http.post("/control/nope").status_code == 404
        ok = http.post("/control/fault", json={"kind": "http500", "count": 2})
        assert ok.json()["faults"] == [{"kind": "http500", "count": 2, "target": "any"}]
        # Control requests themselves are never faulted.
        assert http.get("/control/state").status_code == 200


def test_upto_defaults_to_the_oldest_and_must_exist(crds_jwst_root: Path) -> None:
    with start_replay(crds_jwst_root, upto=None) as server:
        assert server.context == "jwst.pmap" and server.state()["remaining"] == 149
    with pytest.raises(ValueError, match="not in the server's context history"):
        start_replay(crds_jwst_root, upto="jwst_0056.pmap")


def test_mapping_downloads(replay_server: ReplayServer, crds_jwst_root: Path) -> None:
    http = httpx.Client(base_url=f"{replay_server.url}/unchecked_get/mappings")
    got = http.get("/jwst/jwst_0541.pmap")
    assert got.status_code == 200 and got.content == (crds_jwst_root / "mappings" / "jwst_0541.pmap").read_bytes()
    for bad in ("jwst_9999.pmap", "jwst_miri_flat_slitlessprism.fits", "..%2Fconfig%2Fserver_config"):
        assert http.get(f"/jwst/{bad}").status_code == 404
    assert http.get("/hst/jwst_0541.pmap").status_code == 404
    http.close()


def test_file_info_is_never_invented(replay_server: ReplayServer) -> None:
    infos = replay_server.state_model.get_file_info_map("jwst")
    allowed = {"name", "sha1sum", "size", "instrument", "filekind"}
    for name, record in infos.items():
        assert set(record) <= allowed and all(isinstance(v, str) for v in record.values()), name
    assert set(infos["jwst_0541.pmap"]) == {"name", "sha1sum", "size"}
    assert infos["jwst_miri_0177.imap"]["instrument"] == "miri" and "filekind" not in infos["jwst_miri_0177.imap"]
    assert infos["jwst_miri_flat_0003.fits"]["filekind"] == "flat"


def test_real_crds_client_reads_the_replay_server(replay_server: ReplayServer, tmp_path: Path) -> None:
    replay_server.activate_next()
    done = subprocess.run(
        [sys.executable, str(PROBE), replay_server.url, str(tmp_path / "crds-cache")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["context"] == "jwst_0501.pmap" == seen["server_info_context"]
    assert seen["history"][-1][:2] == ["2019-04-17 10:23:38", "jwst_0501.pmap"]
    assert len(seen["history"]) == 138 and seen["history"][0][1] == "jwst.pmap"
    # crds loaded every downloaded mapping itself (its own checksum checks) and agrees on the tree.
    assert seen["names"] == seen["local_names"] and len(seen["names"]) > 100
    rmap = next(n for n in seen["names"] if n.endswith(".rmap"))
    assert seen["info"][rmap]["filekind"] and seen["info"][rmap]["sha1sum"]
    assert "NOT FOUND" in seen["info"]["jwst_nothing_9999.fits"]
    assert seen["full_info_count"] == seen["download_metadata_count"] == 5718
