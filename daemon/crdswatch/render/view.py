"""Notice -> display-ready view shared by the text, HTML and Slack renderers (pure)."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from dataclasses import dataclass

from crdswatch.channels.email_headers import sanitise_header
from crdswatch.history import parse_history_date
from crdswatch.model import ActivationDiff, Notice
from crdswatch.summary import FileEvent, Note, Section, Summary, is_special, summarise

__all__ = [
    "ActivationView",
    "FileView",
    "NoticeView",
    "SectionView",
    "activation_headline",
    "clean_text",
    "context_url",
    "file_url",
    "instrument_name",
    "notice_view",
    "subject",
]

_INSTRUMENTS = {
    "nirspec": "NIRSpec", "nircam": "NIRCam", "niriss": "NIRISS", "miri": "MIRI", "fgs": "FGS",
    "acs": "ACS", "wfc3": "WFC3", "cos": "COS", "stis": "STIS", "nicmos": "NICMOS", "wfpc2": "WFPC2",
    "wfi": "WFI",
}
_STATES = {"latest": "operational", "operational": "operational", "build": "build", "edit": "edit"}
# Control characters other than newline and tab; NBSP too, which would defeat line wrapping.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\xa0]")
_SUBJECT_TYPES = 8  # beyond this many reference types the subject names instruments only
WIDTH = 96


def instrument_name(instrument: str) -> str:
    return _INSTRUMENTS.get(instrument.lower(), instrument.upper()) if instrument else "(context)"


def clean_text(text: str | None) -> str:
    """Server text made safe to lay out: CR/LF -> LF, other control characters -> space."""
    return _CONTROL.sub(" ", (text or "").replace("\r\n", "\n").replace("\r", "\n")).strip()


def context_url(server: str, context: str) -> str:
    return f"{server.rstrip('/')}/context_table/{context}"


def file_url(server: str, name: str) -> str:
    return f"{server.rstrip('/')}/browse/{name}"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 's'}"


def _counts(summaries: list[Summary]) -> str:
    new = len({f for s in summaries for f in s.new_files})
    parts = [_plural(new, "new file") if new else "no new files"]
    for direction in ("widened", "narrowed"):
        n = sum(s.count(direction) for s in summaries)
        if n:
            parts.append(f"{_plural(n, 'rule')} {direction}")
    removed = sum(1 for s in summaries for e in s.events if e.kind == "removed")
    if removed:
        parts.append(f"{_plural(removed, 'file')} removed")
    if any(s.structural for s in summaries):
        parts.append("structure changed")
    return "; ".join(parts)


def _topic(summaries: list[Summary]) -> str:
    affected: dict[str, list[str]] = {}
    for s in summaries:
        for inst, types in s.affected().items():
            known = affected.setdefault(inst, [])
            known.extend(t for t in types if t and t not in known)
    total = sum(len(t) for t in affected.values())
    if not affected:
        return "context update"
    if total <= _SUBJECT_TYPES:
        return "; ".join(f"{instrument_name(i)} {', '.join(t)}".strip() for i, t in sorted(affected.items()))
    if len(affected) <= 4:
        return ", ".join(f"{instrument_name(i)} ({_plural(len(t), 'type')})" for i, t in sorted(affected.items()))
    return f"{_plural(total, 'reference type')} across {len(affected)} instruments"


def activation_headline(diffs: list[ActivationDiff], summaries: list[Summary]) -> str:
    """`NIRSpec dark, readnoise (no new files; 39 rules widened)`: what changed, in one line."""
    return f"{_topic(summaries)} ({_counts(summaries)})"


def _what(diff: ActivationDiff) -> str:
    context = diff.activation.context
    if diff.revert:
        return f"{context} reactivated (revert from {diff.previous or 'unknown'})"
    state = _STATES.get(diff.state, diff.state)
    return f"{context} activated" if state == "operational" else f"{context} activated as {state} context"


def subject(notice: Notice) -> str:
    """One line, whatever the server sent: control characters fold to spaces."""
    diffs = list(notice.activations)
    summaries = [summarise(d) for d in diffs]
    return _subject(diffs, summaries)


def _subject(diffs: list[ActivationDiff], summaries: list[Summary]) -> str:
    observatories = "/".join(dict.fromkeys(d.observatory.upper() for d in diffs)) or "CRDS"
    if len(diffs) == 1:
        what = _what(diffs[0])
    else:
        reverts = sum(1 for d in diffs if d.revert)
        what = (f"{len(diffs)} contexts activated ({diffs[0].activation.context} … "
                f"{diffs[-1].activation.context})" + (f", {_plural(reverts, 'revert')}" if reverts else ""))
    return sanitise_header(f"[CRDS {observatories}] {what}: {activation_headline(diffs, summaries)}")


# ---------------------------------------------------------------- views


@dataclass(frozen=True)
class FileView:
    file: str
    kind: str
    label: str
    useafter: str
    modes: str
    change: str
    catalog: bool  # False for N/A entries, which have no catalog or page
    pedigree: str
    change_level: str
    deliverer: str
    delivery_date: str
    description: str
    url: str | None


@dataclass(frozen=True)
class NoteView:
    text: str
    prominent: bool
    line: str


@dataclass(frozen=True)
class SectionView:
    title: str
    rmaps: str
    headlines: tuple[str, ...]
    notes: tuple[NoteView, ...]
    files: tuple[FileView, ...]


@dataclass(frozen=True)
class ActivationView:
    observatory: str
    server_url: str
    context: str
    previous: str
    date: str
    state: str
    revert: bool
    what: str
    description: str
    description_lines: tuple[str, ...]
    headline: str
    context_url: str
    notes: tuple[NoteView, ...]
    sections: tuple[SectionView, ...]


@dataclass(frozen=True)
class NoticeView:
    subject: str
    subscriber: str
    reason: str
    unsubscribe_url: str | None
    digest: str
    activations: tuple[ActivationView, ...]


def notice_view(notice: Notice) -> NoticeView:
    diffs = list(notice.activations)
    summaries = [summarise(d) for d in diffs]
    return NoticeView(
        _subject(diffs, summaries), clean_text(notice.subscriber), " ".join(clean_text(notice.reason).split()),
        clean_text(notice.unsubscribe_url) or None, notice.digest,
        tuple(_activation(d, s) for d, s in zip(diffs, summaries)),
    )


def _date(text: str) -> str:
    try:
        return parse_history_date(text).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return clean_text(text) or "unknown"


def _wrap(text: str, indent: str = "  ") -> tuple[str, ...]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, WIDTH, initial_indent=indent, subsequent_indent=indent) or [""])
    return tuple(lines)


def _activation(diff: ActivationDiff, summary: Summary) -> ActivationView:
    server = clean_text(diff.server_url)
    description = clean_text(diff.activation.description)
    return ActivationView(
        observatory=diff.observatory.upper(), server_url=server, context=clean_text(diff.activation.context),
        previous=clean_text(diff.previous) or "none", date=_date(diff.activation.date),
        state=_STATES.get(diff.state, clean_text(diff.state)), revert=diff.revert, what=clean_text(_what(diff)),
        description=description or "(none given)", description_lines=_wrap(description or "(none given)"),
        headline=activation_headline([diff], [summary]), context_url=context_url(server, diff.activation.context),
        notes=tuple(_note(n) for n in summary.notes),
        sections=tuple(_section(s, server) for s in summary.sections),
    )


def _note(note: Note) -> NoteView:
    return NoteView(clean_text(note.text), note.prominent, clean_text(note.line))


def _section(section: Section, server: str) -> SectionView:
    title = f"{instrument_name(section.instrument)} {section.reftype.upper() or '(instrument mapping)'}"
    rmaps = f"{section.old_rmap or 'none'} → {section.new_rmap or 'none'}"
    return SectionView(title, clean_text(rmaps), _headlines(section.events),
                       tuple(_note(n) for n in section.notes), tuple(_file(e, server) for e in section.events))


_KIND_HEADLINES = {
    "new": ("new file", "new files"), "replaced": ("file replaced", "files replaced"),
    "removed": ("file removed", "files removed"),
    "rule added": ("rule added for a file already in this rmap", "rules added for files already in this rmap"),
    "rule removed": ("rule removed (file still used elsewhere)", "rules removed (files still used elsewhere)"),
    "now N/A": ("rule now N/A (step not applied)", "rules now N/A (step not applied)"),
    "no longer N/A": ("N/A rule removed or applied", "N/A rules removed or applied"),
}


def _headlines(events: tuple[FileEvent, ...]) -> tuple[str, ...]:
    out: list[str] = []
    kinds = Counter(e.kind for e in events if e.kind != "modes changed")
    for kind, n in kinds.items():
        one, many = _KIND_HEADLINES[kind]
        out.append(f"{n} {one if n == 1 else many}")
    shifts = Counter(_shift(e) for e in events if e.kind == "modes changed")
    for (na, what), n in shifts.items():
        out.append(f"N/A (step not applied), {_plural(n, 'rule')}: {what}" if na else f"{_plural(n, 'file')}: {what}")
    return tuple(clean_text(h) for h in out)


def _shift(event: FileEvent) -> tuple[bool, str]:
    parts = []
    for m in event.mode_changes:
        if m.direction == "widened" and m.gained:
            parts.append(f"now also for {m.parameter} {', '.join(m.gained)}")
        elif m.direction == "narrowed" and m.lost:
            parts.append(f"no longer for {m.parameter} {', '.join(m.lost)}")
        else:
            parts.append(f"{m.parameter} {m.was or '(none)'} → {m.now or '(none)'}")
    return event.not_applicable, "; ".join(parts) or "rule rewritten, same modes"


def _change_text(event: FileEvent) -> str:
    out = []
    for m in event.mode_changes:
        delta = " ".join([*(f"+{v}" for v in m.gained), *(f"-{v}" for v in m.lost)])
        out.append(f"{m.parameter} {m.was or '(none)'} → {m.now or '(none)'}" + (f" ({delta})" if delta else ""))
    return "; ".join(out)


def _label(event: FileEvent) -> str:
    if event.kind == "replaced":
        return f"replaces {event.old_file}"
    if event.kind == "modes changed":
        modes = "modes changed" if event.direction == "changed" else f"modes {event.direction}"
        return f"step not applied (N/A); {modes}" if event.not_applicable else modes
    if event.kind == "now N/A":
        return "step not applied for these modes" + (f" (was {event.old_file})" if event.old_file else "")
    if event.kind == "no longer N/A":
        return "N/A rule removed" if is_special(event.file) else "now applied (was N/A)"
    return f"{event.kind}: {event.detail}" if event.detail else event.kind


def _file(event: FileEvent, server: str) -> FileView:
    info = event.info
    real = not event.not_applicable

    def fact(value: str | None) -> str:
        return " ".join(clean_text(value).split()) or "unknown"

    return FileView(
        file=clean_text(event.file), kind=event.kind, label=clean_text(_label(event)),
        useafter=clean_text(event.useafter) or "none",
        modes=clean_text(" ".join(f"{k}={v}" for k, v in event.modes.items())) or "all",
        change=clean_text(_change_text(event)), catalog=real,
        pedigree=fact(info.pedigree if info else None), change_level=fact(info.change_level if info else None),
        deliverer=fact(info.deliverer if info else None),
        delivery_date=fact(info.delivery_date if info else None),
        description=fact(info.description if info else None),
        url=file_url(server, clean_text(event.file)) if real else None,
    )
