"""Pytest fixtures for channel peers; import the ones you need into a test module or conftest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from .http_sink import HttpSink, running_http_sink
from .smtp_server import Pki, SmtpTestServer, make_pki, running_smtp_server

__all__ = ["http_client", "http_sink", "smtp_pki", "smtp_server", "smtp_tls_server"]


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One throwaway CA and server certificate (127.0.0.1, localhost) for the whole run."""
    return make_pki(Path(tmp_path_factory.mktemp("smtp-pki")))


@pytest.fixture
def smtp_server(smtp_pki: Pki) -> Iterator[SmtpTestServer]:
    """STARTTLS required, AUTH only after TLS; user `crdswatch` / `correct horse`."""
    with running_smtp_server(smtp_pki, security="starttls") as server:
        yield server


@pytest.fixture
def smtp_tls_server(smtp_pki: Pki) -> Iterator[SmtpTestServer]:
    """Implicit TLS (SMTPS) with AUTH; same credentials as `smtp_server`."""
    with running_smtp_server(smtp_pki, security="tls") as server:
        yield server


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """A recording HTTP receiver answering 200 "ok" unless scripted with `respond(...)`."""
    with running_http_sink() as sink:
        yield sink


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """A short-timeout client so timeout tests stay fast."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        yield client
