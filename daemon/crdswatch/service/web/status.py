"""The status snapshot shown at `/`, served as JSON at `/api/status` and printed by
`crdswatch status`: every watched source, the outbox, the lists. Blocking store reads: call it
in a worker thread."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from crdswatch.model import SourceKey
from crdswatch.service.web.site import Site

__all__ = ["status_snapshot"]


def status_snapshot(site: Site, now: datetime) -> dict[str, Any]:
    healthy, why = site.health_check()
    sources = []
    for w in site.watches:
        key = SourceKey.parse(w.key)  # keys hold no credentials
        server, observatory, state = key.server_url, key.observatory, key.state
        cursor = site.store.get_cursor(w.key)
        facts = site.source_status(w.key)
        last_ok: datetime | None = facts.get("last_ok")
        sources.append({
            "key": w.key, "server": server, "observatory": observatory, "state": state,
            "context": cursor.context if cursor else None,
            "activated": cursor.activation_date if cursor else None,
            "last_successful_poll": last_ok.isoformat() if last_ok else None,
            # the age by the wall clock the poll time was taken from (the daemon's clock may be a test's)
            "last_successful_poll_age_seconds": round(time.time() - last_ok.timestamp(), 1) if last_ok else None,
            "consecutive_failures": facts.get("consecutive_failures", 0),
            "poll_interval_seconds": w.poll_interval,
        })
    lists = getattr(site, "lists", None)
    return {
        "generated_at": now.isoformat(),
        "healthy": healthy,
        "health": why,
        "sources": sources,
        "outbox": site.store.counts(),
        "bounds": site.bounds_status(),
        "lists": [{"name": s["name"], "description": s["description"], "members": s["members"],
                   "disabled": s["disabled"]} for s in (lists.summaries() if lists is not None else [])],
    }
