"""Slack Block Kit payloads for a notice, validated by slack_sdk and split to Slack's limits (pure).

Slack's limits (50 blocks a message, 3,000 characters a section) and its three control characters
are handled here, so the channel only posts what it is given.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject, TextObject

from crdswatch.model import Notice
from crdswatch.notices.summary import summarise
from crdswatch.render.budget import SLACK_BUDGET, Budget, Detail, fit
from crdswatch.render.common import plural
from crdswatch.render.view import ActivationView, NoticeView, RowView, SectionView, TableView, notice_view

__all__ = [
    "MAX_BLOCKS",
    "SECTION_TEXT_LIMIT",
    "build_messages",
    "neutralise_slack",
    "slack_blocks",
    "slack_payloads",
    "split_blocks",
    "split_section_text",
]

MAX_BLOCKS = 50  # per message, Slack Block Kit
SECTION_TEXT_LIMIT = 3000  # characters per section text, Slack Block Kit

BlockLike = Block | Mapping[str, Any]


def neutralise_slack(text: str) -> str:
    """Escape Slack's three control characters so untrusted text cannot ping, mention or link.

    `&` goes first, otherwise the `&` of the entities produced for `<` and `>` would be escaped.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut_point(line: str, limit: int) -> int:
    """Where to cut an over-long line: at `limit`, but never through an `&amp;`-style entity."""
    cut = limit
    amp = line.rfind("&", max(0, cut - 5), cut)
    if amp > 0 and ";" not in line[amp:cut]:
        cut = amp
    return cut


def _hard_split(line: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while len(line) > limit:
        cut = _cut_point(line, limit)
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def split_section_text(text: str, limit: int = SECTION_TEXT_LIMIT) -> list[str]:
    """Split `text` on line boundaries into chunks of at most `limit` characters.

    Joining the chunks with newlines gives back `text` unless a single line exceeds `limit`;
    only such a line is cut mid-line (and then between characters, losing nothing).
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    current: str | None = None
    for line in text.split("\n"):
        for piece in _hard_split(line, limit):
            if current is not None and len(current) + 1 + len(piece) <= limit:
                current = f"{current}\n{piece}"
                continue
            if current is not None:
                chunks.append(current)
            current = piece
    chunks.append(current or "")
    return chunks


def _as_block(block: BlockLike) -> Block:
    if isinstance(block, Block):
        return block
    parsed = Block.parse(dict(block))
    if parsed is None:
        raise ValueError(f"not a Slack block: {block!r}")
    return parsed


def _split_section(block: SectionBlock, limit: int) -> list[Block]:
    text = block.text
    if not isinstance(text, TextObject) or len(text.text) <= limit:
        return [block]
    pieces = split_section_text(text.text, limit)
    kind = MarkdownTextObject if isinstance(text, MarkdownTextObject) else PlainTextObject
    # Fields and accessory belong to the first piece; the rest are plain continuations.
    first = copy.copy(block)
    first.text = kind(text=pieces[0])
    return [first, *(SectionBlock(text=kind(text=piece)) for piece in pieces[1:])]


def split_blocks(
    blocks: Sequence[BlockLike], max_blocks: int = MAX_BLOCKS, text_limit: int = SECTION_TEXT_LIMIT
) -> list[list[dict[str, Any]]]:
    """Group blocks into messages of at most `max_blocks`, splitting over-long sections first.

    Every block goes through slack_sdk's `to_dict()`, which validates it (lengths, required
    fields) and raises SlackObjectFormationError rather than letting Slack reject the post.
    """
    expanded: list[Block] = []
    for raw in blocks:
        block = _as_block(raw)
        expanded.extend(_split_section(block, text_limit) if isinstance(block, SectionBlock) else [block])
    as_dicts = [block.to_dict() for block in expanded]
    return [as_dicts[i : i + max_blocks] for i in range(0, len(as_dicts), max_blocks)] or [[]]


def build_messages(text: str, blocks: Sequence[BlockLike]) -> list[dict[str, Any]]:
    """Webhook payloads for one notice: `text` is the notification fallback, blocks are split."""
    groups = split_blocks(blocks)
    if len(groups) == 1:
        return [{"text": text, "blocks": groups[0]}]
    total = len(groups)
    return [
        {"text": text if n == 1 else f"{text} (part {n}/{total})", "blocks": group}
        for n, group in enumerate(groups, start=1)
    ]


_HEADER_LIMIT = 150  # Block Kit header text; the full facts follow in sections


def _md(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


# Columns shown as `NAME value`; other columns except file, action and modes are match parameters.
_LABELLED = frozenset({"USEAFTER", "pedigree", "change level"})


def _row_line(t: TableView, r: RowView) -> str:
    parts = []
    for column, cell in zip(t.columns, r.cells):
        if column == "file":
            parts.append(f"*{neutralise_slack(cell)}*")
        elif column in ("action", "modes"):
            parts.append(neutralise_slack(cell))
        else:
            parts.append(neutralise_slack(f"{column} {cell}" if column in _LABELLED else f"{column}={cell}"))
    if r.url:
        parts.append(neutralise_slack(r.url))
    return "• " + " · ".join(parts)


def _section_text(s: SectionView, a: ActivationView, budget: str) -> str:
    lines = [f"*{neutralise_slack(s.title)}*  ({neutralise_slack(s.rmaps)})"]
    if s.why:
        lines.append(f"_Why: {neutralise_slack(s.why)}_")
    lines += [("*" + neutralise_slack(n.text) + "*" if n.prominent else neutralise_slack(n.text))
              + f" ({neutralise_slack(n.line)})" for n in s.notes]
    for t in s.tables:
        lines.append(neutralise_slack(t.heading))
        lines += [_row_line(t, r) for r in t.rows]
        if t.hidden:
            lines.append(neutralise_slack(f"… and {plural(t.hidden, 'more row')} on {a.more_where}: {a.more_url}"))
        lines += [f"    ◦ {neutralise_slack(d.file)}: {neutralise_slack(d.text)}" for d in t.details]
    if s.catalog_note:
        lines.append(neutralise_slack(s.catalog_note))
    return "\n".join(lines)


def _activation_blocks(a: ActivationView, budget: str) -> list[Block]:
    header = neutralise_slack(f"CRDS {a.observatory}: {a.what}")
    facts = (f"*{neutralise_slack(a.state.capitalize())} context* {neutralise_slack(a.context)} · "
             f"*activated* {neutralise_slack(a.date)} · *previous* {neutralise_slack(a.previous)}\n"
             f"*What changed:* {neutralise_slack(a.headline)}\n{neutralise_slack(a.context_url)}")
    reason = "\n".join("> " + neutralise_slack(line) for line in a.description.split("\n"))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=header[:_HEADER_LIMIT])),
        _md(facts),
        _md(f"*Reason given at activation:*\n{reason}"),
    ]
    blocks += [_md(neutralise_slack(item)) for item in a.announcements]
    blocks += [_md(("*Important:* " if n.prominent else "") + neutralise_slack(f"{n.text} ({n.line})"))
               for n in a.notes]
    # Sections share blocks (split at 3,000 characters on line boundaries), so a notice with a
    # hundred short sections is a few blocks, not two hundred.
    texts = [_section_text(s, a, budget) for s in a.sections]
    if texts:
        blocks += [DividerBlock(), _md("\n\n".join(texts))]
    use = neutralise_slack(f"CRDS_CONTEXT={a.context}   or   crds sync --contexts {a.context}")
    archive = f"\n*Archive:* {neutralise_slack(a.archive_url)}" if a.archive_url else ""
    blocks.append(_md(f"*Use it:* {use}{archive}"))
    return blocks


def _overview_blocks(view: NoticeView) -> list[Block]:
    rows = view.overview
    lines = [f"*Overview: {plural(len(rows), 'activation')}, {rows[0].date} to {rows[-1].date}*"]
    for r in rows:
        counts = f"{r.new} new · {r.replaced} replaced · {r.removed} removed · {r.other} other"
        lines.append(neutralise_slack(f"• {r.context} ({r.date}) {', '.join(r.instruments) or '(context)'}: {counts}"))
    if view.folded:
        lines.append(neutralise_slack(
            f"Only the first {plural(len(view.activations), 'activation')} follow in full, to keep this notice within "
            f"{view.budget}; the other {len(view.folded)} are in this overview only"
            + (f" (archive pages: {view.folded[0].archive_url} and so on)." if view.folded[0].archive_url else ".")))
    return [_md("\n".join(lines))]


def slack_blocks(view: NoticeView) -> list[Block]:
    """All blocks of the notice, unsplit: `slack_payloads` cuts them into messages."""
    blocks: list[Block] = []
    if view.banner:
        blocks.append(_md(f":warning: *{neutralise_slack(view.banner)}*"))
    if view.budget:
        blocks.append(_md(neutralise_slack(f"Shortened to stay within {view.budget}: tables show their first rows "
                                           "only; every row is on the archive page.")))
    if view.overview:
        blocks += _overview_blocks(view)
    for a in view.activations:
        blocks += _activation_blocks(a, view.budget)
    why = f"Why you got this: {neutralise_slack(view.reason)}"
    if view.unsubscribe_url:
        why += f" · Unsubscribe: {neutralise_slack(view.unsubscribe_url)}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=why)]))
    return blocks


def slack_payloads(notice: Notice, budget: Budget = SLACK_BUDGET) -> list[dict[str, Any]]:
    """One or more `{"text", "blocks"}` payloads (≤50 blocks, ≤3,000 characters a section), within
    `budget`: a longer notice keeps its overview and the first rows of each section, and links
    to the rest. Splitting never loses a line."""
    summaries = [summarise(d) for d in notice.activations]

    def build(detail: Detail) -> list[dict[str, Any]]:
        view = notice_view(notice, detail, summaries)
        return build_messages(neutralise_slack(view.subject), slack_blocks(view))

    def size(payloads: list[dict[str, Any]]) -> tuple[int, int]:
        return len(json.dumps(payloads, ensure_ascii=False).encode()), len(payloads)

    return fit(build, size, budget, len(notice.activations))
