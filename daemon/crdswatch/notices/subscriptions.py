"""A subscriber as the pipeline sees it: channels, filters, digest schedule, and why it gets notices (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from crdswatch.contexts.keywords import keyword
from crdswatch.model import Interest, SubscriberConfig

__all__ = [
    "Filters", "Subscription", "channel_targets", "next_digest_slot", "subscription_from_config", "unsubscribe",
    "unsubscribed",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Filters:
    """A subscriber's interests; an empty field means "everything".

    Names compare case-insensitively. `parameters` maps a FITS keyword (EXP_TYPE) or data-model
    path (META.EXPOSURE.TYPE) to the values of interest. Catalog filters (change levels,
    pedigree kinds) let through files whose catalog record is unknown: missing a notice is worse
    than one too many.
    """

    observatories: frozenset[str] = frozenset()
    instruments: frozenset[str] = frozenset()
    reftypes: frozenset[str] = frozenset()
    change_levels: frozenset[str] = frozenset()
    pedigrees: frozenset[str] = frozenset()
    parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def interest(self) -> Interest:
        """The same filters as plain data a notice carries (and the outbox stores)."""
        return Interest(
            tuple(sorted(self.observatories)), tuple(sorted(self.instruments)), tuple(sorted(self.reftypes)),
            tuple(sorted(self.parameters.items())), tuple(sorted(self.change_levels)),
            tuple(sorted(self.pedigrees)),
        )

    @classmethod
    def of(cls, **values: Iterable[str] | Mapping[str, Iterable[str]] | None) -> Filters:
        def names(key: str) -> frozenset[str]:
            raw = values.get(key) or ()
            return frozenset(str(v).strip().lower() for v in raw)

        params = values.get("parameters") or {}
        assert isinstance(params, Mapping)
        return cls(
            names("observatories"), names("instruments"), names("reftypes"), names("change_levels"),
            names("pedigrees"),
            {keyword(str(k)): tuple(str(v) for v in vs) for k, vs in params.items()},
        )


@dataclass(frozen=True)
class Subscription:
    name: str
    channels: tuple[str, ...]  # "email:<address>", "slack", "webhook": one outbox row each
    filters: Filters
    states: frozenset[str] = frozenset({"latest"})
    digest: str = "immediate"
    digest_hour: int = 8
    digest_weekday: str = "mon"
    timezone: str = "UTC"
    programs: frozenset[str] = frozenset()  # MAST program notices ("1234", no leading zeros)
    # Dataset subscriptions: parameter tables (or {"fits": path}), as in the config's `datasets`.
    datasets: tuple[Mapping[str, Any], ...] = ()

    @property
    def reason(self) -> str:
        """"Why you got this", in the subscriber's own terms."""
        f = self.filters
        observatories = "/".join(sorted(o.upper() for o in f.observatories)) or "all observatories"
        instruments = ", ".join(sorted(i.upper() for i in f.instruments)) or "all instruments"
        reftypes = ", ".join(sorted(r.upper() for r in f.reftypes)) or "all reference types"
        parts = [f"{observatories} {instruments} ({reftypes})"]
        if f.parameters:
            parts.append(
                "modes " + "; ".join(f"{k} in {'|'.join(v)}" for k, v in sorted(f.parameters.items()))
            )
        if f.change_levels:
            parts.append("change levels " + ", ".join(sorted(f.change_levels)).upper())
        if f.pedigrees:
            parts.append("pedigrees " + ", ".join(sorted(f.pedigrees)).upper())
        if self.states != {"latest"}:
            parts.append("contexts " + ", ".join(sorted(self.states)))
        return f"subscriber {self.name!r} follows " + ", ".join(parts)


def channel_targets(config: SubscriberConfig) -> tuple[str, ...]:
    """The outbox channels of a stored subscriber: one per e-mail address, Slack, webhook.

    Channels the subscriber unsubscribed from (through a link) are left out: nothing is queued;
    so is everything of a list member whose delivery bounces disabled.
    """
    if config.delivery_disabled:
        return ()
    left = unsubscribed(config)
    return tuple(t for t in _all_targets(config) if t not in left)


def _all_targets(config: SubscriberConfig) -> list[str]:
    targets = [f"email:{address}" for address in config.email]
    if config.slack_webhook:
        targets.append("slack")
    if config.webhook_url:
        targets.append("webhook")
    return targets


# The one owner of "unsubscribed": the stored subscriber's `unsubscribed` names the channels
# (outbox targets: "email:ADDRESS", "slack", "webhook") it left through a link or the manage page.
# Nothing is queued for them (channel_targets), nothing already queued is sent (service.runtime),
# and a configuration reload keeps them (store.configured).


def unsubscribed(config: SubscriberConfig) -> frozenset[str]:
    """The channels this stored subscriber unsubscribed from."""
    return frozenset(config.unsubscribed)


def unsubscribe(config: SubscriberConfig, channels: Iterable[str] | None = None) -> SubscriberConfig:
    """`config` unsubscribed from `channels` as well (None: from every channel it has)."""
    left = unsubscribed(config) | set(_all_targets(config) if channels is None else channels)
    return replace(config, unsubscribed=tuple(sorted(left))) if left else config


def subscription_from_config(name: str, config: SubscriberConfig) -> Subscription:
    """What the pipeline needs of a stored subscriber (the config file's [[subscribers]] keys).

    Subscribers with the same filters share one Filters (and the same state and program sets):
    a list's 10,000 members are a handful of objects instead of 70,000 frozensets that every
    full garbage collection while queueing had to walk."""
    params = tuple((str(k), tuple(map(str, vs))) for k, vs in config.parameters.items())
    return Subscription(
        name=name,
        channels=channel_targets(config),
        filters=_filters(tuple(config.observatories), tuple(config.instruments), tuple(config.reftypes),
                         tuple(config.change_levels), tuple(config.pedigrees), params),
        states=_set(tuple(config.states or ("latest",))),
        digest=config.digest,
        digest_hour=config.digest_hour,
        digest_weekday=config.digest_weekday,
        timezone=config.timezone,
        programs=_set(tuple(p.lstrip("0") or "0" for p in config.programs)),
        datasets=tuple(dict(d) for d in config.datasets),
    )


@lru_cache(maxsize=4096)
def _filters(observatories: tuple[str, ...], instruments: tuple[str, ...], reftypes: tuple[str, ...],
             change_levels: tuple[str, ...], pedigrees: tuple[str, ...],
             parameters: tuple[tuple[str, tuple[str, ...]], ...]) -> Filters:
    return Filters.of(observatories=observatories, instruments=instruments, reftypes=reftypes,
                      change_levels=change_levels, pedigrees=pedigrees, parameters=dict(parameters))


@lru_cache(maxsize=4096)
def _set(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(values)


def next_digest_slot(sub: Subscription, after: datetime) -> datetime | None:
    """When the digest holding something queued at `after` goes out (UTC); None if immediate."""
    if sub.digest == "immediate":
        return None
    zone = ZoneInfo(sub.timezone)
    local = after.astimezone(zone)
    slot = local.replace(hour=sub.digest_hour, minute=0, second=0, microsecond=0)
    if sub.digest == "daily":
        if slot <= local:
            slot += timedelta(days=1)
    else:
        ahead = (WEEKDAYS.index(sub.digest_weekday) - local.weekday()) % 7
        slot += timedelta(days=ahead)
        if slot <= local:
            slot += timedelta(days=7)
    # Re-attach the zone so a DST change between now and the slot keeps the local hour.
    slot = slot.replace(tzinfo=None).replace(tzinfo=zone)
    return slot.astimezone(after.tzinfo or zone)
