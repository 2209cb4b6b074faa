"""Wiring from settings: the config file is authoritative for the subscribers it names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from crdswatch.config import load_settings
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.service.runtime import open_store
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings_with(tmp_path: Path, names: list[str]) -> Path:
    subs = "".join(f'[[subscribers]]\nname = "{n}"\nwebhook_url = "http://127.0.0.1:9/{n}"\n'
                   f'webhook_secret = "{SECRET}"\n' for n in names)
    path = tmp_path / f"c{len(names)}.toml"
    path.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/state.db"\n{subs}')
    return path


def test_config_subscribers_follow_the_file_cli_ones_stay(tmp_path: Path) -> None:
    store = open_store(load_settings(settings_with(tmp_path, ["a", "b"])))
    store.upsert_subscriber("by-hand", subscriber_from_json({"email": ["x@example.org"], "origin": "cli"}))
    store.upsert_subscriber("a", replace(store.get_subscriber("a").config, unsubscribed=("webhook",)))  # type: ignore[union-attr]
    store.close()
    store = open_store(load_settings(settings_with(tmp_path, ["a"])))
    assert sorted(s.name for s in store.list_subscribers()) == ["a", "by-hand"]
    assert store.get_subscriber("a").config.unsubscribed == ("webhook",)  # type: ignore[union-attr]
    assert store.get_subscriber("a").config.webhook_url == "http://127.0.0.1:9/a"  # type: ignore[union-attr]
    store.close()


async def test_email_fan_out_reuses_a_pool_of_connections(tmp_path: Path, smtp_server: SmtpTestServer) -> None:  # noqa: F811
    """Many messages, few connections: up to max_connections sessions, each carrying several."""
    import asyncio
    from datetime import UTC, datetime

    from crdswatch.render import sample_notice
    from crdswatch.service.runtime import ChannelSenders

    config = tmp_path / "c.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "starttls"
username = "crdswatch"
password = "correct horse"
sender = "crdswatch <crds@example.org>"
ca_file = "{smtp_server.pki.ca_file}"
max_connections = 2
""" + "".join(f'[[subscribers]]\nname = "s{i}"\nemail = ["s{i}@example.org"]\n' for i in range(6)))
    settings = load_settings(config)
    store = open_store(settings)
    senders = ChannelSenders(settings, store)
    now = datetime.now(UTC)
    notice = sample_notice(now)
    try:
        async with senders.session():
            await asyncio.gather(*(senders.send(f"email:s{i}@example.org", f"s{i}", notice, f"key{i}", now)
                                   for i in range(6)))
    finally:
        await senders.aclose()
        store.close()
    assert len(smtp_server.messages) == 6
    assert len(smtp_server.sessions_used) == 2
    assert {m.rcpt_tos for m in smtp_server.messages} == {(f"s{i}@example.org",) for i in range(6)}
