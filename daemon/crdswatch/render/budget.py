"""Size budgets per channel, and fitting a notice into one (pure).

A channel declares its budget (`EMAIL_BUDGET`, `SLACK_BUDGET`, `WEBHOOK_BUDGET`; the `Channel`
protocol adopts them). A notice over budget is rendered again with less detail, step by step:
first fewer rows per table, then (digests) fewer activations in full. What is left out is always
said, with a link to the archive page that has it all; the overview of a digest and the first
rows of every section shown stay. Nothing is cut silently, and nothing is cut mid-line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["EMAIL_BUDGET", "FULL", "SLACK_BUDGET", "WEBHOOK_BUDGET", "Budget", "Detail", "details", "fit"]

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """How much one notice may take on a channel.

    `max_bytes` bounds the whole notice as sent (the e-mail message with both parts, encoded;
    all Slack payloads as JSON); `max_messages` bounds how many posts one notice may become.
    """

    channel: str
    max_bytes: int | None = None
    max_messages: int | None = None

    def words(self) -> str:
        """`100 KB` / `3 messages`: the budget as the notice states it when it trims."""
        parts = []
        if self.max_bytes is not None:
            parts.append(f"{self.max_bytes // 1000} KB")
        if self.max_messages is not None:
            parts.append(f"{self.max_messages} messages")
        return " and ".join(parts) or "no limit"


# Gmail clips a message whose HTML passes ~102 KB, hiding the rest behind a link most people
# never follow; 100 KB for the whole message (text and HTML parts, as encoded) stays clear of it.
EMAIL_BUDGET = Budget("email", max_bytes=100_000)
# Slack: 50 blocks and 3,000 characters per section are hard limits (enforced when splitting);
# beyond a few posts a notice floods the channel, so a long one keeps the first rows of each
# section and links to the archive page.
SLACK_BUDGET = Budget("slack", max_bytes=48_000, max_messages=3)
# Webhooks carry structured data for programs: every fact, always (receivers may bound bodies
# themselves; the largest real notice is well under a few MB).
WEBHOOK_BUDGET = Budget("webhook")


@dataclass(frozen=True)
class Detail:
    """How much of a notice to show: rows per table, how many activations in full, evidence.

    `rows=None` shows every row; `activations=None` shows every activation in full. Activations
    beyond `activations` appear in the digest's overview only. Without `evidence` the crds diff
    line behind each note is left to the archive page.
    """

    rows: int | None = None
    activations: int | None = None
    budget: Budget | None = None  # the budget being met, named when something is left out
    evidence: bool = True


FULL = Detail()
# Rows per table, most first: halving keeps as many rows as fit (a 100 KB e-mail holds ~100).
_ROW_STEPS = ((96, True), (48, True), (24, True), (12, True), (5, False), (2, False))
_HOPELESS = 3  # a digest this many times over budget goes straight to folding activations
_FOLDED_ROWS = 2  # rows per table of the activations a folded digest still shows in full


def details(budget: Budget, activations: int) -> tuple[Detail, ...]:
    """The levels tried before folding activations: all, then fewer rows (and no evidence)."""
    return _details(budget, activations <= 1)


@functools.lru_cache(maxsize=64)  # the same few budgets, notice after notice: made once
def _details(budget: Budget, single: bool) -> tuple[Detail, ...]:
    levels = [Detail(budget=budget), *(Detail(rows, None, budget, evidence) for rows, evidence in _ROW_STEPS)]
    if single:
        levels.append(Detail(0, None, budget, False))
    return tuple(levels)


def _fits(budget: Budget, nbytes: int, messages: int) -> bool:
    return (budget.max_bytes is None or nbytes <= budget.max_bytes) and (
        budget.max_messages is None or messages <= budget.max_messages)


def fit(render: Callable[[Detail], T], size: Callable[[T], tuple[int, int]], budget: Budget, activations: int) -> T:
    """The first rendering, from most to least detailed, whose (bytes, messages) fit `budget`.

    A digest still over budget with few rows shows fewer activations in full, the number
    estimated from the last size (so a 150-activation digest takes a handful of renderings).
    The least detailed rendering is returned even if it does not fit (an overview alone can
    exceed a tiny budget); it still says what it leaves out.
    """
    result: T | None = None
    nbytes = messages = 0
    for detail in details(budget, activations):
        result = render(detail)
        nbytes, messages = size(result)
        if _fits(budget, nbytes, messages):
            return result
        if activations > 1 and budget.max_bytes and nbytes > _HOPELESS * budget.max_bytes:
            break  # fewer rows will not do: fold activations straight away
    shown = activations if activations > 1 else 0
    if shown:
        result = render(Detail(_FOLDED_ROWS, shown, budget, False))
        nbytes, messages = size(result)
        if _fits(budget, nbytes, messages):
            return result
    while shown > 0:
        ratio = min(budget.max_bytes / nbytes if budget.max_bytes else 1.0,
                    budget.max_messages / messages if budget.max_messages else 1.0)
        shown = max(0, min(shown - 1, int(shown * ratio * 0.9)))
        result = render(Detail(_FOLDED_ROWS, shown, budget, False))
        nbytes, messages = size(result)
        if _fits(budget, nbytes, messages):
            return result
    assert result is not None
    return result
