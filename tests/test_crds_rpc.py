"""The async JSON-RPC client against the loopback replay server: results, errors, retries, counters."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpcore
import httpx
import pytest

from crdswatch.devtools.replay import ReplayServer
from crdswatch.errors import RpcError, ServerError, UnknownMappingError
from crdswatch.limits import Limits
from crdswatch.sources.crds_rpc import CrdsRpcClient
from tests.support.crds_fixtures import REPLAY_UPTO, crds_jwst_root, replay_server, rpc_client, start_replay

__all__ = ["crds_jwst_root", "replay_server", "rpc_client"]


async def test_reads_the_replayed_server(rpc_client: CrdsRpcClient, replay_server: ReplayServer) -> None:
    assert await rpc_client.get_default_context("jwst", "latest") == REPLAY_UPTO
    history = await rpc_client.get_context_history("jwst")
    assert history[0].context == "jwst.pmap" and history[-1].context == REPLAY_UPTO
    assert history[-1].date == "2018-12-14T11:13:53+00:00"
    assert history == sorted(history, key=lambda a: a.date)
    info = await rpc_client.get_server_info()
    assert info["operational_context"] == REPLAY_UPTO and info["server"] == replay_server.url
    names = await rpc_client.call("get_mapping_names", REPLAY_UPTO)
    assert REPLAY_UPTO in names and "jwst_miri_flat_0032.rmap" in names and len(names) == 124
    files = await rpc_client.get_file_info_map("jwst", ["jwst_miri_flat_0032.rmap", "nope.fits"], ["sha1sum", "instrument"])
    assert files["jwst_miri_flat_0032.rmap"]["instrument"] == "miri"
    assert set(files["jwst_miri_flat_0032.rmap"]) == {"sha1sum", "instrument"}
    assert "NOT FOUND" in files["nope.fits"]


async def test_large_results_arrive_crds_encoded_and_are_decoded(
    rpc_client: CrdsRpcClient, replay_server: ReplayServer
) -> None:
    body = {"jsonrpc": "1.0", "method": "get_file_info_map", "params": ["jwst", None, None], "id": "raw"}
    async with httpx.AsyncClient() as http:
        raw = (await http.post(f"{replay_server.url}/json/", json=body)).json()
    assert raw["result"]["crds_encoded"] == "1.0" and isinstance(raw["result"]["crds_payload"], str)
    decoded = await rpc_client.get_file_info_map("jwst")
    assert len(decoded) == 5718 and decoded["jwst.pmap"]["size"] == "392"


async def test_everything_encoded_still_works(crds_jwst_root: Path) -> None:
    with start_replay(crds_jwst_root, encode_threshold=0) as server:
        async with CrdsRpcClient(server.url, annotate_url=False, retries=0) as client:
            assert await client.get_default_context("jwst") == REPLAY_UPTO
            assert len(await client.get_context_history("jwst")) == 137


async def test_rpc_error_carries_the_server_message(rpc_client: CrdsRpcClient, replay_server: ReplayServer) -> None:
    with pytest.raises(RpcError) as info:
        await rpc_client.call("get_mapping_names", "jwst_9999.pmap")
    assert info.value.method == "get_mapping_names"
    assert info.value.server_message == "Unknown context 'jwst_9999.pmap'"
    assert info.value.name == "UnknownContext" and info.value.code == 500
    # Server-side errors are answers, not transport failures: never retried.
    assert replay_server.calls == ["get_mapping_names"]


async def test_injected_rpc_error(rpc_client: CrdsRpcClient, replay_server: ReplayServer) -> None:
    replay_server.inject_fault("rpcerror")
    with pytest.raises(RpcError, match="Injected fault in get_context_history"):
        await rpc_client.get_context_history("jwst")
    assert len(await rpc_client.get_context_history("jwst")) == 137


async def test_http500_is_retried_then_succeeds(rpc_client: CrdsRpcClient, replay_server: ReplayServer) -> None:
    replay_server.inject_fault("http500", 2)
    assert await rpc_client.get_default_context("jwst") == REPLAY_UPTO
    assert rpc_client.requests == 3


@pytest.mark.parametrize("kind", ["http500", "nonjson", "reset", "truncated"])
async def test_transport_faults_become_server_errors(replay_server: ReplayServer, kind: str) -> None:
    replay_server.inject_fault(kind, 5)
    async with CrdsRpcClient(replay_server.url, timeout=2.0, retries=1, backoff=0.01) as client:
        with pytest.raises(ServerError, match="giving up after 2 attempts"):
            await client.get_context_history("jwst")
        assert client.requests == 2
        replay_server.clear_faults()
        assert await client.get_default_context("jwst") == REPLAY_UPTO


async def test_timeout_is_a_server_error(replay_server: ReplayServer) -> None:
    replay_server.inject_fault("timeout", 1, delay=2.0)
    async with CrdsRpcClient(replay_server.url, timeout=0.2, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(ServerError, match="timeout"):
            await client.get_server_info()
        assert time.monotonic() - started < 1.5


async def test_connection_refused_is_a_server_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with CrdsRpcClient(f"http://127.0.0.1:{port}", timeout=1.0, retries=1, backoff=0.01) as client:
        with pytest.raises(ServerError):
            await client.get_default_context("jwst")


async def test_legacy_server_default_context_fallback(crds_jwst_root: Path) -> None:
    with start_replay(crds_jwst_root, legacy_default_context=True) as server:
        async with CrdsRpcClient(server.url, retries=0) as client:
            assert await client.get_default_context("jwst", "latest") == REPLAY_UPTO
        # "latest" was refused, "operational" accepted.
        assert server.calls == ["get_default_context", "get_default_context"]


async def test_edit_state(rpc_client: CrdsRpcClient) -> None:
    assert await rpc_client.get_default_context("jwst", "edit") == REPLAY_UPTO


async def test_fetch_mapping_and_counters(rpc_client: CrdsRpcClient, crds_jwst_root: Path) -> None:
    text = await rpc_client.fetch_mapping("jwst", "jwst_miri_flat_0032.rmap")
    assert text == (crds_jwst_root / "mappings" / "jwst_miri_flat_0032.rmap").read_text()
    assert rpc_client.requests == 1 and rpc_client.bytes_received == len(text.encode())
    rpc_client.reset_counters()
    await rpc_client.get_default_context("jwst")
    await rpc_client.get_context_history("jwst")
    # An idle poll (default context + history) costs two small exchanges.
    assert rpc_client.requests == 2 and 0 < rpc_client.bytes_received < 100_000


async def test_concurrent_downloads_take_at_most_download_concurrency_lanes(replay_server: ReplayServer) -> None:
    async with CrdsRpcClient(replay_server.url) as lister:
        names = await lister.call("get_mapping_names", REPLAY_UPTO)
    client = CrdsRpcClient(replay_server.url, limits=Limits(download_concurrency=3))
    texts = await asyncio.gather(*(client.fetch_mapping("jwst", n) for n in names[:12]))
    assert all(texts) and client.requests == 12
    assert 1 <= len(client._lanes) <= 3  # one connection each; the ones beyond the cap share the main client
    assert all(isinstance(lane, httpcore.AsyncConnectionPool) for lane in client._lanes)  # on sources.netbackend
    # idle connections expire as httpx's would (a lane idle between polls is not reused hours later)
    assert all(lane._keepalive_expiry == httpx.Limits().keepalive_expiry for lane in client._lanes)
    await client.aclose()
    assert client._lanes == client._idle_lanes == []


async def test_with_a_proxy_in_the_environment_lanes_are_clients_that_apply_it(
    replay_server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # what the client makes of it: this server directly
    async with CrdsRpcClient(replay_server.url) as client:
        assert await client.fetch_mapping("jwst", "jwst_miri_flat_0032.rmap")
        assert [type(lane) for lane in client._lanes] == [httpx.AsyncClient]


async def test_fetch_unknown_or_unsafe_mapping(rpc_client: CrdsRpcClient) -> None:
    with pytest.raises(UnknownMappingError, match="no mapping"):
        await rpc_client.fetch_mapping("jwst", "jwst_9999.pmap")
    before = rpc_client.requests
    for bad in ("../config/server_config", "jwst_0500.pmap/..", "JWST.PMAP", "x.fits"):
        with pytest.raises(UnknownMappingError, match="not a CRDS mapping name"):
            await rpc_client.fetch_mapping("jwst", bad)
    assert rpc_client.requests == before  # rejected before any request


def test_the_replay_server_listens_with_room_for_every_download_lane() -> None:
    # With socketserver's backlog of 5, one of 8 simultaneous connects now and then lost its SYN
    # and waited a second for the kernel's retry (a 1,030 ms download in the replay benchmark).
    # Several clients (a daemon and the command line, the tests) may each open all their lanes at once.
    from crdswatch.devtools.replay import _Server

    assert _Server.request_queue_size >= 8 * Limits().download_concurrency
