"""render: subject, text, HTML, e-mail, Slack and webhook output of real JWST activations."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import SectionBlock
from slack_sdk.models.blocks.basic_components import TextObject

from crdswatch.diff import diff_contexts
from crdswatch.history import load_server_config
from crdswatch.library import MappingLibrary
from crdswatch.model import Activation, ActivationDiff, Change, FileInfo, Notice
from crdswatch.render import (
    SCHEMA_ID,
    email_message,
    html_body,
    notice_view,
    sample_notice,
    slack_payloads,
    subject,
    text_body,
    webhook_payload,
)
from crdswatch.render.slack import slack_blocks
from crdswatch.summary import is_special

SERVER = "https://jwst-crds.stsci.edu"
FILE_RE = re.compile(r"jwst_[a-z0-9_]+\.(?:fits|asdf|json)")
NASTY = "<script>alert(1)</script> <!channel> @here\r\nBcc: victim@example.org\x00 & more"


@pytest.fixture(scope="module")
def library(jwst_mappings: Path) -> MappingLibrary:
    return MappingLibrary.from_dir(jwst_mappings)


@pytest.fixture(scope="module")
def activations(jwst_server_config: Path) -> dict[str, Activation]:
    return {a.context: a for a in load_server_config(jwst_server_config).activations()}


def _diff(library: MappingLibrary, activations: dict[str, Activation], old: str, new: str,
          catalog: dict[str, FileInfo] | None = None, **kw: Any) -> ActivationDiff:
    changes = diff_contexts(old, new, library).changes
    return ActivationDiff("jwst", SERVER, "latest", activations[new], old, changes, catalog or {}, **kw)


def _notice(*diffs: ActivationDiff, reason: str = "you subscribe to JWST NIRSpec (all reference types)") -> Notice:
    return Notice("nirspec-team", diffs, reason, unsubscribe_url="https://crdswatch.example/u/abc")


def _expected_files(diff: ActivationDiff) -> set[str]:
    return {f for c in diff.changes if c.level == "reference" for f in (c.old_file, c.new_file)
            if f and not is_special(f)}


def _slack_text(payloads: list[dict[str, Any]]) -> str:
    return json.dumps(payloads, ensure_ascii=False)


@pytest.mark.parametrize("old,new", [("jwst_0540.pmap", "jwst_0541.pmap"), ("jwst_0508.pmap", "jwst_0523.pmap")])
def test_every_file_everywhere_and_none_other(
    library: MappingLibrary, activations: dict[str, Activation], old: str, new: str
) -> None:
    diff = _diff(library, activations, old, new)
    notice = _notice(diff)
    expected = _expected_files(diff)
    assert expected
    outputs = {
        "text": text_body(notice), "html": html_body(notice),
        "slack": _slack_text(slack_payloads(notice)), "webhook": json.dumps(webhook_payload(notice)),
    }
    for name, out in outputs.items():
        assert set(FILE_RE.findall(out)) == expected, name


def test_subject_and_text_for_nirspec_widening(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap"))
    assert subject(notice) == ("[CRDS JWST] jwst_0541.pmap activated: NIRSpec dark, readnoise, refpix, superbias "
                               "(no new files; 39 rules widened)")
    text = text_body(notice)
    assert "activated on 2019-07-30 15:06:02 UTC" in text and "(previous: jwst_0540.pmap)" in text
    assert "operational context jwst_0541.pmap" in text
    assert "NIRSpec DARK  (jwst_nirspec_dark_0028.rmap → jwst_nirspec_dark_0029.rmap)" in text
    assert "18 files: now also for READPATT NRSRAPIDD1, NRSRAPIDD2, NRSRAPIDD6" in text
    assert "READPATT NRS|NRSRAPID → NRS|NRSRAPID|NRSRAPIDD1|NRSRAPIDD2|NRSRAPIDD6" in text
    assert "CRDS_CONTEXT=jwst_0541.pmap" in text and "crds sync --contexts jwst_0541.pmap" in text
    assert f"{SERVER}/context_table/jwst_0541.pmap" in text
    assert f"{SERVER}/browse/jwst_nirspec_dark_0022.fits" in text
    assert "Why you got this: you subscribe to JWST NIRSpec (all reference types)" in text
    assert "Unsubscribe: https://crdswatch.example/u/abc" in text
    assert "REDCAT-52" in text  # the reason given at activation


def test_new_files_subject(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0538.pmap", "jwst_0540.pmap"))
    assert "(6 new files; 40 rules widened)" in subject(notice)
    assert "replaces jwst_miri_regions_0019.asdf" in text_body(notice)


def test_catalog_fields_shown_or_unknown(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    info = FileInfo("jwst_nirspec_dark_0022.fits", pedigree="GROUND 2014-01-01 2014-02-01", change_level="SEVERE",
                    description="Darks with the new readout patterns", deliverer="J. Doe")
    notice = _notice(_diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap", {info.name: info}))
    text, html = text_body(notice), html_body(notice)
    block = text.split("jwst_nirspec_dark_0022.fits —", 1)[1].split("\n\n", 1)[0]
    assert "pedigree GROUND 2014-01-01 2014-02-01 · change level SEVERE · deliverer J. Doe" in block
    assert "Darks with the new readout patterns" in block and "delivered unknown" in block
    other = text.split("jwst_nirspec_dark_0023.fits —", 1)[1].split("\n\n", 1)[0]
    assert "pedigree unknown · change level unknown · deliverer unknown" in other
    assert "description: unknown" in other
    assert "J. Doe" in html and "SEVERE" in html
    files = webhook_payload(notice)["activations"][0]["files"]
    by_name = {f["file"]: f for f in files}
    assert by_name[info.name]["catalog"]["pedigree"] == info.pedigree
    assert by_name["jwst_nirspec_dark_0023.fits"]["catalog"] is None


def _nasty_notice(library: MappingLibrary, activations: dict[str, Activation]) -> Notice:
    base = _diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap",
                 {"jwst_nirspec_dark_0022.fits": FileInfo("jwst_nirspec_dark_0022.fits", description=NASTY,
                                                          deliverer="<b>Mallory</b>")})
    act = Activation(base.activation.date, base.activation.context, NASTY)
    diff = ActivationDiff(base.observatory, base.server_url, base.state, act, base.previous, base.changes,
                          base.catalog)
    return _notice(diff, reason="you subscribe\r\nto <!everyone>")


def test_escaping(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _nasty_notice(library, activations)
    html = html_body(notice)
    assert "<script>" not in html and "<b>Mallory" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Mallory" in html
    slack = _slack_text(slack_payloads(notice))
    for raw in ("<script>", "<!channel>", "<!everyone>", "<b>"):
        assert raw not in slack
    assert "&lt;!channel&gt;" in slack
    text = text_body(notice)
    assert "\r" not in text and "\x00" not in text
    notice_with_nasty_context = Notice(
        "x", (ActivationDiff("jwst", SERVER, "latest", Activation("2019-07-30T15:06:02+00:00",
                                                                  "jwst_0541.pmap\r\nBcc: a@b"), None, ()),),
        "r")
    for n in (notice, notice_with_nasty_context):
        line = subject(n)
        assert "\r" not in line and "\n" not in line and "\x00" not in line
    msg = email_message(notice_with_nasty_context, sender="w@example.org", to=["a@example.org"],
                        message_id="1@example.org", date=datetime(2024, 1, 1, tzinfo=UTC), list_id="l.example.org")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None


def test_email_structure(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap"))
    msg = email_message(notice, sender="CRDS watch <watch@example.org>", to=["a@example.org", "b@example.org"],
                        message_id="n1@example.org", date=datetime(2019, 7, 30, 16, 0, tzinfo=UTC),
                        list_id="jwst.crdswatch.example.org")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content() == text_body(notice).replace("\r\n", "\n")
    assert "jwst_nirspec_dark_0022.fits" in parts[1].get_content()
    assert parsed["Subject"] == subject(notice)
    assert parsed["Message-ID"] == "<n1@example.org>"
    assert parsed["From"] == "CRDS watch <watch@example.org>"
    assert parsed["To"] == "a@example.org, b@example.org"
    assert parsed["List-Id"].endswith("<jwst.crdswatch.example.org>")
    assert parsed["List-Unsubscribe"] == "<https://crdswatch.example/u/abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"] is not None


def test_slack_split_keeps_every_line(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    diff = _diff(library, activations, "jwst_0300.pmap", "jwst_0541.pmap")
    notice = _notice(diff)
    payloads = slack_payloads(notice)
    assert len(payloads) > 1
    texts_after: list[str] = []
    for p in payloads:
        assert len(p["blocks"]) <= 50 and p["text"].startswith("[CRDS JWST]")
        for b in p["blocks"]:
            if b["type"] == "section":
                assert len(b["text"]["text"]) <= 3000
                texts_after.append(b["text"]["text"])
    # Unsplit sections may exceed Slack's limit, so read their text without validating them.
    before = [b.text.text for b in slack_blocks(notice_view(notice))
              if isinstance(b, SectionBlock) and isinstance(b.text, TextObject)]
    assert Counter(line for t in before for line in t.split("\n")) == Counter(
        line for t in texts_after for line in t.split("\n"))
    assert set(FILE_RE.findall(_slack_text(payloads))) == _expected_files(diff)
    text = text_body(notice)
    assert set(FILE_RE.findall(text)) == _expected_files(diff) and "parkey" in text


def test_digest_oldest_first(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    diffs = [_diff(library, activations, a, b) for a, b in
             [("jwst_0537.pmap", "jwst_0538.pmap"), ("jwst_0538.pmap", "jwst_0540.pmap"),
              ("jwst_0540.pmap", "jwst_0541.pmap")]]
    notice = _notice(*diffs)
    assert subject(notice).startswith("[CRDS JWST] 3 contexts activated (jwst_0538.pmap … jwst_0541.pmap): ")
    text = text_body(notice)
    positions = [text.index(f"==== {i} of 3: {c} ====") for i, c in
                 enumerate(["jwst_0538.pmap", "jwst_0540.pmap", "jwst_0541.pmap"], start=1)]
    assert positions == sorted(positions)
    payload = webhook_payload(notice)
    assert [a["context"] for a in payload["activations"]] == ["jwst_0538.pmap", "jwst_0540.pmap", "jwst_0541.pmap"]
    html = html_body(notice)
    assert html.index("jwst_0538.pmap") < html.index("jwst_0541.pmap activated")


def test_revert_is_said(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    diff = _diff(library, activations, "jwst_0175.pmap", "jwst_0167.pmap", revert=True)
    notice = _notice(diff)
    assert subject(notice).startswith("[CRDS JWST] jwst_0167.pmap reactivated (revert from jwst_0175.pmap): ")
    assert "reactivated (a revert)" in text_body(notice)


def _check(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    assert isinstance(value, kind), f"{where}: {type(value).__name__}"


def test_webhook_payload_structure(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0300.pmap", "jwst_0541.pmap"))
    payload = webhook_payload(notice)
    assert json.loads(json.dumps(payload)) == payload  # JSON-able, nothing lost on a round trip
    schema = json.loads((Path(__file__).parents[1] / "daemon/crdswatch/templates/notice.schema.json").read_text())
    assert payload["schema"] == SCHEMA_ID == schema["$id"] and payload["schema_version"] == 1
    assert set(schema["required"]) == set(payload)
    for key in ("subject", "subscriber", "reason", "digest"):
        _check(payload[key], str, key)
    (act,) = payload["activations"]
    assert set(schema["$defs"]["activation"]["required"]) == set(act)
    for key in ("observatory", "server_url", "state", "context", "previous", "date", "description"):
        _check(act[key], str, key)
    _check(act["revert"], bool, "revert")
    assert len(act["changes"]) == len(diff_contexts("jwst_0300.pmap", "jwst_0541.pmap", library).changes)
    for change in act["changes"]:
        assert set(schema["$defs"]["change"]["required"]) == set(change)
        _check(change["match"], list, "match")
    for f in act["files"]:
        assert set(schema["$defs"]["file"]["required"]) == set(f)
        _check(f["modes"], dict, "modes")
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in f["modes"].items())
        assert f["kind"] in schema["$defs"]["file"]["properties"]["kind"]["enum"]
        _check(f["catalog"], (dict, type(None)), "catalog")
    assert act["rules_widened"] > 0 and act["new_files"]


def test_sample_notice_renders_everywhere() -> None:
    notice = sample_notice(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert notice.activations[0].activation.date.startswith("2024-05-01T12:00:00")
    line = subject(notice)
    assert line.startswith("[CRDS JWST] jwst_0542.pmap activated: NIRSpec fflat, readnoise")
    assert "2 new files" in line
    text = text_body(notice)
    assert "replaces jwst_nirspec_fflat_0012.fits" in text and "change level SEVERE" in text
    assert slack_payloads(notice) and webhook_payload(notice)["activations"][0]["new_files"]
    assert html_body(notice).startswith("<!DOCTYPE html>")


def test_long_notice_is_not_truncated(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    diff = _diff(library, activations, "jwst_0300.pmap", "jwst_0541.pmap")
    html = html_body(_notice(diff))
    assert set(FILE_RE.findall(html)) == _expected_files(diff)
    changes: tuple[Change, ...] = diff.changes
    assert len(changes) > 1000
