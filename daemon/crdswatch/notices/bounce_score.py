"""Bounce scoring with Mailman 3's default rules (pure: the caller passes the time).

At most one point per member per day; a score whose last bounce is older than `stale_after` starts
again at one; at `threshold` delivery is disabled; then `warnings` notices go out `interval` apart,
the first at once; after the last one and one more interval, the member is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["BounceRules", "BounceState", "Outcome", "due_action", "register_bounce", "warning_sent"]

Outcome = Literal["ignored", "counted", "disabled"]


@dataclass(frozen=True)
class BounceRules:
    """Mailman 3 defaults: bounce_score_threshold 5, bounce_info_stale_after 7 days,
    bounce_you_are_disabled_warnings 3, bounce_you_are_disabled_warnings_interval 7 days."""

    threshold: int = 5
    stale_after: timedelta = timedelta(days=7)
    warnings: int = 3
    interval: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class BounceState:
    score: int = 0
    last_bounce_at: datetime | None = None
    disabled_at: datetime | None = None
    warnings_sent: int = 0
    last_warning_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


def register_bounce(state: BounceState, now: datetime, rules: BounceRules = BounceRules()) -> tuple[BounceState, Outcome]:
    """The member's state after one more (permanent) bounce at `now`, and what it led to."""
    if not state.enabled:
        return state, "ignored"  # already disabled: the warnings are running
    last = state.last_bounce_at
    if last is not None and last.date() == now.date():
        return state, "ignored"  # one point per day, however many bounces came
    if last is None or now - last > rules.stale_after:
        score = 1
    else:
        score = state.score + 1
    if score >= rules.threshold:
        return replace(state, score=score, last_bounce_at=now, disabled_at=now, warnings_sent=0,
                       last_warning_at=None), "disabled"
    return replace(state, score=score, last_bounce_at=now), "counted"


def due_action(state: BounceState, now: datetime, rules: BounceRules = BounceRules()) -> Literal["warn", "remove"] | None:
    """What the periodic check must do for a disabled member now: warn, remove, or nothing."""
    if state.enabled:
        return None
    if state.last_warning_at is not None and now - state.last_warning_at < rules.interval:
        return None
    return "warn" if state.warnings_sent < rules.warnings else "remove"


def warning_sent(state: BounceState, now: datetime) -> BounceState:
    return replace(state, warnings_sent=state.warnings_sent + 1, last_warning_at=now)
