"""Shared fixtures: the bundled real JWST CRDS history, extracted once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crdswatch.devtools.bundled import extract_bundled
from crdswatch.devtools.replay import ReplayServer


@pytest.fixture(scope="session")
def jwst_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with `mappings/` (2,482 real JWST mappings) and `config/server_config`."""
    return extract_bundled(tmp_path_factory.mktemp("bundled"))


@pytest.fixture(scope="session")
def jwst_mappings(jwst_data: Path) -> Path:
    return jwst_data / "mappings"


@pytest.fixture(scope="session")
def jwst_server_config(jwst_data: Path) -> Path:
    return jwst_data / "config" / "server_config"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Commands run by tests keep their caches in a temporary folder, never in the user's home."""
    import os

    os.environ["CRDSWATCH_CACHE"] = str(tmp_path_factory.mktemp("crdswatch-cache"))


@pytest.fixture
def replay(jwst_data: Path) -> Iterator[ReplayServer]:
    """A replay CRDS server over the bundled history, at jwst_0500.pmap (real activations follow)."""
    with ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", upto="jwst_0500.pmap") as srv:
        yield srv
