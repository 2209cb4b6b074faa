"""Slack Block Kit payloads for a notice, validated by slack_sdk and split to Slack's limits (pure)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from crdswatch.channels.slack import build_messages, neutralise_slack
from crdswatch.model import Notice
from crdswatch.render.view import ActivationView, NoticeView, RowView, SectionView, TableView, notice_view

__all__ = ["slack_blocks", "slack_payloads"]

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


def _section_text(s: SectionView) -> str:
    lines = [f"*{neutralise_slack(s.title)}*  ({neutralise_slack(s.rmaps)})"]
    lines += [("*" + neutralise_slack(n.text) + "*" if n.prominent else neutralise_slack(n.text))
              + f" ({neutralise_slack(n.line)})" for n in s.notes]
    for t in s.tables:
        lines.append(neutralise_slack(t.heading))
        lines += [_row_line(t, r) for r in t.rows]
        lines += [f"    ◦ {neutralise_slack(d.file)}: {neutralise_slack(d.text)}" for d in t.details]
    if s.catalog_note:
        lines.append(neutralise_slack(s.catalog_note))
    return "\n".join(lines)


def _activation_blocks(a: ActivationView) -> list[Block]:
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
    blocks += [_md(("*Important:* " if n.prominent else "") + neutralise_slack(f"{n.text} ({n.line})"))
               for n in a.notes]
    for s in a.sections:
        blocks += [DividerBlock(), _md(_section_text(s))]
    use = neutralise_slack(f"CRDS_CONTEXT={a.context}   or   crds sync --contexts {a.context}")
    blocks.append(_md(f"*Use it:* {use}"))
    return blocks


def slack_blocks(view: NoticeView) -> list[Block]:
    """All blocks of the notice, unsplit: `slack_payloads` cuts them into messages."""
    blocks: list[Block] = []
    for a in view.activations:
        blocks += _activation_blocks(a)
    why = f"Why you got this: {neutralise_slack(view.reason)}"
    if view.unsubscribe_url:
        why += f" · Unsubscribe: {neutralise_slack(view.unsubscribe_url)}"
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=why)]))
    return blocks


def slack_payloads(notice: Notice) -> list[dict[str, Any]]:
    """One or more `{"text", "blocks"}` payloads (≤50 blocks, ≤3,000 characters a section) losing no line."""
    view = notice_view(notice)
    return build_messages(neutralise_slack(view.subject), slack_blocks(view))
