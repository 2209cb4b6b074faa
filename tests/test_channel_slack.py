"""Slack channel against a real loopback receiver, plus the pure splitting and escaping helpers."""

# Fixtures are imported by name and then requested as parameters, which pyflakes calls
# redefinition (F811); listing the module in conftest's pytest_plugins would make this unneeded.
# ruff: noqa: F811

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from crdswatch.channels import ChannelPausedError, SlackChannel
from crdswatch.channels.base import parse_retry_after
from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError
from crdswatch.render.slack import (
    MAX_BLOCKS,
    SECTION_TEXT_LIMIT,
    build_messages,
    neutralise_slack,
    split_blocks,
    split_section_text,
)
from tests.support.fixtures_channels import http_client, http_sink  # noqa: F401
from tests.support.http_sink import HttpSink, ScriptedResponse

PAYLOAD = {"text": "hst_1234.pmap is operational", "blocks": [HeaderBlock(text="New context").to_dict()]}


async def test_ok_posts_json(http_sink: HttpSink, http_client: httpx.AsyncClient) -> None:
    await SlackChannel(http_sink.url_for("/services/T/B/X"), http_client).post(PAYLOAD)
    [request] = http_sink.requests
    assert request.method == "POST" and request.path == "/services/T/B/X"
    assert request.headers["content-type"].startswith("application/json")
    assert request.json() == PAYLOAD


async def test_429_is_transient_with_retry_after(http_sink: HttpSink, http_client: httpx.AsyncClient) -> None:
    http_sink.respond(ScriptedResponse(429, {"Retry-After": "17"}, b"rate_limited"))
    with pytest.raises(TransientDeliveryError) as caught:
        await SlackChannel(http_sink.url, http_client).post(PAYLOAD)
    assert caught.value.retry_after == 17.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (404, "no_service"),
        (410, "channel_is_archived"),
        (403, "action_prohibited"),
        (403, "invalid_token"),
        (400, "posting_to_general_channel_denied"),
        (418, "something_new"),
    ],
)
async def test_4xx_is_permanent(
    http_sink: HttpSink, http_client: httpx.AsyncClient, status: int, body: str
) -> None:
    http_sink.respond(ScriptedResponse(status, body=body))
    with pytest.raises(PermanentDeliveryError, match=body):
        await SlackChannel(http_sink.url, http_client).post(PAYLOAD)


async def test_5xx_is_transient(http_sink: HttpSink, http_client: httpx.AsyncClient) -> None:
    http_sink.respond(ScriptedResponse(503, body="rollup_error"))
    with pytest.raises(TransientDeliveryError) as caught:
        await SlackChannel(http_sink.url, http_client).post(PAYLOAD)
    assert caught.value.retry_after is None


async def test_timeout_is_transient(http_sink: HttpSink) -> None:
    http_sink.respond(ScriptedResponse(delay=0.5))
    async with httpx.AsyncClient(timeout=0.1) as client:
        with pytest.raises(TransientDeliveryError, match="timed out"):
            await SlackChannel(http_sink.url, client).post(PAYLOAD)


async def test_bad_url_pauses_channel(http_client: httpx.AsyncClient) -> None:
    with pytest.raises(ChannelPausedError):
        await SlackChannel("ftp://hooks.example/x", http_client).post(PAYLOAD)


def test_retry_after_http_date() -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert parse_retry_after("Mon, 06 May 2024 07:08:39 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None


def test_neutralise_slack_defuses_mentions_and_links() -> None:
    text = "<!channel> ping <@U123> see <http://x|y> & <!here>"
    safe = neutralise_slack(text)
    assert "<" not in safe and ">" not in safe
    assert safe == ("&lt;!channel&gt; ping &lt;@U123&gt; see &lt;http://x|y&gt; &amp; &lt;!here&gt;")
    assert neutralise_slack("&lt;") == "&amp;lt;"  # an already-escaped entity stays literal text


def test_split_section_text_keeps_every_line() -> None:
    lines = [f"jwst_nircam_flat_{n:04d}.rmap  {'x' * (n % 70)}" for n in range(400)]
    text = "\n".join(lines)
    chunks = split_section_text(text)
    assert len(chunks) > 1
    assert all(len(c) <= SECTION_TEXT_LIMIT for c in chunks)
    assert "\n".join(chunks) == text


def test_split_section_text_cuts_an_over_long_line_without_loss() -> None:
    line = "a&amp;" * 1000
    chunks = split_section_text(f"short\n{line}\nend", limit=100)
    assert all(len(c) <= 100 for c in chunks)
    assert "".join(chunks).replace("\n", "") == f"short{line}end"
    assert all(not c.endswith(("&", "&a", "&am", "&amp")) for c in chunks)  # no entity torn in two


def test_split_blocks_respects_limits_and_order() -> None:
    long_text = "\n".join(f"* `{n}` changed" for n in range(1500))
    blocks: list[Block | dict[str, Any]] = [
        HeaderBlock(text="hst_1234.pmap"),
        SectionBlock(text=MarkdownTextObject(text=long_text)),
        *[SectionBlock(text=MarkdownTextObject(text=f"item {n}")) for n in range(60)],
        DividerBlock(),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "crdswatch"}]},
    ]
    messages = split_blocks(blocks)
    assert all(1 <= len(m) <= MAX_BLOCKS for m in messages)
    flat = [b for m in messages for b in m]
    sections = [b["text"]["text"] for b in flat if b["type"] == "section"]
    assert all(len(t) <= SECTION_TEXT_LIMIT for t in sections)
    n_long = len(split_section_text(long_text))
    assert "\n".join(sections[:n_long]) == long_text
    assert sections[n_long:] == [f"item {n}" for n in range(60)]
    assert flat[0]["type"] == "header" and [b["type"] for b in flat[-2:]] == ["divider", "context"]
    assert all(b["text"]["type"] == "mrkdwn" for b in flat if b["type"] == "section")


def test_split_blocks_validates_with_slack_sdk() -> None:
    with pytest.raises(SlackObjectFormationError):
        split_blocks([HeaderBlock(text="h" * 151)])


def test_build_messages_numbers_parts() -> None:
    blocks = [ContextBlock(elements=[MarkdownTextObject(text=f"{n}")]) for n in range(120)]
    messages = build_messages("New context", blocks)
    assert [len(m["blocks"]) for m in messages] == [50, 50, 20]
    assert [m["text"] for m in messages] == [
        "New context",
        "New context (part 2/3)",
        "New context (part 3/3)",
    ]
    assert build_messages("t", [DividerBlock()]) == [{"text": "t", "blocks": [{"type": "divider"}]}]
