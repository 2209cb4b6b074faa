"""What the web layer needs from the running daemon, and nothing more (a Protocol, so tests and
the daemon can both provide it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from crdswatch.app.poll import Watch
from crdswatch.config import Settings
from crdswatch.store import Store

__all__ = ["Site"]


class Site(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...  # looked up per request: the daemon may reopen it

    @property
    def watches(self) -> Sequence[Watch]: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    def health_check(self) -> tuple[bool, str]:
        """(healthy, why): what /healthz answers; computed by the daemon, not by the web layer."""
        ...

    async def metrics_page(self) -> bytes:
        """The Prometheus exposition text, gauges refreshed."""
        ...

    def bounds_status(self) -> dict[str, Any]:
        """Bounds the daemon's listeners tripped since start: {"inbound": {"trips": {reason: n},
        "last_trip": {"reason", "detail", "at"} | None, "listening": bool}, "channels": {kind:
        {"stale", "rows_waiting", "unsent_for_seconds", "last_success", "last_error", "alerted"}}}."""
        ...

    def source_status(self, key: str) -> dict[str, Any]:
        """The daemon's in-memory facts about one watched source (last poll, failures)."""
        ...
