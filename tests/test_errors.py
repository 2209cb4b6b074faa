"""One error tree: every error class crdswatch defines lives in crdswatch.errors, under CrdswatchError;
delivery errors carry the peer's code besides the message, and the outbox keeps it with the reason."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import crdswatch
from crdswatch import errors
from crdswatch.channels import EmailChannel
from crdswatch.errors import (
    CrdswatchError,
    DeliveryConnectionError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from crdswatch.store import NewDelivery, Store
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer
from tests.test_channel_email import notice

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(crdswatch.__path__, "crdswatch.")]
    # devtools: the replay server's emulated server fault is the peer's error, not ours; migrations
    # are alembic scripts.
    return [n for n in names
            if not n.startswith(("crdswatch.devtools", "crdswatch.migrations")) and n != "crdswatch.__main__"]


def test_every_error_class_lives_in_the_one_tree() -> None:
    strays = []
    for name in _modules():
        if name == errors.__name__:
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name
                    and not attr.startswith("_")):
                strays.append(f"{name}.{attr}")
    assert strays == []
    for value in vars(errors).values():
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__:
            assert issubclass(value, CrdswatchError), value


async def test_smtp_refusals_carry_the_reply_code(smtp_server: SmtpTestServer) -> None:  # noqa: F811
    smtp_server.reject_address("alice@example.org", 550)
    with pytest.raises(PermanentDeliveryError) as caught:
        await EmailChannel(smtp_server.settings()).send(notice())
    assert caught.value.code == 550 and "550" in str(caught.value)


async def test_an_unreachable_peer_is_a_connection_error_without_a_code() -> None:
    with socket_nobody_listens() as port:
        async with httpx.AsyncClient(timeout=2) as client:
            from crdswatch.channels import WebhookChannel
            from crdswatch.channels.webhook import generate_secret

            with pytest.raises(ConnectionError) as caught:
                await WebhookChannel(f"http://127.0.0.1:{port}/", generate_secret(), client).send({}, "k")
    assert isinstance(caught.value, DeliveryConnectionError) and caught.value.code is None


def test_the_outbox_keeps_the_code_with_the_reason(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/s.db", clock=lambda: T0) as store:
        from crdswatch.model import Activation

        store.record_activation("k", Activation("2026-11-24T00:00:00", "jwst_0541.pmap"), None, None,
                                [NewDelivery("a", "email:a@example.org"), NewDelivery("b", "slack")], None, now=T0)
        rows = {r.subscriber: r for r in store.claim("w", T0, 60, 10)}
        assert store.mark_failed(rows["a"].id, "w", T0, PermanentDeliveryError("smtp: 550 no such user", code=550))
        assert store.mark_failed(rows["b"].id, "w", T0, TransientDeliveryError("slack webhook: HTTP 429", 30, code=429))
        got = {r.subscriber: r.last_error for r in store.outbox_rows()}
    assert got == {"a": "PermanentDeliveryError [550]: smtp: 550 no such user",
                   "b": "TransientDeliveryError [429]: slack webhook: HTTP 429"}


def test_retry_later_keeps_type_message_and_code() -> None:
    from crdswatch.errors import ChannelPausedError

    error = ChannelPausedError("smtp: 535 bad credentials", code=535)
    later = error.retry_later(300)
    assert type(later) is ChannelPausedError and str(later) == str(error)
    assert (later.code, later.retry_after, error.retry_after) == (535, 300, None)


class socket_nobody_listens:
    """A loopback port that was free a moment ago: connecting to it is refused."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql+psycopg://u:secret@db/x", "postgresql+psycopg://u:********@db/x"),
    ("FAIL  http://crdsuser:pw@127.0.0.1:8000/ refused", "FAIL  http://crdsuser:********@127.0.0.1:8000/ refused"),
    ("postgresql://u:p@ss@db/x and mail to a@b.org", "postgresql://u:********@db/x and mail to a@b.org"),
    ("sqlite:///state.db", "sqlite:///state.db"),
    ("https://token@host/x", "https://token@host/x"),
])
def test_one_scrubber_masks_every_url_password(text: str, shown: str) -> None:
    from crdswatch.config.checks import redact_url as config_redact
    from crdswatch.redact import redact_url

    assert redact_url(text) == shown
    assert config_redact is redact_url  # re-exported, not a second rule


def test_error_texts_are_scrubbed_where_they_are_made() -> None:
    """Whatever raises a CrdswatchError with a URL in it, its text never shows the password."""
    from crdswatch.errors import DeliveryTimeoutError, RpcError, ServerError

    made = [
        ServerError("transport error talking to https://u:hunter2@crds.example/json/"),
        RpcError("get_default_context", "Error", "at https://u:hunter2@crds.example/"),
        DeliveryTimeoutError("no answer from https://u:hunter2@hooks.example/x", code=None),
        errors.ConfigError("[state] database postgresql://u:hunter2@db/x unreachable"),
    ]
    for exc in made:
        assert "hunter2" not in str(exc) and "hunter2" not in repr(exc), exc
        assert ":********@" in str(exc)
    assert isinstance(made[2], TimeoutError)


def test_a_read_only_store_names_its_database_without_the_password() -> None:
    from crdswatch.store.engine import SchemaNotReady

    with pytest.raises(SchemaNotReady) as raised:
        Store.open("sqlite://u:hunter2@/:memory:", read_only=True)
    assert "hunter2" not in str(raised.value)
