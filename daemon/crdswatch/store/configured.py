"""The subscribers a config file defines, merged with the stored ones by one rule.

The config file is authoritative for the subscribers it names, except for channels someone
unsubscribed from through a link (those stay unsubscribed); a subscriber it no longer names is
gone if it came from the file, kept if it was added with `crdswatch subscribers add`.
`sync_configured` writes that merge (daemon start, commands that change state);
`effective_subscribers` computes the same result in memory for read-only commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from crdswatch.config import Settings, SubscriberSettings
from crdswatch.notices.subscriptions import unsubscribe, unsubscribed
from crdswatch.store.records import Subscriber, utc_now

if TYPE_CHECKING:
    from crdswatch.store.core import Store

__all__ = ["configured_subscribers", "effective_subscribers", "subscriber_json", "sync_configured"]


def subscriber_json(sub: SubscriberSettings) -> dict[str, Any]:
    """The stored form of a configured subscriber: secrets revealed (the database is private)."""
    data = sub.model_dump(mode="python")
    for key, value in list(data.items()):
        if hasattr(value, "get_secret_value"):
            data[key] = value.get_secret_value()
    data.pop("name", None)
    data["origin"] = "config"
    return data


def configured_subscribers(settings: Settings) -> dict[str, dict[str, Any]]:
    """Name → stored form of every [[subscribers]] table."""
    return {sub.name: subscriber_json(sub) for sub in settings.subscribers}


def _merged(data: Mapping[str, Any], existing: Subscriber | None) -> dict[str, Any]:
    """The configured form, keeping the channels the subscriber unsubscribed from (links stay honoured)."""
    return unsubscribe(data, unsubscribed(existing.config)) if existing is not None else dict(data)


def _stale(configured: Mapping[str, Any], sub: Subscriber) -> bool:
    return sub.config.get("origin") == "config" and sub.name not in configured


def effective_subscribers(configured: Mapping[str, Mapping[str, Any]], stored: Iterable[Subscriber]) -> list[Subscriber]:
    """What the store holds after `sync_configured(configured)`, by name, without writing it."""
    now = utc_now()
    by_name = {sub.name: sub for sub in stored}
    out = {name: sub for name, sub in by_name.items() if not _stale(configured, sub)}
    for name, data in configured.items():
        existing = by_name.get(name)
        config = _merged(data, existing)
        out[name] = (replace(existing, config=config) if existing is not None
                     else Subscriber(name=name, config=config, created_at=now, updated_at=now))
    return [out[name] for name in sorted(out)]


def sync_configured(store: Store, configured: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the configured subscribers and drop the ones the file no longer names."""
    for name, data in configured.items():
        store.upsert_subscriber(name, _merged(data, store.get_subscriber(name)))
    for stale in store.list_subscribers():
        if _stale(configured, stale):
            store.remove_subscriber(stale.name)
