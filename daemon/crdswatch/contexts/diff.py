"""Context diff, pure: two parsed contexts -> the changes `crds diff --brief --squash-tuples` reports."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

from crdswatch.contexts.keywords import keyword
from crdswatch.contexts.mappings import SPECIAL_VALUES, Mapping, Selector
from crdswatch.errors import MappingError
from crdswatch.model import Change, DiffResult

__all__ = ["MappingLookup", "brief_lines", "diff_contexts", "missing_mappings"]

MappingLookup = MappingABC[str, Mapping]

# Header keys `crds diff --brief` hides as routine; it drops any change whose text mentions them.
_BORING = ("name", "derived_from", "sha1sum", "row_keys")
# Selectors whose key is a date, shown as USEAFTER rather than as a match value.
_DATED = frozenset({"UseAfter", "ClosestTime"})
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}(?::\d{2}){0,2}))?")


@dataclass
class _Raw:
    """A difference as crds builds it (`path`), with the facts needed for the structured Change."""

    path: tuple[Any, ...]
    fields: dict[str, Any] = field(default_factory=dict)


def diff_contexts(old: str, new: str, mappings: MappingLookup) -> DiffResult:
    """The changes between contexts (or any two mappings of one kind) `old` and `new`."""
    first, second = mappings[old], mappings[new]
    if first.kind != second.kind:  # as crds refuses: the result would be nonsense
        raise MappingError(f"cannot compare a {first.kind} mapping ({old}) with a {second.kind} mapping ({new})")
    raws = _sorted([r for r in _difference(first, second, (), mappings) if not _boring(r)])
    return DiffResult(old, new, tuple(_to_change(r) for r in raws))


def brief_lines(old: str, new: str, mappings: MappingLookup, *, squash: bool = False) -> list[str]:
    """Exactly what `crds diff OLD NEW --brief` prints (with `squash`, `--brief --squash-tuples`)."""
    raws = _sorted([r for r in _difference(mappings[old], mappings[new], (), mappings) if not _boring(r)])
    return [crds_line(r.path) if squash else crds_tuple_line(r.path) for r in raws]


def missing_mappings(old: str, new: str, have: MappingABC[str, Mapping]) -> set[str]:
    """Names the diff of `old` and `new` still needs that `have` lacks, one level at a time.

    A fetcher calls this in a loop (at most three rounds: pmaps, imaps, rmaps) and downloads the
    names it returns, so only mappings that actually differ are ever fetched.
    """
    need: set[str] = set()
    pending = [(old, new)]
    seen: set[tuple[str, str]] = set()  # the parser keeps the graph a tree; this keeps the walk linear anyway
    present: dict[str, bool] = {}  # `name in have` once a name: a miss may cost `have` a disk lookup

    def has(name: str) -> bool:
        known = present.get(name)
        if known is None:
            known = present[name] = name in have
        return known

    while pending:
        a, b = pending.pop()
        if (a, b) in seen:
            continue
        seen.add((a, b))
        if not has(a) or not has(b):
            need.update(n for n in (a, b) if not has(n))
            continue
        ma, mb = have[a], have[b]
        for key, value in ma.selections.items():
            other = mb.selections.get(key)
            if other is not None and other != value and _normal(value) and _normal(other):
                pending.append((value, other))
    return need


# ---------------------------------------------------------------- pmap / imap level


def _normal(value: str) -> bool:
    return value not in SPECIAL_VALUES


def _difference(old: Mapping, new: Mapping, path: tuple[Any, ...], lookup: MappingLookup) -> list[_Raw]:
    if old.kind == "reference":
        return _rmap_difference(old, new, path)
    pair = (old.name, new.name)
    out = _header_difference(old, new, path)
    for key, value in old.selections.items():
        if key not in new.selections:
            out.append(_level_raw(old, new, path, key, f"deleted {value!r}", "deleted", value, None))
            continue
        other = new.selections[key]
        if value == other:
            continue
        both_normal = _normal(value) and _normal(other)
        nested_old = lookup[value] if both_normal else None
        nested_new = lookup[other] if both_normal else None
        old_sum = nested_old.sha1sum if nested_old else value
        new_sum = nested_new.sha1sum if nested_new else other
        if old_sum != new_sum:
            out.append(
                _level_raw(old, new, path, key, f"replaced {value!r} with {other!r}", "replaced", value, other)
            )
        if nested_old and nested_new:
            out.extend(_difference(nested_old, nested_new, path + (pair,), lookup))
    for key, other in new.selections.items():
        if key not in old.selections:
            out.append(_level_raw(old, new, path, key, f"added {other!r}", "added", None, other))
    return out


def _level_raw(
    old: Mapping, new: Mapping, path: tuple[Any, ...], key: str, text: str,
    action: str, old_file: str | None, new_file: str | None,
) -> _Raw:
    pipeline = old.kind == "pipeline"
    return _Raw(
        path + ((old.name, new.name), (key,), text),
        {
            "old_mapping": old.name, "new_mapping": new.name, "level": old.kind, "action": action,
            "match": (key,), "old_file": old_file, "new_file": new_file,
            "instrument": key if pipeline else old.instrument or None,
            "reftype": None if pipeline else key,
        },
    )


def _lower(value: Any) -> Any:
    # crds reads header strings through a lower-casing dict, except "(expressions)".
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


def _header_difference(old: Mapping, new: Mapping, path: tuple[Any, ...]) -> list[_Raw]:
    pair = (old.name, new.name)
    out: list[_Raw] = []

    def add(text: str, key: str, before: Any, after: Any) -> None:
        info = {
            "old_mapping": old.name, "new_mapping": new.name, "level": old.kind, "action": "header",
            "key": key, "old_value": before, "new_value": after,
            "instrument": old.instrument or new.instrument or None,
            "reftype": old.filekind or new.filekind or None,
        }
        out.append(_Raw(path + (pair, text), info))

    for key, value in old.header.items():
        if key not in new.header:
            add(f"deleted header {key!r} = {_lower(value)!r}", key, value, None)
        elif _lower(value) != _lower(new.header[key]):
            add(f"header replaced {key!r} = {_lower(value)!r} with {_lower(new.header[key])!r}",
                key, value, new.header[key])
    for key, value in new.header.items():
        if key not in old.header:
            add(f"header added {key!r} = {_lower(value)!r}", key, None, value)
    return out


# ---------------------------------------------------------------- rmap level


@dataclass(slots=True)  # not frozen: built thousands of times per diff, and frozen init is slow
class _RuleContext:
    """Where in an rmap a selector sits: the path so far and the named values leading to it."""

    old: Mapping
    new: Mapping
    path: tuple[Any, ...]
    names: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    useafter: str | None = None

    def descend(self, selector: Selector, key: Any) -> _RuleContext:
        dkey = _diff_key(selector, key)
        if selector.kind in _DATED:
            return _RuleContext(self.old, self.new, self.path + (dkey,), self.names, self.values,
                                _useafter(" ".join(dkey)))
        names = _keywords(selector.parameters)[: len(dkey)]
        return _RuleContext(self.old, self.new, self.path + (dkey,), self.names + names,
                            self.values + dkey, self.useafter)

    def raw(self, selector: Selector | None, key: Any, text: str, **info: Any) -> _Raw:
        where = self.descend(selector, key) if selector is not None and key else self
        base = {
            "old_mapping": self.old.name, "new_mapping": self.new.name, "level": "reference",
            "match": where.values, "parameters": where.names, "useafter": where.useafter,
            "instrument": self.old.instrument or None, "reftype": self.old.filekind or None,
        }
        return _Raw(where.path + (text,), {**base, **info})


@functools.lru_cache(maxsize=256)
def _keywords(parameters: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(keyword(p) for p in parameters)


@functools.lru_cache(maxsize=4096)  # USEAFTER dates repeat across the rules of an rmap
def _useafter(text: str) -> str | None:
    found = _DATE.match(text.strip())
    if not found:
        return None
    clock = (found.group(2) or "00:00:00").split(":")
    clock += ["00"] * (3 - len(clock))
    return f"{found.group(1)} {int(clock[0]):02d}:{clock[1]}:{clock[2]}"


def _diff_key(selector: Selector, key: Any) -> tuple[str, ...]:
    """The key as crds prints it: one string per selector parameter (`_diff_key`/`match_item`)."""
    params = selector.parameters
    if selector.kind in ("UseAfter", "ClosestTime", "VersionAfter"):
        if len(params) == 1:
            return (str(key),)
        parts = str(key).split("." if selector.kind == "VersionAfter" else None)
        return tuple(parts[: len(params)])
    fields = key if isinstance(key, tuple) else (key,)
    return tuple(str(f) for f in fields[: len(params)])


def _rmap_difference(old: Mapping, new: Mapping, path: tuple[Any, ...]) -> list[_Raw]:
    assert old.selector is not None and new.selector is not None
    ctx = _RuleContext(old, new, path + ((old.name, new.name),))
    return _header_difference(old, new, path) + _selector_difference(old.selector, new.selector, ctx, True)


def _selector_difference(mine: Selector, theirs: Choice, ctx: _RuleContext, top: bool) -> list[_Raw]:
    if not isinstance(theirs, Selector) or mine.kind != theirs.kind:
        other = "N/A" if theirs == "N/A" else (theirs.kind if isinstance(theirs, Selector) else "str")
        return [ctx.raw(None, None, f"different classes {mine.kind} : {other}", action="classes",
                        old_value=mine.kind, new_value=other)]
    if mine.parameters != theirs.parameters:
        text = f"different parameter lists  {mine.parameters!r} : {theirs.parameters!r}"
        return [ctx.raw(None, None, text, action="parameters",
                        old_value=list(mine.parameters), new_value=list(theirs.parameters))]
    out: list[_Raw] = []
    theirs_map = dict(theirs.items)
    rule = f"{mine.kind} rule"
    for key, choice in mine.items:
        if key not in theirs_map:
            if isinstance(choice, Selector):
                out.extend(_flat(choice, f"deleted {rule} for", ctx.descend(mine, key), "deleted", rule))
            else:
                out.append(_leaf(mine, ctx, key, "deleted", rule if top else "terminal", choice, None))
            continue
        counterpart = theirs_map[key]
        if isinstance(choice, Selector):
            out.extend(_selector_difference(choice, counterpart, ctx.descend(mine, key), False))
        elif choice != counterpart:
            new_file = counterpart if isinstance(counterpart, str) else None
            shown = repr(counterpart) if new_file is not None else _crds_repr(counterpart, ctx.new.header)
            out.append(ctx.raw(mine, key, f"replaced {choice!r} with {shown}", action="replaced",
                               rule=None, old_file=choice, new_file=new_file))
    mine_map = dict(mine.items)
    for key, counterpart in theirs.items:
        if key in mine_map:
            continue
        if isinstance(counterpart, Selector):
            out.extend(_flat(counterpart, f"added {rule} for", ctx.descend(mine, key), "added", rule))
        else:
            out.append(_leaf(mine, ctx, key, "added", rule if top else "terminal", None, counterpart))
    return out


Choice = Selector | str


# crds.core.selectors.DEFAULT_SUBSTITUTIONS, which an rmap's header 'substitutions' extend.
_DEFAULT_SUBSTITUTIONS: dict[str, Any] = {"META.SUBARRAY.NAME": {"GENERIC": "N/A"}, "SUBARRAY": {"GENERIC": "N/A"}}


def _crds_repr(selector: Choice, header: dict[str, Any]) -> str:
    """A selector as crds prints it when a file is replaced by one.

    crds counts the rules after applying the header's substitutions (`Selector.do_substitutions`),
    and a substitution can merge two rules into one, so the count may be below len(items).
    """
    if not isinstance(selector, Selector):
        return repr(selector)
    substitutions = dict(_DEFAULT_SUBSTITUTIONS)
    extra = header.get("substitutions")
    if isinstance(extra, dict):
        substitutions.update(extra)
    keys: dict[Any, None] = dict.fromkeys(key for key, _ in selector.items)
    for parameter in selector.parameters:
        table = substitutions.get(parameter)
        if not isinstance(table, dict):
            continue
        which = selector.parameters.index(parameter)
        for key in list(keys):
            tupled = isinstance(key, tuple)
            if tupled and which >= len(key):
                continue
            value = key[which] if tupled else key
            if value not in table:
                continue
            replacement = table[value]
            replacement = tuple(replacement) if isinstance(replacement, list) else replacement
            new_key = key[:which] + (replacement,) + key[which + 1:] if tupled else replacement
            try:
                del keys[key]
                keys[new_key] = None
            except TypeError:  # an unhashable replacement: crds would fail to load the rmap
                return repr(selector)
    return f"{selector.kind}Selector({selector.parameters!r}, nselections={len(keys)})"


def _leaf(
    selector: Selector, ctx: _RuleContext, key: Any, action: str, rule: str,
    old_file: str | None, new_file: str | None,
) -> _Raw:
    words = f"{action} {rule} for" if rule != "terminal" else f"{action} terminal"
    return ctx.raw(selector, key, f"{words} {(old_file or new_file)!r}", action=action, rule=rule,
                   old_file=old_file, new_file=new_file)


def _flat(selector: Selector, words: str, ctx: _RuleContext, action: str, rule: str) -> list[_Raw]:
    """Every leaf below an added or deleted rule, as crds' `flat_diff`."""
    out: list[_Raw] = []
    for key, choice in selector.items:
        if isinstance(choice, Selector):
            out.extend(_flat(choice, words, ctx.descend(selector, key), action, rule))
        else:
            files = {"old_file": choice, "new_file": None} if action == "deleted" else {
                "old_file": None, "new_file": choice}
            out.append(ctx.raw(selector, key, f"{words} {choice!r}", action=action, rule=rule, **files))
    return out


# ---------------------------------------------------------------- presentation, as crds.diff does it


def _boring(raw: _Raw) -> bool:
    return any(word in raw.path[-1] for word in _BORING)


def _crds_order(a: _Raw, b: _Raw) -> int:
    # DiffTuple sorts longer tuples first, then as plain tuples.
    if len(a.path) != len(b.path):
        return -1 if len(a.path) > len(b.path) else 1
    for x, y in zip(a.path, b.path):
        if x == y:
            continue
        try:
            return -1 if x < y else 1
        except TypeError:
            return -1 if type(x).__name__ < type(y).__name__ else 1
    return 0


def _sorted(raws: list[_Raw]) -> list[_Raw]:
    """crds' order, once at the end (a total order, so crds' per-level sorts change nothing)."""
    try:  # fast: the elements at one position are all tuples or all strings in practice
        return sorted(raws, key=lambda r: (-len(r.path), r.path))
    except TypeError:
        return sorted(raws, key=functools.cmp_to_key(_crds_order))


def _is_pair(element: Any) -> bool:
    return (isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], str)
            and element[0].endswith("map"))


def crds_line(path: tuple[Any, ...]) -> str:
    """Format a raw difference as `crds diff --brief --squash-tuples` prints it.

    Only the lowest mapping pair of the path is kept (--lowest-mapping-only), quotes go from
    everything but header changes, and tuples are joined with spaces (--squash-tuples).
    """
    *body, last = _brief_path(path)
    return " -- ".join([" ".join(e) for e in body] + [last])


def crds_tuple_line(path: tuple[Any, ...]) -> str:
    """Format a raw difference as `crds diff --brief` prints it: the tuple itself, as Python shows it."""
    return str(_brief_path(path))


def _brief_path(path: tuple[Any, ...]) -> tuple[Any, ...]:
    # unquote_diff, then simplify_to_lowest_mapping, as crds.diff does them.
    last = path[-1] if "header" in path[-1] else path[-1].replace("'", "")
    body = path[:-1]
    pairs = [i for i, e in enumerate(body) if _is_pair(e)]
    drop = set(pairs[:-1])
    return (*(e for i, e in enumerate(body) if i not in drop), last)


# Every field in declaration order (so JSON reads old_mapping, new_mapping, ... as documented),
# holding its default where it has one.
_CHANGE_DEFAULTS = {f.name: (None if f.default is dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(Change)}


def _to_change(raw: _Raw) -> Change:
    # Filled directly, not through the frozen __init__: a long span makes thousands of these,
    # and frozen dataclasses set each field with object.__setattr__. Same fields, same values.
    change: Change = object.__new__(Change)
    change.__dict__.update(_CHANGE_DEFAULTS, **raw.fields, line=crds_line(raw.path))
    return change
