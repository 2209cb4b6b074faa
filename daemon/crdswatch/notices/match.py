"""Which changes a subscriber wants (pure): filters with CRDS matching semantics for rule values."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import TypeAlias

from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import ActivationDiff, Change, FileInfo, Notice
from crdswatch.notices.codec import narrowed
from crdswatch.notices.datasets import SelectionChange
from crdswatch.notices.programs import programs_only
from crdswatch.notices.subscriptions import Filters, Subscription

__all__ = ["Filters", "notices_for", "rule_value_matches", "select_changes", "set_regex_timeout", "wants_state"]

_Test: TypeAlias = Callable[[str], bool]


def select_changes(
    observatory: str, changes: Iterable[Change], filters: Filters, catalog: Mapping[str, FileInfo]
) -> list[Change]:
    """The changes `filters` select, in their original order."""
    if filters.observatories and observatory.lower() not in filters.observatories:
        return []
    return [c for c in changes if _wanted(c, filters, catalog)]


def notices_for(
    diff: ActivationDiff, subscriptions: Iterable[Subscription],
    selections: Mapping[str, list[SelectionChange]] | None = None,
) -> list[tuple[Subscription, Notice]]:
    """One notice per subscriber whose filters select something; nobody hears about nothing.

    A subscriber with datasets is told only about the reference types whose selection for one of
    its datasets changed (`selections`, by subscriber name, from `notices.datasets`).
    """
    out: list[tuple[Subscription, Notice]] = []
    for sub in subscriptions:
        if not wants_state(diff, sub) or programs_only(sub):  # told by the program notices instead
            continue
        hits: dict[str, tuple[str, ...]] = {}
        interest = sub.filters.interest()
        changes: Iterable[Change] = diff.changes
        if sub.datasets:
            mine_changed = (selections or {}).get(sub.name) or []
            if not mine_changed:
                continue
            changes, hits = _dataset_changes(diff.changes, mine_changed)
            interest = replace(interest, datasets=tuple(dict.fromkeys(c.dataset for c in mine_changed)))
        selected = select_changes(diff.observatory, changes, sub.filters, diff.catalog)
        if not selected:
            continue
        out.append((sub, Notice(sub.name, (narrowed(diff, selected),), sub.reason, digest=sub.digest,
                                interest=interest, dataset_hits=hits)))
    return out


def wants_state(diff: ActivationDiff, sub: Subscription) -> bool:
    """Whether `sub` follows this context state at all, on some channel."""
    return diff.state in sub.states and bool(sub.channels)


def _dataset_changes(changes: Iterable[Change], changed: list[SelectionChange]) -> tuple[list[Change], dict[str, tuple[str, ...]]]:
    """The diff's changes behind each changed selection, and file -> "dataset: TYPE old → new"."""
    types = {(c.instrument.lower(), c.reftype.lower()) for c in changed}
    files = {f for c in changed for f in (c.old, c.new) if f}
    same_type = [c for c in changes if ((c.instrument or "").lower(), (c.reftype or "").lower()) in types]
    # Prefer the rules that name the old or new file; when a selection moved for another reason
    # (a rule's parameters changed), every change of that type explains it.
    naming = [c for c in same_type if c.new_file in files or c.old_file in files]
    hits: dict[str, list[str]] = {}
    for c in changed:
        key = c.new if c.new and c.new != "N/A" else (c.old or "")
        hits.setdefault(key, []).append(c.line())
    return (naming or same_type), {k: tuple(v) for k, v in hits.items()}


def _wanted(change: Change, filters: Filters, catalog: Mapping[str, FileInfo]) -> bool:
    if filters.instruments and (change.instrument or "").lower() not in filters.instruments:
        return False
    if filters.reftypes and (change.reftype or "").lower() not in filters.reftypes:
        return False
    if not _catalog_ok(change, filters, catalog):
        return False
    return all(_parameter_ok(change, name, wanted) for name, wanted in filters.parameters.items())


def _catalog_ok(change: Change, filters: Filters, catalog: Mapping[str, FileInfo]) -> bool:
    if not (filters.change_levels or filters.pedigrees):
        return True
    info = catalog.get(change.new_file or "") if change.new_file else None
    if info is None:
        return True  # unknown (or a removal): let it through rather than lose it
    if filters.change_levels and info.change_level and info.change_level.strip().lower() not in filters.change_levels:
        return False
    if filters.pedigrees and info.pedigree:
        kind = info.pedigree.split()[0].lower() if info.pedigree.split() else ""
        if kind not in filters.pedigrees:
            return False
    return True


def _parameter_ok(change: Change, name: str, wanted: tuple[str, ...]) -> bool:
    # A rule that does not select on this parameter applies whatever its value: keep it.
    for param, value in zip(change.parameters, change.match):
        if param == name:
            return any(rule_value_matches(value, w) for w in wanted)
    return True


def _condition(value: str) -> str:
    value = str(value).strip().upper()
    if value in ("ANY",):
        return "*"
    if value in ("NOT APPLICABLE", "NOT_APPLICABLE", ""):
        return "N/A"
    return value


def rule_value_matches(rule_value: str, wanted: str) -> bool:
    """Would an exposure with `wanted` match a rule keyed `rule_value`? (crds.selectors.matcher)

    N/A in the rule means "not used to select": it matches anything, as in CRDS.
    """
    return _matcher(rule_value)(_condition(wanted))


@lru_cache(maxsize=4096)
def _matcher(rule_value: str) -> _Test:
    key = rule_value.strip()
    if key.startswith("(") and key.endswith(")"):
        return _regex_test(key[1:-1])
    if key.startswith("{") and key.endswith("}"):
        literal = key[1:-1]
        return lambda v: v in (literal, "*")
    if key.startswith("#") and key.endswith("#"):
        inner = key[1:-1].upper()
        for op in (" AND ", " OR "):
            if op in inner:
                left, right = (_matcher(p.strip()) for p in inner.split(op, 1))
                if op == " AND ":
                    return lambda v: left(v) and right(v)
                return lambda v: left(v) or right(v)
        return _matcher(inner)
    upper = key.upper()
    if upper.startswith("BETWEEN"):
        _word, low, high = key.split()
        return lambda v: v == "*" or _number_between(v, float(low), float(high))
    if upper.startswith("NOT "):
        inner_test = _matcher(key[4:].strip())
        return lambda v: v in ("*", "N/A") or not inner_test(v)
    key = _condition(key)
    if key == "N/A":
        return lambda v: True
    if key.startswith((">", "<")):
        return _inequality(key)
    if "|" in key or "*" in key:
        pattern = re.compile("^(" + "|".join(fnmatch.translate(p.strip()) for p in key.split("|")) + ")$")
        return lambda v: v == "*" or bool(pattern.match(v))
    return lambda v: v in (key, "*", "N/A")


# CPU seconds one rule-key regular expression may spend on one value (limits.regex_timeout);
# the daemon sets it from the configuration with set_regex_timeout.
_regex_timeout = DEFAULT_LIMITS.regex_timeout


def set_regex_timeout(seconds: float) -> None:
    global _regex_timeout
    _regex_timeout = seconds


def _regex_test(pattern: str) -> _Test:
    """A rule key's regular expression, matched by the `regex` engine under a time budget.

    A pattern the server wrote can backtrack for minutes ('(a|aa)+$'); one that runs out of time
    (or does not compile) counts as "may match" from then on: one notice too many, never one missed.
    """
    import regex

    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError):
        return lambda v: True
    exhausted = False

    def test(value: str) -> bool:
        nonlocal exhausted
        if value == "*" or exhausted:
            return True
        try:
            return compiled.match(value, timeout=_regex_timeout) is not None
        except TimeoutError:
            exhausted = True
            return True

    return test


def _number_between(value: str, low: float, high: float) -> bool:
    try:
        return low <= float(value) < high
    except ValueError:
        return False


def _inequality(key: str) -> _Test:
    found = re.match(r"^([><]=?)\s*([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)", key)
    if not found:
        return lambda v: v == key
    op, bound = found.group(1), float(found.group(2))
    compare = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}[op]

    def test(value: str) -> bool:
        if value == "*":
            return True
        try:
            return bool(compare(float(value), bound))
        except ValueError:
            return False

    return test
