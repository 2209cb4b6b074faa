"""The subject line: what changed, for whom to notice, in one line (pure)."""

from __future__ import annotations

from crdswatch.model import ActivationDiff, Notice
from crdswatch.notices.memo import DIFFS, IdentityMemo
from crdswatch.notices.summary import Summary, summarise
from crdswatch.render.common import STATES, instrument_name, plural
from crdswatch.render.email_headers import sanitise_header

__all__ = ["TEST_PREFIX", "activation_headline", "subject", "subject_line", "what_happened"]


_SUBJECT_TYPES = 8  # beyond this many reference types the subject names instruments only


def _counts(summaries: list[Summary]) -> str:
    sections = [section for s in summaries for section in s.sections]
    new = len({f for section in sections for f in section.new_files})
    parts = [plural(new, "new file") if new else "no new files"]
    for i, direction in enumerate(("widened", "narrowed")):
        n = sum(section.tally[i] for section in sections)
        if n:
            parts.append(f"{plural(n, 'rule')} {direction}")
    removed = sum(section.tally[2] for section in sections)
    if removed:
        parts.append(f"{plural(removed, 'file')} removed")
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
        return ", ".join(f"{instrument_name(i)} ({plural(len(t), 'type')})" for i, t in sorted(affected.items()))
    return f"{plural(total, 'reference type')} across {len(affected)} instruments"


# A notice's subject and its activation's headline say the same of the same summaries.
_HEADLINES: IdentityMemo[str] = IdentityMemo(DIFFS)


def activation_headline(diffs: list[ActivationDiff], summaries: list[Summary]) -> str:
    """`NIRSpec dark, readnoise (no new files; 39 rules widened)`: what changed, in one line."""
    return _HEADLINES.get(tuple(summaries), None, lambda: f"{_topic(summaries)} ({_counts(summaries)})")


def what_happened(diff: ActivationDiff) -> str:
    context = diff.activation.context
    if diff.revert:
        return f"{context} reactivated (revert from {diff.previous or 'unknown'})"
    state = STATES.get(diff.state, diff.state)
    return f"{context} activated" if state == "operational" else f"{context} activated as {state} context"


def subject(notice: Notice) -> str:
    """One line, whatever the server sent: control characters fold to spaces."""
    diffs = list(notice.activations)
    summaries = [summarise(d) for d in diffs]
    return subject_line(diffs, summaries, test=notice.test)


TEST_PREFIX = "[crdswatch TEST]"


def subject_line(diffs: list[ActivationDiff], summaries: list[Summary], *, test: bool = False) -> str:
    """`[CRDS JWST] jwst_0541.pmap activated: ...`; a send-test notice says `[crdswatch TEST]` first."""
    observatories = "/".join(dict.fromkeys(d.observatory.upper() for d in diffs)) or "CRDS"
    if len(diffs) == 1:
        what = what_happened(diffs[0])
    else:
        reverts = sum(1 for d in diffs if d.revert)
        what = (f"{len(diffs)} contexts activated ({diffs[0].activation.context} … "
                f"{diffs[-1].activation.context})" + (f", {plural(reverts, 'revert')}" if reverts else ""))
    headline = activation_headline(diffs, summaries)
    if test:  # no observatory tag either: a mail filter must not file it with the real notices
        return sanitise_header(f"{TEST_PREFIX} sample notice, not a real CRDS activation: {headline}")
    return sanitise_header(f"[CRDS {observatories}] {what}: {headline}")
