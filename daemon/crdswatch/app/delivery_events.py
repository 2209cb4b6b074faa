"""What the outbox drain did to each row, told to the operator: one log event per send, retry and
death, and the dead rows gathered so the daemon sends one admin alert per drain cycle, not one
mail per row (a fan-out to a dead mail host would otherwise mail the admin a thousand times).

`ChannelHealth` keeps, in memory, whether each channel kind of this process can still deliver:
a kind with rows waiting for a retry and no successful send for `[limits] channel_stale_after`
seconds is stale (/healthz 503 and one alert, by service.daemon), long before its rows die.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from crdswatch.redact import redact_error
from crdswatch.store import Delivery

__all__ = ["ChannelHealth", "ChannelState", "DeadRow", "DeliveryEvents", "dead_alert_text"]

log = structlog.get_logger("crdswatch.delivery")

_LISTED = 50  # rows named in one alert; the rest are counted (`crdswatch outbox --status dead` has them)


@dataclass(frozen=True)
class DeadRow:
    delivery_id: int
    subscriber: str
    channel: str
    context: str
    key: str
    attempts: int
    reason: str


@dataclass
class ChannelState:
    """One channel kind as this process has seen it deliver."""

    failing_since: float | None = None  # monotonic: the first failed send since the last success
    last_ok: float | None = None  # wall clock of the last successful send
    last_error: str = ""  # scrubbed (redact_error): webhook and Slack URLs are secrets
    waiting: set[int] = field(default_factory=set)  # rows that failed here and wait for a retry
    alerted: bool = False  # the stale alert of this episode went out

    def unsent_for(self, now: float) -> float:
        """Seconds with rows waiting and no successful send (0: none waiting, or it delivers)."""
        return now - self.failing_since if self.failing_since is not None and self.waiting else 0.0


class ChannelHealth:
    """Per channel kind (email, slack, webhook): rows waiting and no successful send since when.

    A success ends the episode (and is logged when the kind was alerted stale); so does the last
    waiting row dying (its own dead-row alert says so). A kind with no waiting rows is never stale.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.kinds: dict[str, ChannelState] = {}

    def sent(self, kind: str) -> None:
        state = self.kinds.setdefault(kind, ChannelState())
        if state.alerted:
            log.warning("channel recovered", channel=kind, unsent_for=round(state.unsent_for(self.clock())))
        state.failing_since, state.alerted, state.last_ok = None, False, time.time()
        state.waiting.clear()  # its rows are retried on their schedule; a failure starts a new episode

    def failed(self, kind: str, delivery_id: int, reason: str, dead: bool) -> None:
        state = self.kinds.setdefault(kind, ChannelState())
        state.last_error = redact_error(reason)
        if state.failing_since is None:
            state.failing_since = self.clock()
        if not dead:
            state.waiting.add(delivery_id)
            return
        state.waiting.discard(delivery_id)
        if not state.waiting:  # nothing left to deliver on it: not stale (the dead-row alert tells)
            if state.alerted:
                log.warning("channel no longer stale: no rows waiting", channel=kind)
            state.failing_since, state.alerted = None, False

    def stale(self, now: float, bound: float) -> list[tuple[str, float, ChannelState]]:
        """(kind, seconds with rows waiting and no successful send, its state) past `bound`."""
        return [(kind, s.unsent_for(now), s) for kind, s in sorted(self.kinds.items()) if s.unsent_for(now) > bound]

    def reason(self, kind: str, age: float, bound: float) -> str:
        """The /healthz and alert text of a stale kind."""
        s = self.kinds[kind]
        last = "never since start" if s.last_ok is None else f"{time.time() - s.last_ok:.0f} s ago"
        return (f"{kind} channel: {len(s.waiting)} rows waiting and no successful send for {age:.0f} s "
                f"(channel_stale_after = {bound:g} s; last success: {last}); last error: {s.last_error}")

    def status(self, now: float, bound: float) -> dict[str, dict[str, object]]:
        """For /healthz?format=json and /api/status."""
        return {kind: {"stale": s.unsent_for(now) > bound, "rows_waiting": len(s.waiting),
                       "unsent_for_seconds": round(s.unsent_for(now), 1),
                       "last_success": (datetime.fromtimestamp(s.last_ok, UTC).isoformat()
                                        if s.last_ok is not None else None),
                       "last_error": s.last_error, "alerted": s.alerted}
                for kind, s in sorted(self.kinds.items())}


class DeliveryEvents:
    """The drain's outcome hook (app.drain calls `outcome` once per row as its outcome is recorded)."""

    def __init__(self, channels: ChannelHealth | None = None) -> None:
        self._dead: list[DeadRow] = []
        self.channels = channels if channels is not None else ChannelHealth()

    def outcome(self, row: Delivery, error: BaseException | None, status: str | None) -> None:
        """`status`: the row's new status as the store recorded it ("sent", "pending", "dead"; None:
        the lease was lost to another worker, which now owns the row and will tell its own story)."""
        kind = row.channel.split(":", 1)[0]
        if error is None:
            self.channels.sent(kind)
        elif status in ("pending", "dead"):
            self.channels.failed(kind, row.id, _reason(error), status == "dead")
        fields = {"delivery_id": row.id, "subscriber": row.subscriber, "channel": row.channel,
                  "context": row.context, "key": row.idempotency_key, "attempt": row.attempts + 1}
        if error is None:
            log.info("delivery sent", **fields)
        elif status == "dead":
            reason = _reason(error)
            log.error("delivery dead", reason=reason, **fields)
            self._dead.append(DeadRow(row.id, row.subscriber, row.channel, row.context, row.idempotency_key,
                                      row.attempts + 1, reason))
        elif status == "pending":
            log.warning("delivery retry", reason=_reason(error), max_attempts=row.max_attempts, **fields)
        else:
            log.warning("delivery outcome not recorded: lease lost", reason=_reason(error), **fields)

    def deferred(self, row: Delivery, seconds: float) -> None:
        log.info("delivery deferred: channel paused", delivery_id=row.id, subscriber=row.subscriber,
                 channel=row.channel, key=row.idempotency_key, seconds=round(seconds))

    def lease_lost(self, row: Delivery) -> None:
        log.warning("delivery not attempted: lease lost to another worker", delivery_id=row.id,
                    subscriber=row.subscriber, channel=row.channel, key=row.idempotency_key)

    def take_dead(self) -> list[DeadRow]:
        """The rows that died since the last call (the daemon calls this once per drain cycle)."""
        dead, self._dead = self._dead, []
        return dead


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def dead_alert_text(rows: Sequence[DeadRow]) -> str:
    """The body of the admin alert for rows that died in one drain cycle."""
    lines = [f"{len(rows)} outbox deliver{'y' if len(rows) == 1 else 'ies'} dead (no further attempts):", ""]
    for r in rows[:_LISTED]:
        lines.append(f"  #{r.delivery_id}  {r.subscriber}  {r.channel}  {r.context}  after {r.attempts} "
                     f"attempt{'s' if r.attempts != 1 else ''}: {r.reason}")
    if len(rows) > _LISTED:
        lines.append(f"  ... and {len(rows) - _LISTED} more")
    lines += ["", "See them with `crdswatch outbox --status dead`; once the cause is fixed, put one back "
              + "with `crdswatch outbox --requeue ID`."]
    return "\n".join(lines)
