"""Webhook JSON for a notice: every structured fact, under a versioned schema id (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crdswatch.model import ActivationDiff, Notice
from crdswatch.notices.summary import summarise
from crdswatch.notices.why import section_why
from crdswatch.render.clean import clean_data
from crdswatch.render.subject import subject
from crdswatch.render.view import TEST_BANNER

__all__ = ["SCHEMA_ID", "SCHEMA_VERSION", "webhook_payload"]

SCHEMA_VERSION = 1
SCHEMA_ID = f"https://crdswatch.invalid/schema/notice/v{SCHEMA_VERSION}"  # templates/notice.schema.json


def _jsonable(value: Any) -> Any:
    # Header values arrive as tuples and nested tuples (parkey); JSON has lists only.
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _activation(diff: ActivationDiff, notice: Notice) -> dict[str, Any]:
    summary = summarise(diff)
    public = (notice.public_url or "").rstrip("/")
    return {
        "observatory": diff.observatory,
        "server_url": diff.server_url,
        "state": diff.state,
        "context": diff.activation.context,
        "previous": diff.previous,
        "date": diff.activation.date,
        "description": diff.activation.description,
        "announcements": list(diff.announcements),
        "revert": diff.revert,
        "new_files": list(summary.new_files),
        "rules_widened": summary.count("widened"),
        "rules_narrowed": summary.count("narrowed"),
        "changes": [c.to_json() for c in diff.changes],
        "files": [e.to_json() for e in summary.events],
        "sections": [{**{k: v for k, v in s.to_json().items() if k != "events"},
                      "why": section_why(s, notice.interest, notice.dataset_hits, diff.observatory)}
                     for s in summary.sections],
        "notes": [n.to_json() for n in summary.notes],
        "archive_url": f"{public}/activations/{diff.activation.context}" if public else None,
    }


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The whole notice as JSON-able data; consumers check `schema_version` before reading."""
    payload = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "subject": subject(notice),
        "subscriber": notice.subscriber,
        "reason": notice.reason,
        "digest": notice.digest,
        "unsubscribe_url": notice.unsubscribe_url,
        "activations": [_activation(d, notice) for d in notice.activations],
        "test": notice.test,
        "banner": TEST_BANNER if notice.test else None,
    }
    result: dict[str, Any] = clean_data(_jsonable(payload))  # consumers may show any string as is
    return result
