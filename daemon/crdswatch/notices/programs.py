"""Program subscriptions (pure): which of a subscriber's programs a context switch reprocesses.

The CRDS server precomputes, for each context switch, the datasets whose best references change
(`get_affected_datasets(observatory, old_context, new_context)` -> `affected_ids`, JWST ids like
`JW01234001001_02101_00001_NRS1`). A subscriber with `programs = ["1234"]` is told
"program 1234: 37 datasets get new references", with the ids. The server computes them a while
after the context appears ("No precomputed affected datasets results exist ..."): the daemon asks
again with backoff (app.affected) and, past the bound, says so in the notice instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crdswatch.model import BridgeNotice
from crdswatch.notices.subscriptions import Subscription

__all__ = [
    "NOT_READY",
    "AffectedDatasets",
    "affected_from_result",
    "affected_notice",
    "is_not_ready",
    "not_computed_notice",
    "program_followers",
    "program_hits",
    "program_of",
    "programs_only",
]

NOT_READY = "No precomputed affected datasets results exist"
# Only JWST dataset ids name their program (HST ids encode it, not as the proposal number).
PROGRAM_OBSERVATORIES = frozenset({"jwst"})
# JWST dataset ids start with the zero-padded program: JW<ppppp><ooo><vvv>_...
_JWST_ID = re.compile(r"^JW(\d{5})\d{6}", re.IGNORECASE)


@dataclass(frozen=True)
class AffectedDatasets:
    """The server's answer for one context switch (crds_server's compose_affected_datasets_response)."""

    old_context: str
    new_context: str
    ids: tuple[str, ...]
    bestrefs_status: int | str = 0
    computation_dir: str = ""


def is_not_ready(message: str) -> bool:
    """The server's own wording when it has not computed the switch yet (crds' reprocessing tool
    tests the same phrase)."""
    return NOT_READY.lower() in message.lower()


def affected_from_result(result: Any, old_context: str, new_context: str) -> AffectedDatasets:
    """Validate the JSON-RPC result; ValueError names what is wrong.

    The server reports a failed read of its own results as `affected_ids = "FAILED: ..."`.
    """
    if not isinstance(result, Mapping):
        raise ValueError("get_affected_datasets: result is not an object")  # noqa: TRY004 - a bad reply, one kind
    ids = result.get("affected_ids")
    if isinstance(ids, str):
        raise ValueError(f"get_affected_datasets: the server could not read its results: {ids[:200]}")  # noqa: TRY004
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("get_affected_datasets: affected_ids is not a list of dataset ids")
    status = result.get("bestrefs_status", 0)
    return AffectedDatasets(
        old_context=str(result.get("old_context") or old_context),
        new_context=str(result.get("new_context") or new_context),
        ids=tuple(dict.fromkeys(i.strip() for i in ids if i.strip())),
        bestrefs_status=status if isinstance(status, (int, str)) else str(status),
        computation_dir=str(result.get("computation_dir") or ""),
    )


def program_of(dataset_id: str) -> str | None:
    """`JW01234001001_02101_00001_NRS1` -> "1234" (leading zeros dropped, as subscribers write it).

    An association:member pair counts by its first part; ids of other forms have no program here.
    """
    found = _JWST_ID.match(dataset_id.split(":", 1)[0].strip())
    return (found.group(1).lstrip("0") or "0") if found else None


def program_hits(ids: Iterable[str], programs: Iterable[str]) -> dict[str, list[str]]:
    """Program -> its affected ids, in the server's order, for the programs asked about only."""
    wanted = set(programs)
    out: dict[str, list[str]] = {}
    for dataset_id in ids:
        program = program_of(dataset_id)
        if program is not None and program in wanted:
            out.setdefault(program, []).append(dataset_id)
    return {p: out[p] for p in sorted(out, key=lambda p: (len(p), p))}


def programs_only(sub: Subscription) -> bool:
    """A subscriber who names programs and nothing else wants the program notices only, not every
    activation (empty filters would otherwise mean "everything")."""
    f = sub.filters
    return bool(sub.programs) and not (sub.datasets or f.observatories or f.instruments or f.reftypes
                                       or f.change_levels or f.pedigrees or f.parameters)


def program_followers(
    subscriptions: Iterable[Subscription], observatory: str, state: str
) -> list[Subscription]:
    """Subscribers that list programs, follow this observatory and context state, on some channel."""
    if observatory.lower() not in PROGRAM_OBSERVATORIES:
        return []
    return [s for s in subscriptions
            if s.programs and s.channels and state in s.states
            and (not s.filters.observatories or observatory.lower() in s.filters.observatories)]


def _reason(sub: Subscription) -> str:
    programs = ", ".join(sorted(sub.programs, key=lambda p: (len(p), p)))
    return f"subscriber {sub.name!r} follows program{'s' if len(sub.programs) > 1 else ''} {programs}"


def _links(server_url: str, public_url: str | None, context: str) -> list[str]:
    lines = [f"Context: {server_url.rstrip('/')}/context_table/{context}"]
    if public_url:
        lines.append(f"Archive: {public_url.rstrip('/')}/activations/{context}")
    return lines


def _headline(program: str, count: int) -> str:
    return f"program {program}: {count} dataset{'' if count == 1 else 's'} get{'s' if count == 1 else ''} new references"


def affected_notice(
    sub: Subscription, affected: AffectedDatasets, *, observatory: str, server_url: str, shown: int,
    public_url: str | None = None,
) -> BridgeNotice | None:
    """What `sub` is told about one switch: one paragraph per affected program it follows, the ids
    listed up to `shown` each (the count is always the full one). None when none of its programs
    is affected: nobody hears about nothing."""
    hits = program_hits(affected.ids, sub.programs)
    if not hits:
        return None
    switch = f"{affected.old_context} → {affected.new_context}"
    lines = [(f"CRDS {observatory.upper()} context {affected.new_context} changes the best references of "
              f"datasets in your programs (switch {switch}, as computed by the server):"), ""]
    for program, ids in hits.items():
        lines.append(_headline(program, len(ids)))
        lines += [f"  {i}" for i in ids[:shown]]
        if len(ids) > shown:
            lines.append(f"  ... and {len(ids) - shown} more")
        lines.append("")
    lines += _links(server_url, public_url, affected.new_context)
    headlines = "; ".join(_headline(p, len(i)) for p, i in hits.items())
    return BridgeNotice(
        subscriber=sub.name, kind="programs", source=f"CRDS {observatory.upper()} programs",
        subject=f"[CRDS {observatory.upper()}] {affected.new_context}: {headlines}"[:400],
        lines=tuple(lines), reason=_reason(sub), link=None,
    )


def not_computed_notice(
    sub: Subscription, *, observatory: str, server_url: str, old_context: str, new_context: str,
    attempts: int, waited: str, last_error: str, public_url: str | None = None,
) -> BridgeNotice:
    """Past the bound: the server never had the affected datasets; say so rather than stay silent."""
    programs = ", ".join(sorted(sub.programs, key=lambda p: (len(p), p)))
    lines = [
        (f"CRDS {observatory.upper()} context {new_context} was activated (previous: {old_context}), but the "
         f"server had not computed which datasets it affects after {attempts} tries over {waited}."),
        (f"crdswatch cannot tell whether programs {programs} get new references; the server said: "
         f"{last_error[:300]}"),
        "",
        *_links(server_url, public_url, new_context),
    ]
    return BridgeNotice(
        subscriber=sub.name, kind="programs", source=f"CRDS {observatory.upper()} programs",
        subject=f"[CRDS {observatory.upper()}] {new_context}: affected datasets not computed by the server",
        lines=tuple(lines), reason=_reason(sub), link=None,
    )
