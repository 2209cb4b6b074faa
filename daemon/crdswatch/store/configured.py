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
from typing import TYPE_CHECKING

from crdswatch.config import Settings, SubscriberSettings
from crdswatch.model import SubscriberConfig
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.notices.subscriptions import unsubscribe, unsubscribed
from crdswatch.store.records import Subscriber, utc_now

if TYPE_CHECKING:
    from crdswatch.store.core import Store

__all__ = ["configured_subscribers", "effective_subscribers", "subscriber_config", "sync_configured"]


def subscriber_config(sub: SubscriberSettings, origin: str = "config") -> SubscriberConfig:
    """What the store keeps of a [[subscribers]] table (or `subscribers add`): secrets revealed
    (the database is private)."""
    data = sub.model_dump(mode="python")
    for key, value in list(data.items()):
        if hasattr(value, "get_secret_value"):
            data[key] = value.get_secret_value()
    data.pop("name", None)
    data["origin"] = origin
    return subscriber_from_json(data)


def configured_subscribers(settings: Settings) -> dict[str, SubscriberConfig]:
    """Name → stored form of every [[subscribers]] table."""
    return {sub.name: subscriber_config(sub) for sub in settings.subscribers}


def _merged(config: SubscriberConfig, existing: Subscriber | None) -> SubscriberConfig:
    """The configured form, keeping the channels the subscriber unsubscribed from (links stay honoured)."""
    return unsubscribe(config, unsubscribed(existing.config)) if existing is not None else config


def _stale(configured: Mapping[str, SubscriberConfig], sub: Subscriber) -> bool:
    return sub.config.origin == "config" and sub.name not in configured


def effective_subscribers(configured: Mapping[str, SubscriberConfig], stored: Iterable[Subscriber]) -> list[Subscriber]:
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


def sync_configured(store: Store, configured: Mapping[str, SubscriberConfig]) -> None:
    """Write the configured subscribers and drop the ones the file no longer names."""
    for name, data in configured.items():
        store.upsert_subscriber(name, _merged(data, store.get_subscriber(name)))
    for stale in store.list_subscribers():
        if _stale(configured, stale):
            store.remove_subscriber(stale.name)
