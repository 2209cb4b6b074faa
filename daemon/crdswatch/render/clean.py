"""The one text cleaner: server text made safe for every reader (pure).

Everything that reaches a person or a parser from CRDS (descriptions, comments, file names,
header values) passes through `clean_text` before a renderer, the Atom feed, a webhook body or
the terminal sees it:

- ANSI escape sequences (CSI, OSC, two-byte ESC x) are removed whole: a terminal would obey them;
- other C0/C1 control characters become a space (XML 1.0 forbids them, so /feed.atom stays
  well-formed); CR LF and lone CR become LF; tab and LF stay;
- bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069, LRM/RLM/ALM) and zero-width
  characters (U+200B-200D, U+2060, U+FEFF, U+180E) are removed: they make text read differently
  from what it says ("Trojan Source");
- lone surrogates (U+D800-DFFF, from an escape such as '\\ud800' in a mapping) and the
  non-characters U+FFFE/U+FFFF become U+FFFD: they cannot be encoded as UTF-8, which would make
  every channel's send fail;
- line and paragraph separators and NBSP become a space (they defeat line wrapping).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["clean_data", "clean_line", "clean_text"]

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]|)|\x9b[0-?]*[ -/]*[@-~]?")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u061c\ufeff\u180e]")
_BROKEN = re.compile("[\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\xa0]")


def clean_text(text: str | None) -> str:
    """`text` safe to show or embed (see the module doc); None becomes ''. Leading/trailing space goes."""
    if not text:
        return ""
    if text.isascii() and text.isprintable():  # the common case, decided in C: nothing to remove
        return text.strip()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ANSI.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _BROKEN.sub("\ufffd", text)
    return _CONTROL.sub(" ", text).strip()


def clean_line(text: str | None) -> str:
    """`clean_text` on one line: newlines and tabs become spaces too, runs of space collapse."""
    return " ".join(clean_text(text).split())


def clean_data(value: Any) -> Any:
    """Every string inside JSON-able data cleaned (keys too); other values unchanged."""
    if isinstance(value, str):
        return clean_text(value) if _needs(value) else value
    if isinstance(value, Mapping):
        return {_clean_leaf(k): _clean_leaf(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_leaf(v) for v in value]
    return value


_ATOMS = frozenset({int, float, bool, type(None)})


def _clean_leaf(value: Any) -> Any:
    # The common leaves (numbers, None, plain ASCII text) are decided here, in C calls, without
    # recursing: `outbox --json --limit 10000` has some 350,000 of them.
    kind = type(value)
    if kind is str:
        return value if value.isascii() and value.isprintable() and value == value.strip() else clean_data(value)
    return value if kind in _ATOMS else clean_data(value)


def _needs(text: str) -> bool:
    if text.isascii() and text.isprintable():  # the common case, decided in C
        return text != text.strip()
    return clean_text(text) != text
