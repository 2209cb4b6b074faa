"""One field of a Match key against one header value: 1 (matches), 0 (don't care), -1 (no).

The same matcher kinds crds builds (crds.core.selectors.matcher): literals, `{literal}`,
`(regex)`, `A|B*` globs, `#relations#` with AND/OR, `BETWEEN lo hi`, `NOT ...`, `N/A`, `>x`.
"""

from __future__ import annotations

import fnmatch
import re

from crdswatch.contexts.crdsvalues import glob_list

__all__ = ["Matcher", "make_matcher"]

_INEQUALITY_RE = re.compile(r"^([><]=?)\s*([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)")


class Matcher:
    """Plain equality; `literal` is set so Match tables can index rows by it."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.literal: str | None = key

    def match(self, value: str) -> int:
        if value == self.key or value == "*":
            return 1
        if value == "N/A":
            return 0
        return -1


class RegexMatcher(Matcher):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.literal = None
        try:
            self._regex = re.compile(key)
        except re.error as exc:
            raise ValueError(f"bad regular expression {key!r}: {exc}") from None

    def match(self, value: str) -> int:
        result = super().match(value)
        if result != -1:
            return result
        return 1 if self._regex.match(value) else -1


class GlobMatcher(RegexMatcher):
    def __init__(self, key: str) -> None:
        super().__init__("^(" + "|".join(fnmatch.translate(part) for part in glob_list(key)) + ")$")


class InequalityMatcher(Matcher):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.literal = None
        parts = _INEQUALITY_RE.match(key)
        if parts is None:
            raise ValueError(f"bad relation {key!r}")
        self._operator = parts.group(1)
        self._value = float(parts.group(2))

    def match(self, value: str) -> int:
        result = super().match(value)
        if result != -1:
            return result
        try:
            number = float(value)
        except ValueError:
            return -1
        op, bound = self._operator, self._value
        ok = number > bound if op == ">" else number < bound if op == "<" else (
            number >= bound if op == ">=" else number <= bound
        )
        return 1 if ok else -1


class BinaryMatcher(Matcher):
    def __init__(self, key: str, operator: str) -> None:
        super().__init__(key)
        self.literal = None
        self._operator = operator.strip()
        if key.strip().startswith("#"):
            key = key.strip()[1:-1]
        parts = [x.strip() for x in key.split(operator)]
        if len(parts) < 2:
            raise ValueError(f"bad relation {key!r}")
        self._first = make_matcher(parts[0])
        self._second = make_matcher(parts[1])

    def match(self, value: str) -> int:
        value = value.upper()
        result = super().match(value)
        if result != -1:
            return result
        first, second = self._first.match(value) == 1, self._second.match(value) == 1
        ok = (first and second) if self._operator == "AND" else (first or second)
        return 1 if ok else -1


class NaMatcher(Matcher):
    def __init__(self) -> None:
        super().__init__("N/A")
        self.literal = None

    def match(self, value: str) -> int:
        return 0


class NotMatcher(Matcher):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.literal = None
        self._inner = make_matcher(key[len("NOT "):].strip())

    def match(self, value: str) -> int:
        return -self._inner.match(value)


def make_matcher(key: str) -> Matcher:
    """The matcher for one conditioned key field, chosen in crds' order of precedence."""
    if key.startswith("(") and key.endswith(")"):
        return RegexMatcher(key[1:-1])
    if key.startswith("{") and key.endswith("}"):
        return Matcher(key[1:-1])
    if key.startswith("#") and key.endswith("#"):
        key = key.upper()
        if " AND " in key:
            return BinaryMatcher(key, "AND")
        if " OR " in key:
            return BinaryMatcher(key, "OR")
        return make_matcher(key[1:-1])
    if key.upper().startswith("BETWEEN"):
        parts = key.split()
        if len(parts) != 3 or float(parts[1]) > float(parts[2]):
            raise ValueError(f"Invalid between relation {key!r} should be 'between lower_bound upper_bound'")
        return BinaryMatcher(">=" + parts[1] + " AND <" + parts[2], "AND")
    if key.upper().startswith("NOT "):
        return NotMatcher(key)
    if "|" in key or "*" in key:
        return GlobMatcher(key)
    if key == "N/A":
        return NaMatcher()
    if key.startswith((">", "<")):
        return InequalityMatcher(key)
    return Matcher(key)
