"""MAST program-subscription mails: JSON attachments of archive events -> typed events (pure).

MAST tells a program's subscribers when its data was archived, reprocessed or became public.
Each mail carries a JSON attachment listing events (`event_id`, `mission`, `fileset`,
`filename`, `program`, `event_type`, `archived_date`). crdswatch dedupes them by `event_id`
and tells the subscribers who follow that program, naming the likely CRDS cause.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal

from crdswatch.errors import MastFormatError

__all__ = [
    "EVENT_TYPES",
    "MastEvent",
    "MastFormatError",
    "ProgramSummary",
    "likely_cause",
    "parse_mast_mail",
    "summarise_events",
]

EventType = Literal["New", "First", "Reprocessed", "Public"]
EVENT_TYPES: tuple[str, ...] = ("New", "First", "Reprocessed", "Public")
_VERBS = {"New": "archived", "First": "archived for the first time", "Reprocessed": "reprocessed",
          "Public": "made public"}


@dataclass(frozen=True)
class MastEvent:
    event_id: str
    mission: str
    program: str
    event_type: EventType
    archived_date: str  # ISO-8601 UTC
    fileset: str = ""
    filename: str = ""


@dataclass(frozen=True)
class ProgramSummary:
    """"program 1234: 37 files reprocessed on 2024-03-02" for one (program, type, day)."""

    mission: str
    program: str
    event_type: EventType
    day: str
    count: int
    filesets: tuple[str, ...]
    last_archived: str

    def headline(self) -> str:
        files = "file" if self.count == 1 else "files"
        return f"program {self.program}: {self.count} {files} {_VERBS[self.event_type]} on {self.day}"


def _program(value: Any) -> str:
    text = str(value).strip()
    # MAST writes JWST programs zero-padded ("01234"); subscribers write "1234".
    return text.lstrip("0") or "0" if text.isdigit() else text


def _date(value: Any, where: str) -> str:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise MastFormatError(f"{where}: archived_date {value!r} is not an ISO date") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def _event(item: Any, where: str) -> MastEvent:
    if not isinstance(item, dict):
        raise MastFormatError(f"{where}: expected an object")
    missing = [k for k in ("event_id", "program", "event_type", "archived_date") if item.get(k) in (None, "")]
    if missing:
        raise MastFormatError(f"{where}: missing {', '.join(missing)}")
    kind = str(item["event_type"]).strip().capitalize()
    if kind not in EVENT_TYPES:
        raise MastFormatError(f"{where}: event_type {item['event_type']!r} is not one of {', '.join(EVENT_TYPES)}")
    return MastEvent(
        event_id=str(item["event_id"]),
        mission=str(item.get("mission") or "").lower(),
        program=_program(item["program"]),
        event_type=kind,  # type: ignore[arg-type]
        archived_date=_date(item["archived_date"], where),
        fileset=str(item.get("fileset") or ""),
        filename=str(item.get("filename") or ""),
    )


def _json_parts(message: EmailMessage, max_bytes: int) -> list[bytes]:
    found = []
    for part in message.walk():
        name = (part.get_filename() or "").lower()
        if part.get_content_type() == "application/json" or name.endswith(".json"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                if len(payload) > max_bytes:
                    raise MastFormatError(f"attachment {name or 'JSON'} is {len(payload)} bytes (limit {max_bytes})")
                found.append(payload)
    return found


def parse_mast_mail(raw: bytes, *, max_events: int = 100_000, max_bytes: int = 16_000_000) -> list[MastEvent]:
    """Every event in the mail's JSON attachments; a list, or an object with an `events` list."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    parts = _json_parts(message, max_bytes)
    if not parts:
        raise MastFormatError("no JSON attachment")
    events: list[MastEvent] = []
    for index, payload in enumerate(parts):
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise MastFormatError(f"attachment {index + 1}: not JSON ({exc})") from exc
        items = data.get("events") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise MastFormatError(f"attachment {index + 1}: expected a list of events")
        if len(events) + len(items) > max_events:
            raise MastFormatError(f"more than {max_events} events")
        events.extend(_event(item, f"attachment {index + 1}, event {n + 1}") for n, item in enumerate(items))
    return events


def summarise_events(events: list[MastEvent]) -> list[ProgramSummary]:
    """One summary per (mission, program, event type, day), in order of first appearance."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    filesets: dict[tuple[str, str, str, str], dict[str, None]] = {}
    last: dict[tuple[str, str, str, str], str] = {}
    for event in events:
        key = (event.mission, event.program, event.event_type, event.archived_date[:10])
        counts[key] += 1
        filesets.setdefault(key, {})[event.fileset or event.filename] = None
        last[key] = max(last.get(key, ""), event.archived_date)
    return [
        ProgramSummary(mission=k[0], program=k[1], event_type=k[2], day=k[3], count=n,  # type: ignore[arg-type]
                       filesets=tuple(f for f in filesets[k] if f), last_archived=last[k])
        for k, n in counts.items()
    ]


def likely_cause(archived: str, activations: list[tuple[str, str]]) -> str | None:
    """The context most recently activated before `archived` (ISO dates; (date, context) pairs)."""
    when = datetime.fromisoformat(archived)
    before = [(datetime.fromisoformat(date), context) for date, context in activations]
    earlier = [pair for pair in before if pair[0] <= when]
    return max(earlier)[1] if earlier else None
