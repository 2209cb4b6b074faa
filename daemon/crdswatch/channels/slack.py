"""Slack incoming-webhook channel, plus pure helpers that keep messages inside Slack's limits."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
from slack_sdk.models.blocks import Block, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject, TextObject

from crdswatch.channels.base import Clock, post_bytes, raise_for_status, utc_now

__all__ = [
    "MAX_BLOCKS",
    "SECTION_TEXT_LIMIT",
    "SlackChannel",
    "build_messages",
    "neutralise_slack",
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


class SlackChannel:
    """Posts one rendered payload to a Slack incoming webhook; raises typed delivery errors."""

    kind: ClassVar[str] = "slack"

    def __init__(self, webhook_url: str, http_client: httpx.AsyncClient, *, clock: Clock = utc_now) -> None:
        self._url = webhook_url
        self._client = http_client
        self._clock = clock

    def __repr__(self) -> str:
        return "SlackChannel(webhook_url=<redacted>)"  # the URL itself is the credential

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Post `{"text": ..., "blocks": [...]}`.

        Slack answers 200 "ok"; 429 carries Retry-After; other 4xx name the problem in the body
        (`invalid_payload`, `no_service`, `channel_is_archived`, ...) and retrying cannot help.
        """
        body = json.dumps(dict(payload), ensure_ascii=False).encode()
        headers = {"content-type": "application/json; charset=utf-8"}
        response = await post_bytes(self._client, self._url, body, headers, "slack webhook")
        raise_for_status(response, "slack webhook", self._clock())
