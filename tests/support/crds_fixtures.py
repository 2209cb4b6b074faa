"""Fixtures for the CRDS source tests: bundled real JWST data and a loopback replay server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crdswatch.devtools.bundled import extract_bundled
from crdswatch.devtools.replay import ReplayServer
from crdswatch.sources.crds_rpc import CrdsRpcClient

__all__ = ["REPLAY_UPTO", "crds_jwst_root", "replay_server", "rpc_client", "start_replay"]

REPLAY_UPTO = "jwst_0500.pmap"  # 2018-12-14; 13 real activations follow it in the snapshot


@pytest.fixture(scope="session")
def crds_jwst_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mappings/` + `config/server_config`, extracted once (shared with conftest's jwst_data)."""
    try:
        return Path(request.getfixturevalue("jwst_data"))
    except pytest.FixtureLookupError:
        return extract_bundled(tmp_path_factory.mktemp("crds-bundled"))


def start_replay(root: Path, upto: str | None = REPLAY_UPTO, **kwargs: Any) -> ReplayServer:
    return ReplayServer(root / "mappings", root / "config" / "server_config", upto, **kwargs).start()


@pytest.fixture
def replay_server(crds_jwst_root: Path) -> Iterator[ReplayServer]:
    server = start_replay(crds_jwst_root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def rpc_client(replay_server: ReplayServer) -> AsyncIterator[CrdsRpcClient]:
    async with CrdsRpcClient(replay_server.url, timeout=2.0, retries=2, backoff=0.01) as client:
        yield client
