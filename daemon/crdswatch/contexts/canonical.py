"""The layout `crds` writes mappings in, read a line at a time (pure: no I/O).

A CRDS mapping is a few Python assignments written one entry a line. Consecutive versions of a
mapping share nearly all their lines (the JWST history: ~7,000 distinct selector lines in 42,000),
and `ast.parse` was three quarters of what parsing a mapping cost, so each distinct line is read
once and remembered; a mapping in this layout is then mostly dictionary look-ups.

Only a strict subset of Python is read here, one in which a line is a whole number of tokens and
means the same thing wherever it is:

- the text holds printable ASCII and newlines only (no tab, form feed, carriage return, NUL: no
  ambiguity about where a line ends or how it is indented), and no line continues another (a
  backslash is no token here, and a string is `'...'` without a quote or a backslash inside, so
  it cannot span lines and its value is the characters between its quotes);
- a line is blank, a comment after spaces, or a sequence of these tokens: such strings, names,
  decimal numbers (`12`, `1.5`, `-3.0`), ( ) { } : , = and spaces (nothing else: no other
  number, no string prefix, no trailing comment);
- line shapes: `name = {` and `name = Kind({` at column 0 open a statement; `key : value [,]`,
  `key : {` and `key : Kind({` inside a dict; `}` `})` [,] close. `key` and `value` are strings or
  parenthesised tuples of them on that line, read as Python does: `('A')` is 'A', `('A',)` and
  `()` tuples. A missing comma between entries, a closer that does not match its opener, a comma
  after a statement's last closer (a tuple) or an unclosed bracket: not this layout.

Anything else gives None, and the caller parses the whole text with `ast` as before, so every
check and error message of the full parse applies unchanged: this reader only ever answers for
texts whose full parse it can reproduce, and leaves every judgement on values (which names,
kinds, keys and depths are allowed) to its caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Call", "forget", "read_sections", "sort_key"]

# Outside the layout: any character but printable ASCII and newline.
_FOREIGN = re.compile(r"[^\x20-\x7e\n]")
# A line of the layout's tokens and spaces (a name is taken whole: possessive), and those tokens.
# Once the first matches, the second cuts the line as Python's tokenizer does: each token is fixed
# by its first character (a string ends at the next quote, a name at the next non-name character).
_LINE = re.compile(r"(?: *+(?:'[^'\\]*+'|[A-Za-z_][A-Za-z0-9_]*+|[0-9]{1,40}+\.[0-9]{1,40}+|0|[1-9][0-9]{0,40}+"
                   r"|[(){}:,=-]))*+ *+")
_TOKEN = re.compile(r"'[^'\\]*'|[A-Za-z_][A-Za-z0-9_]*|[0-9]{1,40}\.[0-9]{1,40}|0|[1-9][0-9]{0,40}|[(){}:,=-]")
# `'key' : 'value'` and a comma or not: the tokens and the shape below, in one step.
_SIMPLE_ENTRY = re.compile(r" *'([^'\\]*)' *: *'([^'\\]*)' *(,?) *")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Parentheses in one key or value, and brackets open at once: real mappings use two and three;
# Python's own limit is 200 (its tokenizer's MAXLEVEL), so nothing read here is beyond it.
_MAX_NESTING = 16
# Distinct lines remembered, across mappings and threads: ~7,000 for the whole JWST history. Past
# this many (a hostile server's endless new lines) the memo starts again instead of growing.
_MEMO_MAX = 50_000


def sort_key(key: Any) -> tuple[str, ...]:
    """crds sorts selections by the str() of each key field; keeping its order keeps its output."""
    return tuple([str(f) for f in key]) if isinstance(key, tuple) else (str(key),)


def _plain_key(key: Any) -> bool:
    """A key every field of which is a plain match value (no regular expression, no match set):
    one the caller's key check would pass without looking (mappings._check_key)."""
    fields = key if type(key) is tuple else (key,)
    for f in fields:  # a loop, not all() over a generator: this runs for every new line of a mapping
        if type(f) is not str or (len(f) > 1 and f[0] == "(" and f[-1] == ")"):
            return False
    return True


@dataclass(slots=True)
class Call:
    """`Kind({...})` as written: its entries in order, each (key, sort_key(key), plain key?, value)."""

    kind: str
    entries: list[tuple[Any, tuple[str, ...], bool, str | Call]] = field(default_factory=list)


# Line events, tuples whose first field says which (small ints: the loop below compares them per line):
_ENTRY, _CLOSE, _OPEN, _SECTION, _SKIP = range(5)
# (_ENTRY, comma?, key, value, (key, sort_key(key), plain key?, value) as a Call keeps it, value is a str?)
# (_CLOSE, `})`?, comma?)
# (_OPEN, key, kind or None (`{`), (key, sort_key(key), plain key?))
# (_SECTION, name, kind or None)   `name = {`  /  `name = Kind({`
# (_SKIP,)
_MEMO: dict[str, tuple[Any, ...] | None] = {}


def _literal(tokens: list[str], i: int, depth: int) -> tuple[Any, int]:
    """A string or a parenthesised tuple of them starting at tokens[i], as Python reads it; the
    value and the index after it. IndexError or ValueError: not one."""
    tok = tokens[i]
    if tok[0] == "'":
        return tok[1:-1], i + 1
    if tok[0].isdigit():  # `12` or `1.5`: a decimal int without leading zeros, or a float, as Python reads them
        return (float(tok) if "." in tok else int(tok)), i + 1
    if tok == "-" and tokens[i + 1][0].isdigit():  # a negated number, as the literal walk allows
        value, i = _literal(tokens, i + 1, depth)
        return -value, i
    if tok != "(" or depth >= _MAX_NESTING:
        raise ValueError(tok)
    i += 1
    if tokens[i] == ")":
        return (), i + 1
    elts: list[Any] = []
    comma = False
    while True:
        value, i = _literal(tokens, i, depth + 1)
        elts.append(value)
        if tokens[i] == ")":
            break
        if tokens[i] != ",":
            raise ValueError(tokens[i])
        comma = True
        i += 1
        if tokens[i] == ")":
            break
    # `(x)` is x itself; a comma makes a tuple
    return (tuple(elts) if comma else elts[0]), i + 1


def _classify(line: str) -> tuple[Any, ...] | None:
    """What one line is in the layout (module docstring), or None."""
    stripped = line.lstrip(" ")
    if not stripped or stripped[0] == "#":
        return (_SKIP,)  # blank, or a comment: inside brackets or not, Python skips the line
    simple = _SIMPLE_ENTRY.fullmatch(line)
    if simple is not None:  # most new lines: a header's name, sha1sum, derived_from
        key, value, comma = simple.groups()
        return (_ENTRY, bool(comma), key, value, (key, sort_key(key), _plain_key(key), value), True)
    if not _LINE.fullmatch(line):
        return None  # a character no token of the layout starts with, an unfinished string
    try:
        return _shape(line, _TOKEN.findall(line))
    except (IndexError, ValueError):
        return None


def _shape(line: str, tokens: list[str]) -> tuple[Any, ...] | None:
    first = tokens[0]
    if first == "}":
        call = len(tokens) > 1 and tokens[1] == ")"
        rest = tokens[2:] if call else tokens[1:]
        if rest not in ([], [","]):
            return None
        return (_CLOSE, call, bool(rest))
    if _NAME.fullmatch(first) and len(tokens) > 1 and tokens[1] == "=":
        if line[0] == " ":
            return None  # an indented statement: Python's IndentationError
        kind = _opener(tokens, 2)
        return None if kind is False else (_SECTION, first, kind)
    key, i = _literal(tokens, 0, 0)
    if tokens[i] != ":":
        return None
    i += 1
    if tokens[i] == "{" or (_NAME.fullmatch(tokens[i]) and tokens[i + 1] == "("):
        kind = _opener(tokens, i)
        return None if kind is False else (_OPEN, key, kind, (key, sort_key(key), _plain_key(key)))
    value, i = _literal(tokens, i, 0)
    rest = tokens[i:]
    if rest not in ([], [","]):
        return None
    return (_ENTRY, bool(rest), key, value, (key, sort_key(key), _plain_key(key), value), type(value) is str)


def _opener(tokens: list[str], i: int) -> str | None | bool:
    """`{` (None) or `Kind({` (Kind) ending the line at tokens[i]; False if neither."""
    if tokens[i:] == ["{"]:
        return None
    if _NAME.fullmatch(tokens[i]) and tokens[i + 1:] == ["(", "{"]:
        return tokens[i]
    return False


def forget() -> None:
    """Drop the remembered lines: a backfill leaves ~6 MB of them (the JWST history's ~11,500),
    and the next poll's few new mappings need little of it."""
    _MEMO.clear()


def read_sections(text: str) -> dict[str, dict[Any, Any] | Call] | None:
    """The statements of a mapping in the layout, name -> value (a later one of the same name
    replaces an earlier, as assignments do): a plain `{...}` as a dict (what the full parse's
    literal walk gives), a `Kind({...})` as a Call. None: not the layout (module docstring)."""
    if _FOREIGN.search(text):
        return None
    memo = _MEMO
    if len(memo) > _MEMO_MAX:
        memo.clear()
    found: dict[str, dict[Any, Any] | Call] = {}
    # Open brackets, innermost last: [container, is a Call?, needs a closer next (its last entry
    # had no comma), its key in its parent as a Call entry starts (key, order, plain) or the section name].
    stack: list[list[Any]] = []
    for line in text.split("\n"):
        event = memo.get(line)
        if event is None:
            if line in memo:
                return None
            event = memo[line] = _classify(line)
            if event is None:
                return None
        what = event[0]
        if what == _ENTRY:  # most lines
            if not stack:
                return None
            top = stack[-1]
            if top[2]:
                return None  # the previous entry had no comma: Python's SyntaxError
            if top[1]:
                if not event[5]:
                    return None  # a selector leaf that is not a name: an error of the full parse
                top[0].entries.append(event[4])
            else:
                top[0][event[2]] = event[3]
            top[2] = not event[1]
        elif what == _SKIP:
            continue
        elif what == _CLOSE:
            if not stack:
                return None
            container, call, _needs_closer, key = stack.pop()
            if call != event[1]:
                return None  # `})` after `{`, or `}` after `Kind({`
            if not stack:
                if event[2]:
                    return None  # `}),` ends a statement: the value is a tuple
                found[key] = container
                continue
            parent = stack[-1]
            if call:
                parent[0].entries.append((*key, container))
            else:
                parent[0][key[0]] = container
            parent[2] = not event[2]
        elif what == _OPEN:
            if not stack or stack[-1][2] or len(stack) >= _MAX_NESTING:
                return None
            call = event[2] is not None
            if stack[-1][1] != call:
                return None  # a call in a plain dict, a plain dict under a call: errors of the full parse
            stack.append([Call(event[2]) if call else {}, call, False, event[3]])
        else:  # _SECTION
            if stack:
                return None
            call = event[2] is not None
            stack.append([Call(event[2]) if call else {}, call, False, event[1]])
    return None if stack else found
