"""Compiled rmap selectors that choose a reference the way crds.core.selectors does.

Built once per rmap from the parsed `Selector` tree (keys conditioned, substitutions applied,
matchers compiled, Match rows indexed by the exact value of their first parameter), then used for
many headers. Two kinds of failure, as in crds: `LookupFailure` (this branch has nothing: the
parent tries its next-best candidate) and `SelectionError` (a bad header value or an ambiguity:
the whole lookup stops).
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Iterator
from collections.abc import Mapping as MappingABC
from typing import Any, Union

from crdswatch.contexts.crdsvalues import (
    DateError,
    condition_value,
    esoteric_key,
    glob_compress,
    glob_list,
    reformat_date,
)
from crdswatch.contexts.mappings import Selector
from crdswatch.contexts.matchers import Matcher, make_matcher
from crdswatch.errors import LookupFailure, SelectionError

__all__ = ["Choice", "LookupFailure", "Node", "SelectionError", "compile_selector"]

Header = MappingABC[str, str]
# crds' defaults for every rmap: a GENERIC subarray means "any".
_DEFAULT_SUBSTITUTIONS: dict[str, dict[str, Any]] = {
    "META.SUBARRAY.NAME": {"GENERIC": "N/A"},
    "SUBARRAY": {"GENERIC": "N/A"},
}


Choice = Union[str, tuple[Any, ...], "Node"]


class Node:
    """Base of the compiled selectors."""

    short_name = "Selector"
    parameters: tuple[str, ...]
    parkey_map: dict[str, Any]

    def choose(self, header: Header) -> Any:
        raise NotImplementedError

    def merge(self, other: Choice) -> Node:
        raise SelectionError(
            f"More than one match was found at the same weight and {self.short_name} does not support merging."
        )

    def check_defined(self, header: Header) -> None:
        for name in self.parameters:
            if name not in header and name in self.parkey_map and "N/A" not in self.parkey_map[name]:
                raise SelectionError(f"{self.short_name} required lookup parameter {name!r} is undefined.")


def _resolve(choice: Choice, header: Header) -> Any:
    return choice.choose(header) if isinstance(choice, Node) else choice


def compile_selector(selector: Selector, rmap_header: MappingABC[str, Any]) -> Node:
    substitutions = dict(_DEFAULT_SUBSTITUTIONS)
    extra = rmap_header.get("substitutions")
    if isinstance(extra, dict):
        substitutions.update(extra)
    return _compile(selector, rmap_header, substitutions)


def _compile(selector: Selector, rmap_header: MappingABC[str, Any], subs: dict[str, Any]) -> Node:
    table: dict[Any, Choice] = {}
    for key, choice in selector.items:
        table[key] = _compile(choice, rmap_header, subs) if isinstance(choice, Selector) else choice
    params = selector.parameters
    for keyword in params:
        if keyword in subs and isinstance(subs[keyword], dict):
            _substitute(table, params, keyword, subs[keyword])
    kind = selector.kind
    if kind == "Match":
        merge = str(rmap_header.get("merge_overlaps", "TRUE")).upper() in ("TRUE", "1")
        return MatchNode(params, table, subs, merge)
    if kind == "UseAfter":
        return UseAfterNode(params, sorted(table.items(), key=lambda kv: str(kv[0])))
    if kind == "ClosestTime":
        return ClosestTimeNode(params, sorted(table.items(), key=lambda kv: str(kv[0])))
    if kind == "VersionAfter":
        return VersionAfterNode(params, table)
    if kind == "GeometricallyNearest":
        return NearestNode(params, table)
    if kind == "Bracket":
        return BracketNode(params, table)
    raise SelectionError(f"{kind} selectors are not supported by crdswatch")


def _substitute(table: dict[Any, Choice], params: tuple[str, ...], keyword: str, subs: dict[Any, Any]) -> None:
    which = params.index(keyword)
    for match in list(table):
        if isinstance(match, tuple):
            old = match[which] if which < len(match) else None
            if isinstance(old, (str, int, float)) and old in subs:
                new = list(match)
                new[which] = tuple(subs[old]) if isinstance(subs[old], list) else subs[old]
                table[tuple(new)] = table.pop(match)
        elif isinstance(match, (str, int, float)) and match in subs:
            replacement = subs[match]
            table[tuple(replacement) if isinstance(replacement, list) else replacement] = table.pop(match)


def condition_match_key(key: Any) -> tuple[str, ...]:
    fields = key if isinstance(key, tuple) else (key,)
    return tuple(_condition_element(field) for field in fields)


def _condition_element(elem: Any) -> str:
    if isinstance(elem, str):
        if (elem.startswith("{") and elem.endswith("}")) or (elem.startswith("(") and elem.endswith(")")):
            return elem
        if "|" in elem:
            return "|".join(condition_value(x) for x in glob_list(elem))
        return condition_value(glob_compress(elem))
    if isinstance(elem, (tuple, list)):
        return "|".join(condition_value(v) for v in elem)
    return condition_value(elem)


class MatchNode(Node):
    short_name = "Match"

    def __init__(self, params: tuple[str, ...], table: dict[Any, Choice], subs: dict[str, Any], merge: bool) -> None:
        self.parameters = params
        self.substitutions = subs
        self.merge_overlaps = merge
        conditioned: dict[tuple[str, ...], Choice] = {}
        for key, choice in table.items():
            ckey = condition_match_key(key)
            if ckey in conditioned:
                raise SelectionError(f"Key {ckey!r} appears more than once")
            conditioned[ckey] = choice
        self.rows: list[tuple[tuple[str, ...], tuple[Matcher, ...], Choice]] = []
        for ckey in sorted(conditioned):
            if len(ckey) != len(params):
                raise SelectionError(f"Match key={ckey!r} is wrong length for parameters {params!r}")
            self.rows.append((ckey, tuple(make_matcher(field) for field in ckey), conditioned[ckey]))
        self.parkey_map = self._parkey_map()
        # Index on the parameter that splits the rows best: rows whose field there is a plain
        # literal, by that literal; a header value rules out every other literal row at once.
        self._column = 0
        self._exact: dict[str, list[int]] = {}
        self._general: list[int] = []
        best = -1
        for column in range(len(params)):
            exact: dict[str, list[int]] = {}
            general: list[int] = []
            for index, (_key, matchers, _choice) in enumerate(self.rows):
                literal = matchers[column].literal
                if literal is None:
                    general.append(index)
                else:
                    exact.setdefault(literal, []).append(index)
            score = len(self.rows) - len(general) - max((len(v) for v in exact.values()), default=0)
            if score > best:
                best, self._column, self._exact, self._general = score, column, exact, general
        self._merged: dict[tuple[int, ...], Node] = {}  # equal-weight groups merged once (crds caches too)

    def _parkey_map(self) -> dict[str, list[str]]:
        parmap: dict[str, list[str]] = {}
        for i, par in enumerate(self.parameters):
            values: set[str] = set()
            esoteric = False
            for key, _m, _c in self.rows:
                if esoteric_key(key[i]):
                    esoteric = True
                    break
                values.update(glob_list(key[i]))
            parmap[par] = [] if esoteric else sorted(values)
        return parmap

    def validate_value(self, name: str, value: str, valid: list[str]) -> None:
        if value in valid or condition_value(value) in valid:
            return
        if "*" in valid or "ANY" in valid or "N/A" in valid or not valid:
            return
        if value.startswith("NOT"):
            self.validate_value(name, value[3:].strip(), valid)
            return
        if esoteric_key(value) or value in ("*", "ANY", "N/A"):
            return
        if value.lower().startswith("between"):
            parts = value.split()
            if len(parts) != 3:
                raise SelectionError(f"cannot unpack {value!r} as 'between lower upper'")
            self.validate_value(name, parts[1], valid)
            self.validate_value(name, parts[2], valid)
            return
        if len(valid) == 1 and ":" in valid[0]:
            try:
                low, high = (float(x) for x in valid[0].split(":"))
                number = float(value)
            except ValueError as exc:
                raise SelectionError(str(exc)) from None
            if low <= number <= high:
                return
            raise SelectionError(f" parameter={name!r} value ={value!r} is not in range [{low} .. {high}]")
        subs = self.substitutions.get(name)
        if isinstance(subs, dict) and value in subs:
            replacement = subs[value]
            self.validate_value(name, replacement if isinstance(replacement, str) else str(replacement), valid)
            return
        raise SelectionError(f" parameter={name!r} value={value!r} is not in {valid!r}")

    def choose(self, header: Header) -> Any:
        self.check_defined(header)
        values = [header.get(name, "UNDEFINED") for name in self.parameters]
        for name, value in zip(self.parameters, values):
            self.validate_value(name, value, self.parkey_map[name])
        for choice in self._candidates(values):
            try:
                return _resolve(choice, header)
            except LookupFailure:
                continue
        raise LookupFailure("No match found.")

    def _candidates(self, values: list[str]) -> Iterator[Choice]:
        if not self.parameters:
            indices = list(range(len(self.rows)))
        elif values[self._column] in ("*", "N/A"):
            indices = list(range(len(self.rows)))  # '*' matches every key, N/A is "don't care" to all
        else:
            exact = self._exact.get(values[self._column], [])
            indices = sorted(exact + self._general) if exact else self._general
        weights: dict[int, list[int]] = {}
        for index in indices:
            matchers = self.rows[index][1]
            weight = 0
            for matcher, value in zip(matchers, values):
                status = matcher.match(value)
                if status < 0:
                    break
                weight -= status
            else:
                weights.setdefault(weight, []).append(index)
        # Lazily, as crds' generator: a later group's merge only happens if earlier ones failed.
        for weight in sorted(weights):
            group = weights[weight]
            if len(group) == 1:
                yield self.rows[group[0]][2]
                continue
            if not self.merge_overlaps:
                raise SelectionError("More than one match clause matched.")
            choices = [self.rows[i][2] for i in group]
            first = choices[0]
            if isinstance(first, Node):
                key = tuple(group)
                combined = self._merged.get(key)
                if combined is None:
                    combined = first
                    for other in choices[1:]:
                        combined = combined.merge(other)
                    if len(self._merged) < 1024:
                        self._merged[key] = combined
                yield combined
            else:
                yield tuple(choices)


class UseAfterNode(Node):
    short_name = "UseAfter"

    def __init__(self, params: tuple[str, ...], items: list[tuple[Any, Choice]]) -> None:
        self.parameters = params
        self.parkey_map = {p: "*" for p in params}
        self.keys = [str(k) for k, _ in items]
        self.choices = [c for _, c in items]

    def lookup_date(self, header: Header) -> str:
        self.check_defined(header)
        raw = ""
        for par in self.parameters:
            if par not in header:
                raise SelectionError(f"KeyError {par!r}")
            value = header[par].strip()
            if value == "UNDEFINED":
                raise SelectionError(f"UseAfter parameter {par!r} is UNDEFINED.")
            raw += value + " "
        raw = raw.strip()
        try:
            return reformat_date(raw)
        except DateError as exc:
            raise SelectionError(
                f"{self.short_name} Invalid date/time format for {self.parameters!r} value = {raw!r} "
                f"exception is {str(exc)!r}"
            ) from None

    def choose(self, header: Header) -> Any:
        date = self.lookup_date(header)
        index = bisect.bisect_right(self.keys, date) - 1
        if index < 0:
            raise LookupFailure(f"No selection <= {date!r}")
        return _after(self.short_name, self.choices[index], header)

    def merge(self, other: Choice) -> Node:
        if not isinstance(other, UseAfterNode):
            # crds' words: its merge reads the other side's selections.
            raise SelectionError(f"'{type(other).__name__}' object has no attribute '_selections'")
        own = list(zip(self.keys, self.choices))
        theirs = list(zip(other.keys, other.choices))
        merged: list[tuple[Any, Choice]] = []
        while own and theirs:
            if own[0][0] < theirs[0][0]:
                merged.append(own.pop(0))
            elif theirs[0][0] < own[0][0]:
                merged.append(theirs.pop(0))
            else:  # same date: the greater name, i.e. the newer file by CRDS naming, wins
                mine, yours = own.pop(0), theirs.pop(0)
                merged.append(mine if _ge(mine[1], yours[1]) else yours)
        merged.extend(own)
        merged.extend(theirs)
        return type(self)(self.parameters, merged)


def _ge(a: Choice, b: Choice) -> bool:
    try:
        return bool(a >= b)  # type: ignore[operator]
    except TypeError as exc:
        raise SelectionError(str(exc)) from None


def _after(short_name: str, choice: Choice, header: Header) -> Any:
    # crds' choose(): a nested lookup failure ends the (single) attempt with this summary.
    try:
        return _resolve(choice, header)
    except LookupFailure as exc:
        raise LookupFailure(f"All lookup attempts failed. last exception: {exc}") from None


def _f32(value: float) -> float:
    """numpy float32 rounding, which crds' ClosestTime/GeometricallyNearest compute in."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


class ClosestTimeNode(UseAfterNode):
    short_name = "ClosestTime"

    def choose(self, header: Header) -> Any:
        date = self.lookup_date(header)
        if not self.keys:
            raise SelectionError("attempt to get argmin of an empty sequence")
        try:
            target = _timestamp(date)
            diffs = [_f32(abs(target - _timestamp(reformat_date(key)))) for key in self.keys]
        except DateError as exc:
            raise SelectionError(str(exc)) from None
        return _after(self.short_name, self.choices[diffs.index(min(diffs))], header)


def _timestamp(date: str) -> float:
    import datetime

    moment = datetime.datetime.fromisoformat(date)
    return (moment - datetime.datetime(1970, 1, 1)).total_seconds()


_VERSION_RE = re.compile(r"^(\d{1,8}(\.\d{1,8}(\.\d{1,8})?)?)[a-zA-Z0-9_\+\-\.]{0,128}$")


def _version_key(version: str) -> tuple[int, ...]:
    match = _VERSION_RE.match(version)
    if not match:
        raise SelectionError(f"Invalid version string {version!r}")
    parts = tuple(int(x, base=10) for x in match.group(1).split(".")[:3])
    return parts + (3 - len(parts)) * (0,)


class VersionAfterNode(Node):
    short_name = "VersionAfter"

    def __init__(self, params: tuple[str, ...], table: dict[Any, Choice]) -> None:
        self.parameters = params
        self.parkey_map = {p: "*" for p in params}
        items = sorted((_version_key(str(k)), c) for k, c in table.items())
        self.keys = [k for k, _ in items]
        self.choices = [c for _, c in items]

    def choose(self, header: Header) -> Any:
        self.check_defined(header)
        try:
            version = glob_compress(".".join(header[p] for p in self.parameters))
        except KeyError as exc:
            raise SelectionError(f"KeyError {exc}") from None
        key = _version_key(version)
        index = bisect.bisect_right(self.keys, key) - 1
        if index < 0:
            raise LookupFailure(f"No selection <= {key!r}")
        return _after(self.short_name, self.choices[index], header)


def _number(short_name: str, name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SelectionError(f"{short_name} Invalid number for {name!r} value = {value!r}") from None


class NearestNode(Node):
    short_name = "GeometricallyNearest"

    def __init__(self, params: tuple[str, ...], table: dict[Any, Choice]) -> None:
        self.parameters = params
        items = sorted((condition_value(k), c) for k, c in table.items())
        self.keys = [k for k, _ in items]
        self.choices = [c for _, c in items]
        self.parkey_map = {p: sorted(set(self.keys)) for p in params}

    def choose(self, header: Header) -> Any:
        name = self.parameters[0]
        if name not in header:
            raise SelectionError(f"KeyError {name!r}")
        target = _f32(_number(self.short_name, name, header[name]))
        diffs = [_f32(abs(_f32(_number(self.short_name, name, k)) - target)) for k in self.keys]
        if not diffs:
            raise SelectionError("attempt to get argmin of an empty sequence")
        return _after(self.short_name, self.choices[diffs.index(min(diffs))], header)


class BracketNode(Node):
    short_name = "Bracket"

    def __init__(self, params: tuple[str, ...], table: dict[Any, Choice]) -> None:
        self.parameters = params
        self.parkey_map = {}
        try:
            items = sorted(table.items(), key=lambda kv: kv[0])
        except TypeError as exc:
            raise SelectionError(str(exc)) from None
        self.keys = [k for k, _ in items]
        self.choices = [c for _, c in items]

    def choose(self, header: Header) -> Any:
        name = self.parameters[0]
        if name not in header:
            raise SelectionError(f"KeyError {name!r}")
        value = _number(self.short_name, name, header[name])
        if not self.keys:
            raise SelectionError("list index out of range")
        index = 0
        while index < len(self.keys) and value > self.keys[index]:
            index += 1
        if index == len(self.keys):
            low = high = index - 1
        elif index == 0 or value == self.keys[index]:
            low = high = index
        else:
            low, high = index - 1, index
        try:
            first = _resolve(self.choices[low], header)
            second = first if low == high else _resolve(self.choices[high], header)
        except LookupFailure as exc:
            raise LookupFailure(f"All lookup attempts failed. last exception: {exc}") from None
        return (first, second)
