"""Which activations are still to process, and which files a diff brings in (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crdswatch.contexts.history import parse_history_date
from crdswatch.model import Activation, DiffResult

__all__ = ["Pending", "new_reference_files", "pending_activations"]


@dataclass(frozen=True)
class Pending:
    """An activation still to process, and the context it replaced on the server."""

    activation: Activation
    previous: str | None


def pending_activations(
    history: Sequence[Activation], seen_context: str, seen_date: str
) -> list[Pending]:
    """Activations after the one last seen, oldest first, each paired with its predecessor.

    The predecessor is the context activated just before it on the server, not the one we saw
    last: after downtime every missed activation is reported against its real predecessor.
    """
    start = None
    for i, act in enumerate(history):
        if act.context == seen_context and act.date == seen_date:
            start = i + 1
    if start is None:  # our entry left the history (or the date format changed): go by date
        seen = parse_history_date(seen_date)
        start = next((i for i, a in enumerate(history) if parse_history_date(a.date) > seen), len(history))
    out = []
    for i in range(start, len(history)):
        previous = history[i - 1].context if i > 0 else seen_context
        out.append(Pending(history[i], previous))
    return out


def new_reference_files(result: DiffResult) -> list[str]:
    """Reference files a diff brings in (added or replacing), for the catalog lookup."""
    names = {c.new_file for c in result.changes if c.level == "reference" and c.new_file}
    return sorted(n for n in names if not n.upper().endswith(("N/A", "OMIT")) and "." in n)
