"""Program subscriptions in the daemon: ask the server for a switch's affected datasets until it
has computed them, then queue "program 1234: 37 datasets get new references" for its followers.

A lookup is written with its activation (the poll decides whether anyone listens), so it waits in
the database, not in memory: a restart resumes the backoff where it was. Each lookup is one
request; the job runs beside the polls and the drain and holds neither (a server that takes
hours to compute a switch delays nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from crdswatch.app.upstream import bridge_payload
from crdswatch.errors import RpcError, ServerError
from crdswatch.limits import Limits
from crdswatch.model import ActivationDiff, SourceKey
from crdswatch.notices.programs import (
    affected_from_result,
    affected_notice,
    is_not_ready,
    not_computed_notice,
    program_followers,
)
from crdswatch.notices.subscriptions import Subscription, subscription_from_config
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import NewDelivery, Store
from crdswatch.store.affected import AffectedLookup

__all__ = ["AffectedReport", "backoff_delay", "resolve_affected", "wants_affected"]

log = structlog.get_logger("crdswatch.programs")


@dataclass
class AffectedReport:
    done: list[str] = field(default_factory=list)  # contexts whose answer came (notices queued)
    waiting: list[str] = field(default_factory=list)  # not computed yet: asked again later
    gave_up: list[str] = field(default_factory=list)
    queued: int = 0


def wants_affected(diff: ActivationDiff, subscriptions: Iterable[Subscription]) -> bool:
    """Whether the poll should record a lookup for this activation: someone follows programs."""
    return diff.previous is not None and bool(program_followers(subscriptions, diff.observatory, diff.state))


def backoff_delay(limits: Limits, tries: int) -> float:
    """Seconds to wait after `tries` failed tries (1, 2, ...): doubling from affected_backoff."""
    return float(min(limits.affected_backoff_max, limits.affected_backoff * 2 ** max(0, tries - 1)))


def _waited(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


async def resolve_affected(
    store: Store, sources: Mapping[str, CrdsSource], now: datetime, limits: Limits, *,
    public_url: str | None = None, batch: int = 20,
) -> AffectedReport:
    """Try every due lookup once (at most `batch`); each ends done, waiting or given up."""
    report = AffectedReport()
    due = await store.aio.run("due_affected", store.due_affected, now, batch)
    if not due:
        return report
    stored = await store.aio.list_subscribers()
    subscriptions = [subscription_from_config(s.name, s.config) for s in stored]
    for lookup in due:
        await _one(store, sources, lookup, subscriptions, now, limits, public_url, report)
    return report


async def _one(
    store: Store, sources: Mapping[str, CrdsSource], lookup: AffectedLookup, subscriptions: list[Subscription],
    now: datetime, limits: Limits, public_url: str | None, report: AffectedReport,
) -> None:
    key = SourceKey.parse(lookup.source_key)
    server_url, observatory, state = key.server_url, key.observatory, key.state
    followers = program_followers(subscriptions, observatory, state)
    src = sources.get(lookup.source_key)
    if src is None or not followers:  # the source is no longer watched, or nobody listens now
        await store.aio.run("finish_affected", store.finish_affected, lookup, "done", None,
                            "nobody to tell" if followers else "source not watched", [], now)
        return
    try:
        result = await src.client.get_affected_datasets(observatory, lookup.previous_context, lookup.context)
        affected = affected_from_result(result, lookup.previous_context, lookup.context)
    except RpcError as exc:
        error = exc.server_message or str(exc)
        kind = "not computed yet" if is_not_ready(error) else "server error"
    except (ServerError, ValueError) as exc:  # unreachable, or an answer we cannot read: try again later
        error, kind = str(exc), "failed"
    else:
        items: list[NewDelivery] = []
        for sub in followers:
            notice = affected_notice(sub, affected, observatory=observatory, server_url=server_url,
                                     shown=limits.affected_ids_shown, public_url=public_url)
            if notice is not None:
                items += [NewDelivery(sub.name, channel, bridge_payload(notice)) for channel in sub.channels]
        queued = await store.aio.run("finish_affected", store.finish_affected, lookup, "done", len(affected.ids),
                                     None, items, now)
        if queued is not None:
            report.done.append(lookup.context)
            report.queued += queued
            log.info("affected datasets", context=lookup.context, affected=len(affected.ids), queued=queued,
                     tries=lookup.attempts + 1)
        return
    tries = lookup.attempts + 1
    if tries < limits.affected_attempts:
        next_at = now + timedelta(seconds=backoff_delay(limits, tries))
        if await store.aio.run("retry_affected", store.retry_affected, lookup, next_at, error, now):
            report.waiting.append(lookup.context)
            log.info("affected datasets not available", context=lookup.context, outcome=kind, tries=tries,
                     next_try=next_at.isoformat(), error=error[:300])
        return
    waited = _waited((now - lookup.created_at).total_seconds())
    items = []
    for sub in followers:
        notice = not_computed_notice(sub, observatory=observatory, server_url=server_url,
                                     old_context=lookup.previous_context, new_context=lookup.context,
                                     attempts=tries, waited=waited, last_error=error, public_url=public_url)
        items += [NewDelivery(sub.name, channel, bridge_payload(notice)) for channel in sub.channels]
    queued = await store.aio.run("finish_affected", store.finish_affected, lookup, "gave_up", None, error, items, now)
    if queued is not None:
        report.gave_up.append(lookup.context)
        report.queued += queued
        log.warning("affected datasets never computed", context=lookup.context, tries=tries, waited=waited,
                    error=error[:300])
