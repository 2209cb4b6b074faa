"""Wiring from settings: the config file is authoritative for the subscribers it names."""

from __future__ import annotations

from pathlib import Path

from crdswatch.config import load_settings
from crdswatch.runtime import open_store

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def settings_with(tmp_path: Path, names: list[str]) -> Path:
    subs = "".join(f'[[subscribers]]\nname = "{n}"\nwebhook_url = "http://127.0.0.1:9/{n}"\n'
                   f'webhook_secret = "{SECRET}"\n' for n in names)
    path = tmp_path / f"c{len(names)}.toml"
    path.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/state.db"\n{subs}')
    return path


def test_config_subscribers_follow_the_file_cli_ones_stay(tmp_path: Path) -> None:
    store = open_store(load_settings(settings_with(tmp_path, ["a", "b"])))
    store.upsert_subscriber("by-hand", {"email": ["x@example.org"], "origin": "cli"})
    store.upsert_subscriber("a", {**store.get_subscriber("a").config, "unsubscribed": ["webhook"]})  # type: ignore[union-attr]
    store.close()
    store = open_store(load_settings(settings_with(tmp_path, ["a"])))
    assert sorted(s.name for s in store.list_subscribers()) == ["a", "by-hand"]
    assert store.get_subscriber("a").config["unsubscribed"] == ["webhook"]  # type: ignore[union-attr]
    assert store.get_subscriber("a").config["webhook_url"] == "http://127.0.0.1:9/a"  # type: ignore[union-attr]
    store.close()
