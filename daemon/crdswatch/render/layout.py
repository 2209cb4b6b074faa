"""Plain-text layout for narrow screens: wrapping that respects file names, URLs and mode lists (pure).

Every line stays within WIDTH (78) characters except a single token that cannot be broken (a
URL, a file name). A list of match values (`A|B|C|...`) is a token that can: it breaks after a
`|`, and continuation lines are indented.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from crdswatch.render.common import WIDTH

__all__ = ["GLUE", "LIST_SHOWN", "block_lines", "glued", "pack", "short_values", "wrap"]

LIST_SHOWN = 8  # values of a long alternative list shown before "and N more"


def _pieces(word: str, room: int) -> list[str]:
    """Split a `|`- or `,`-joined word into pieces of at most `room` characters, after separators."""
    if len(word) <= room or not any(sep in word for sep in "|,"):
        return [word]
    pieces: list[str] = []
    current = ""
    for part in _split_keep(word):
        if current and len(current) + len(part) > room:
            pieces.append(current)
            current = ""
        current += part
    if current:
        pieces.append(current)
    return pieces


def _split_keep(word: str) -> list[str]:
    """`A|B|C` -> [`A|`, `B|`, `C`]: the separator stays with the piece before it."""
    parts: list[str] = []
    start = 0
    for i, ch in enumerate(word):
        if ch in "|,":
            parts.append(word[start:i + 1])
            start = i + 1
    if start < len(word):
        parts.append(word[start:])
    return parts


GLUE = "\ue000"  # a space that never breaks (a private-use character: no CRDS text uses one)


def glued(text: str) -> str:
    """`2019-07-30 15:06:02 UTC` kept on one line by `wrap`."""
    return text.replace(" ", GLUE)


def wrap(text: str, indent: str = "", subsequent: str | None = None, width: int = WIDTH) -> list[str]:
    """Greedy wrap on spaces; long value lists break after `|`; other long words stay whole."""
    return list(_wrapped(text, indent, subsequent, width))


@lru_cache(maxsize=4096)  # the notices of one activation (and of its neighbours) wrap the same lines
def _wrapped(text: str, indent: str, subsequent: str | None, width: int) -> tuple[str, ...]:
    return tuple(line.replace(GLUE, " ") for line in _wrap(text, indent, subsequent, width))


def _wrap(text: str, indent: str, subsequent: str | None, width: int) -> list[str]:
    more = indent if subsequent is None else subsequent
    lines: list[str] = []
    current = indent
    fresh = True  # nothing but indentation on the current line yet
    room = width - len(more)
    for word in text.split():
        if len(word) <= room:  # the common word, one piece (a fan-out wraps each recipient's footer)
            if fresh:
                current, fresh = current + word, False
            elif len(current) + 1 + len(word) > width:
                lines.append(current)
                current = more + word
            else:
                current += " " + word
            continue
        for n, piece in enumerate(_pieces(word, room)):
            glue = "" if n or fresh else " "
            if not fresh and len(current) + len(glue) + len(piece) > width:
                lines.append(current)
                current, glue = more, ""
            current += glue + piece
            fresh = False
    lines.append(current if not fresh else current.rstrip())
    return lines


def short_values(value: str, archive: bool) -> str:
    """A long `A|B|...` list of match values, summarised when the archive page has it in full."""
    values = value.split("|")
    if not archive or len(values) <= 2 * LIST_SHOWN:
        return value
    return f"{'|'.join(values[:LIST_SHOWN])}|… ({len(values)} values, all on the archive page)"


def pack(units: Sequence[str], indent: str, subsequent: str | None = None, width: int = WIDTH) -> list[str]:
    """Lay out `units` (each a fact such as `USEAFTER 2000-01-01 00:00:00`) two spaces apart,
    never splitting one that fits on a line; one that does not is wrapped on its own."""
    more = indent if subsequent is None else subsequent
    lines: list[str] = []
    current = ""
    for unit in units:
        lead = more if lines or current else indent
        if current and len(current) + 2 + len(unit) <= width:
            current += "  " + unit
            continue
        if current:
            lines.append(current)
            lead = more
        if len(lead) + len(unit) <= width:
            current = lead + unit
        else:
            *full, current = wrap(unit, lead, more + "  ", width)
            lines += full
    if current:
        lines.append(current)
    return lines


def block_lines(first: str, facts: Sequence[str], indent: str = "    ") -> list[str]:
    """One file as a block: its name (and what happened) on a line, then its facts, packed."""
    lines = wrap(first, indent, indent + "    ")
    if facts:
        lines += pack(facts, indent + "  ")
    return lines
