"""Plain-text report of a context diff, grouped by instrument and reference type (pure)."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from crdswatch.model import Change, DiffResult
from crdswatch.render.clean import clean_line

__all__ = ["format_diff", "format_history", "format_table"]


def format_diff(result: DiffResult) -> str:
    """Readable summary for people; `--json` carries the same facts for scripts.

    One header per instrument and one per reference type: a mapping replaced one level up (the
    imap naming a new rmap) is that header's `old -> new`, not a line of its own.
    """
    if not result.changes:
        return f"{result.old} -> {result.new}: no differences\n"
    lines = [f"{result.old} -> {result.new}: {len(result.changes)} changes", ""]
    groups: dict[str, dict[str, list[Change]]] = defaultdict(lambda: defaultdict(list))
    for change in result.changes:
        groups[(change.instrument or "(context)").upper()][(change.reftype or "").upper()].append(change)
    for instrument in sorted(groups):
        types = groups[instrument]
        own = [c for c in types.get("", []) if _names_mapping(c, instrument)]
        lines.append(instrument + "".join(f"  {_level_text(c)}" for c in own))
        for reftype in sorted(types):
            changes = [c for c in types[reftype] if not (reftype == "" and c in own)]
            if changes:
                lines.extend(_section(reftype, changes))
        lines.append("")
    return _clean_lines(lines)


def _clean_lines(lines: list[str]) -> str:
    """Server text goes to a terminal: every line through the one cleaner (escape sequences, bidi...)."""
    return "\n".join(line if line.isascii() and line.isprintable() else _keep_indent(line) for line in lines)


def _keep_indent(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip(" "))]
    return indent + clean_line(line)


def _names_mapping(change: Change, instrument: str) -> bool:
    """The pmap's change of this instrument's imap: said on the instrument's header line."""
    return (change.level == "pipeline" and change.action == "replaced"
            and bool(change.match) and change.match[0].upper() == instrument)


def _section(reftype: str, changes: list[Change]) -> list[str]:
    """`  DARK  old.rmap -> new.rmap`, then the rmap's own changes and one table of its rules."""
    header = next((c for c in changes if c.level == "instrument" and c.action != "header"
                   and c.match and c.match[0].upper() == reftype), None)
    level = [c for c in changes if c.level != "reference" and c is not header]
    rules = [c for c in changes if c.level == "reference"]
    if header is not None:
        title = _level_text(header)
    elif rules:
        title = f"{rules[0].old_mapping} -> {rules[0].new_mapping}"
    else:
        title = ""
    out = [f"  {reftype or '(rules)'}  {title}".rstrip()]
    for change in level:
        what = change.match[0].upper() if change.match else ""
        text = _level_text(change)
        out.append(f"    {text}" if what == reftype else f"    {what}: {text}")
    if rules:
        out.extend("    " + row for row in format_table(rules))
    return out


def _level_text(change: Change) -> str:
    if change.action == "replaced":
        return f"{change.old_file} -> {change.new_file}"
    if change.action == "header":
        return f"header {change.key}: {change.old_value!r} -> {change.new_value!r}"
    return f"{change.action} {change.old_file or change.new_file}"


def _rule_row(change: Change) -> list[str]:
    if change.action == "header":
        return ["header", "", f"{change.key}: {change.old_value!r} -> {change.new_value!r}", ""]
    if change.action in ("parameters", "classes"):
        return [change.action, "", f"{change.old_value} -> {change.new_value}", ""]
    if change.action == "replaced":
        files = f"{change.old_file} -> {change.new_file}"
    else:
        files = str(change.old_file or change.new_file)
    modes = " ".join(f"{n}={v}" for n, v in zip(change.parameters, change.match))
    word = change.action if change.rule in (None, "terminal") else f"{change.action} rule"
    return [word, change.useafter or "", files, modes]


def format_table(changes: Iterable[Change]) -> list[str]:
    rows = [["ACTION", "USEAFTER", "FILE", "MODES"]] + [_rule_row(c) for c in changes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:3])) + "  " + r[3] for r in rows
    ]


def format_history(rows: list[dict[str, Any]]) -> str:
    """Activations oldest first: date, context, what changed (when known) and the reason given."""
    out: list[str] = []
    for row in rows:
        out.append(f"{row['date'][:19].replace('T', ' ')}  {row['context']}")
        affected = row.get("affected")
        if affected:
            summary = "; ".join(f"{i.upper()}: {', '.join(t) or '(context)'}" for i, t in affected.items())
            out.extend(textwrap.wrap(f"changed: {summary}", 96, initial_indent="    ", subsequent_indent="      "))
        if row.get("description"):
            out.extend(textwrap.wrap(clean_line(row["description"]), 96, initial_indent="    ",
                                     subsequent_indent="    "))
    return _clean_lines(out) + "\n"
