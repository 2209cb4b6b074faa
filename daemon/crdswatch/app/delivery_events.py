"""What the outbox drain did to each row, told to the operator: one log event per send, retry and
death, and the dead rows gathered so the daemon sends one admin alert per drain cycle, not one
mail per row (a fan-out to a dead mail host would otherwise mail the admin a thousand times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from crdswatch.store import Delivery

__all__ = ["DeadRow", "DeliveryEvents", "dead_alert_text"]

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


class DeliveryEvents:
    """The drain's outcome hook (app.drain calls `outcome` once per row as its outcome is recorded)."""

    def __init__(self) -> None:
        self._dead: list[DeadRow] = []

    def outcome(self, row: Delivery, error: BaseException | None, status: str | None) -> None:
        """`status`: the row's new status as the store recorded it ("sent", "pending", "dead"; None:
        the lease was lost to another worker, which now owns the row and will tell its own story)."""
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
