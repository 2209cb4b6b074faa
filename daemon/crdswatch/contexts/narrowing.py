"""What a subscriber can narrow a list to, from what one context actually holds (pure).

`narrowing_options(context, library, instruments)` walks the context's .pmap -> .imap -> .rmap
for the instruments and returns the reference types present and, per useful match parameter
(EXP_TYPE, DETECTOR, FILTER, ...), the literal values its rules select on, most used first and
capped. A mapping the library cannot give (not downloaded yet, unparseable) is skipped and named
in `missing`; the rest is still offered. `check_narrowing` validates a choice against an offer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crdswatch.contexts.keywords import keyword
from crdswatch.contexts.mappings import SPECIAL_VALUES, Selector
from crdswatch.contexts.mappings import Mapping as ParsedMapping
from crdswatch.errors import CrdswatchError

__all__ = ["OFFERED_PARAMETERS", "NarrowingOptions", "check_narrowing", "merge_options", "narrowing_options"]

# The match parameters worth offering as checkboxes, in the order shown: what people pick
# exposures by. Others (SUBARRAY sizes, dates, software versions) stay config-file filters.
OFFERED_PARAMETERS = ("EXP_TYPE", "DETECTOR", "FILTER", "PUPIL", "GRATING", "CHANNEL", "BAND", "READPATT",
                      "SUBARRAY", "OBSMODE", "APERTURE")
_DATED = frozenset({"UseAfter", "ClosestTime", "VersionAfter"})
# A literal value: letters, digits and the few marks CRDS values carry. Patterns ("(NRC_.*)"),
# wildcards and N/A/ANY are conditions, not values someone would tick.
_LITERAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")
_NOT_VALUES = frozenset({"N/A", "ANY", "NONE", "UNDEFINED", "NOT APPLICABLE", "NOT_APPLICABLE"})


@dataclass(frozen=True)
class NarrowingOptions:
    """The offer: reference types, and values per parameter (capped; `more` counts what was cut)."""

    contexts: tuple[str, ...] = ()
    reftypes: tuple[str, ...] = ()
    parameters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    more: Mapping[str, int] = field(default_factory=dict)  # parameter -> values not offered (cap)
    missing: tuple[str, ...] = ()  # mappings that could not be read

    @property
    def known(self) -> bool:
        return bool(self.contexts)

    def values(self, parameter: str) -> tuple[str, ...]:
        return dict(self.parameters).get(parameter, ())


def _literals(raw: Any) -> list[str]:
    out = []
    for part in str(raw).split("|"):
        value = part.strip()
        if value and value.upper() not in _NOT_VALUES and _LITERAL.fullmatch(value):
            out.append(value.upper())
    return out


def _walk(selector: Selector, counts: dict[str, Counter[str]], depth: int = 0) -> None:
    if depth > 8:
        return
    if selector.kind not in _DATED:
        names = [keyword(p) for p in selector.parameters]
        for key, _choice in selector.items:
            fields = key if isinstance(key, tuple) else (key,)
            for name, value in zip(names, fields, strict=False):
                if name in OFFERED_PARAMETERS:
                    counts.setdefault(name, Counter()).update(set(_literals(value)))
    for _key, choice in selector.items:
        if isinstance(choice, Selector):
            _walk(choice, counts, depth + 1)


def _get(library: Mapping[str, ParsedMapping], name: str, missing: list[str]) -> ParsedMapping | None:
    try:
        return library[name]
    except (KeyError, CrdswatchError):
        missing.append(name)
        return None


def narrowing_options(
    context: str, library: Mapping[str, ParsedMapping], instruments: Collection[str] | None = None, *,
    max_values: int = 30,
) -> NarrowingOptions:
    """The offer of `context` for `instruments` (lower case; empty or None: every instrument)."""
    missing: list[str] = []
    pmap = _get(library, context, missing)
    if pmap is None:
        return NarrowingOptions(missing=tuple(missing))
    wanted = {i.lower() for i in instruments or ()}
    reftypes: set[str] = set()
    counts: dict[str, Counter[str]] = {}
    for instrument, imap_name in sorted(pmap.selections.items()):
        if (wanted and instrument not in wanted) or not imap_name.endswith(".imap"):
            continue
        imap = _get(library, imap_name, missing)
        if imap is None:
            continue
        for reftype, rmap_name in sorted(imap.selections.items()):
            if rmap_name in SPECIAL_VALUES or not rmap_name.endswith(".rmap"):
                continue  # N/A, OMIT: this instrument has no such reference type in this context
            reftypes.add(reftype.lower())
            rmap = _get(library, rmap_name, missing)
            if rmap is not None and rmap.selector is not None:
                _walk(rmap.selector, counts)
    parameters, more = [], {}
    for name in OFFERED_PARAMETERS:
        ranked = sorted(counts.get(name, Counter()).items(), key=lambda kv: (-kv[1], kv[0]))
        if not ranked:
            continue
        parameters.append((name, tuple(sorted(v for v, _ in ranked[:max_values]))))
        if len(ranked) > max_values:
            more[name] = len(ranked) - max_values
    return NarrowingOptions((context,), tuple(sorted(reftypes)), tuple(parameters), more, tuple(missing))


def merge_options(offers: Iterable[NarrowingOptions], *, max_values: int = 30) -> NarrowingOptions:
    """One offer for a list that spans several observatories (one context each)."""
    offers = list(offers)
    if len(offers) == 1:
        return offers[0]
    values: dict[str, set[str]] = {}
    more: dict[str, int] = {}
    for offer in offers:
        for name, vs in offer.parameters:
            values.setdefault(name, set()).update(vs)
        for name, n in offer.more.items():
            more[name] = more.get(name, 0) + n
    parameters = []
    for name in OFFERED_PARAMETERS:
        if name in values:
            kept = sorted(values[name])[:max_values]
            parameters.append((name, tuple(kept)))
            if len(values[name]) > max_values:
                more[name] = more.get(name, 0) + len(values[name]) - max_values
    return NarrowingOptions(
        tuple(c for o in offers for c in o.contexts), tuple(sorted({r for o in offers for r in o.reftypes})),
        tuple(parameters), more, tuple(m for o in offers for m in o.missing))


def check_narrowing(
    offer: NarrowingOptions, reftypes: Iterable[str], parameters: Mapping[str, Iterable[str]],
) -> tuple[dict[str, Any], list[str]]:
    """(the narrowing, the problems): only what `offer` offered passes; problems name the rest.

    The narrowing is in subscriber-config form: {"reftypes": [...], "parameters": {NAME: [...]}},
    keys left out when nothing was chosen.
    """
    problems: list[str] = []
    chosen_types = sorted({str(r).strip().lower() for r in reftypes if str(r).strip()})
    for r in chosen_types:
        if r not in offer.reftypes:
            problems.append(f"reference type {r[:64]!r} is not in the current context for this list")
    chosen: dict[str, list[str]] = {}
    for name, values in parameters.items():
        key = str(name).strip().upper()
        picked = sorted({str(v).strip().upper() for v in values if str(v).strip()})
        if not picked:
            continue
        offered = offer.values(key)
        if not offered:
            problems.append(f"parameter {key[:64]!r} is not offered for this list")
            continue
        bad = [v for v in picked if v not in offered]
        problems += [f"{key} value {v[:64]!r} is not in the current context for this list" for v in bad[:5]]
        chosen[key] = picked
    out: dict[str, Any] = {}
    if chosen_types:
        out["reftypes"] = chosen_types
    if chosen:
        out["parameters"] = chosen
    return (out, []) if not problems else ({}, problems)
