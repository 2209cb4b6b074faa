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

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.model import Activation, ActivationDiff, Change, FileInfo, Notice
from crdswatch.notices.summary import is_special
from crdswatch.render import (
    SCHEMA_ID,
    email_message,
    html_body,
    notice_view,
    sample_notice,
    slack_payloads,
    text_body,
    webhook_payload,
)
from crdswatch.render.budget import Budget
from crdswatch.render.slack import slack_blocks
from crdswatch.render.subject import subject

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
    assert "\n2019-07-30 15:06:02 UTC (previous: jwst_0540.pmap).\n" in text  # the date never breaks
    assert "operational context jwst_0541.pmap" in text
    assert "NIRSpec DARK (jwst_nirspec_dark_0028.rmap → jwst_nirspec_dark_0029.rmap)" in text
    lines = text.splitlines()
    assert all(len(line) <= 78 for line in lines)
    grouped = ["  18 files now also apply to READPATT NRSRAPIDD1, NRSRAPIDD2, NRSRAPIDD6 (was",
               "  NRS|NRSRAPID):"]
    starts = [i for i, line in enumerate(lines) if line == grouped[0] and lines[i + 1] == grouped[1]]
    assert len(starts) == 2  # dark and superbias, one heading each for 18 files
    assert "  2 files now also apply to READPATT NRSRAPIDD1, NRSRAPIDD2, NRSRAPIDD6 (was" in lines
    assert "  N/A (step not applied) now also applies to READPATT NRSRAPIDD1, NRSRAPIDD2," in lines
    assert "  NRSRAPIDD6 (was NRS|NRSN16R4|NRSN32R8|NRSN8R2|NRSRAPID|NRSSLOW):" in lines
    # the table under it: what every file shares said once, then one aligned row per file
    assert lines[starts[0] + 2:starts[0] + 4] == [
        "    same for all:  SUBARRAY=FULL  SUBSTRT1=1  SUBSTRT2=1  SUBSIZE1=2048", "      SUBSIZE2=2048"]
    header = lines[starts[0] + 4]
    assert header.split() == ["file", "USEAFTER", "DETECTOR"]
    row = next(line for line in lines if "jwst_nirspec_dark_0030.fits" in line)
    assert row.split() == ["jwst_nirspec_dark_0030.fits", "2000-01-01", "00:00:00", "NRS2"]
    assert row.index("NRS2") == header.index("DETECTOR")
    assert len(lines) < 100
    assert "CRDS_CONTEXT=jwst_0541.pmap" in text and "crds sync --contexts jwst_0541.pmap" in text
    assert f"{SERVER}/context_table/jwst_0541.pmap" in text
    assert "/browse/" not in text  # no file is new: the context page covers widened files
    assert "Why you got this: you subscribe to JWST NIRSpec (all reference types)" in text
    assert "Unsubscribe: https://crdswatch.example/u/abc" in text
    assert "REDCAT-52" in text  # the reason given at activation


def test_no_catalog_is_said_once_per_section(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap"))
    text, html = text_body(notice), html_body(notice)
    line = "  Catalog: no pedigree, change level or deliverer on record for these files."
    assert text.splitlines().count(line) == 3  # dark, readnoise, superbias; refpix is only N/A
    assert "unknown" not in text and "unknown" not in html
    assert "invented" not in text and "pedigree" not in text.replace(line, "")
    assert html.count(line.strip()) == 3 and html.count("<table") == 4


def test_replacing_files_are_linked_moved_files_are_not(
    library: MappingLibrary, activations: dict[str, Activation]
) -> None:
    notice = _notice(_diff(library, activations, "jwst_0538.pmap", "jwst_0540.pmap"))
    text, html = text_body(notice), html_body(notice)
    lines = text.splitlines()
    assert "  6 files replaced:" in lines
    assert "    jwst_miri_regions_0025.asdf replaces jwst_miri_regions_0019.asdf" in lines
    assert "    same for all:  USEAFTER 2000-01-01 00:00:00" in lines
    assert "  32 files now also apply to PUPIL WLP8, WLM8 (was CLEAR):" in lines
    assert "  8 files now also apply to PUPIL GDHS0, GDHS60 (was CLEAR|WLP8|WLM8):" in lines
    links = re.findall(r"/browse/(\S+)", text)
    assert sorted(links) == [f"jwst_miri_regions_00{n}.asdf" for n in range(25, 31)]
    assert sorted(re.findall(r'href="[^"]*/browse/([^"]+)"', html)) == sorted(links)
    assert len(lines) < 120 and all(len(line) <= 78 for line in lines)


def test_new_files_subject(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    notice = _notice(_diff(library, activations, "jwst_0538.pmap", "jwst_0540.pmap"))
    assert "(6 new files; 40 rules widened)" in subject(notice)
    assert "replaces jwst_miri_regions_0019.asdf" in text_body(notice)


def test_catalog_fields_shown_or_unknown(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    info = FileInfo("jwst_nirspec_dark_0022.fits", pedigree="GROUND 2014-01-01 2014-02-01", change_level="SEVERE",
                    description="Darks with the new readout patterns", deliverer="J. Doe",
                    delivery_date="2019-07-29 10:00:00")
    bare = FileInfo("jwst_nirspec_dark_0023.fits", pedigree="GROUND")
    empty = FileInfo("jwst_nirspec_readnoise_0019.fits")  # the server answered, but said nothing
    catalog = {i.name: i for i in (info, bare, empty)}
    notice = _notice(_diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap", catalog))
    text, html = text_body(notice), html_body(notice)
    lines = text.splitlines()
    dark = lines[lines.index("NIRSpec DARK (jwst_nirspec_dark_0028.rmap → jwst_nirspec_dark_0029.rmap)"):]
    dark = dark[:dark.index("")]
    # Too wide for aligned columns in 78 characters: one block per file, its facts by name.
    start = dark.index("    jwst_nirspec_dark_0022.fits")
    assert dark[start + 1:start + 3] == ["      USEAFTER 2000-01-01 00:00:00  DETECTOR=NRS1",
                                         "      pedigree GROUND 2014-01-01 2014-02-01  change level SEVERE"]
    start = dark.index("    jwst_nirspec_dark_0023.fits")
    assert dark[start + 1:start + 3] == ["      USEAFTER 2010-06-01 00:00:00  DETECTOR=NRS1  pedigree GROUND",
                                         "      change level unknown"]
    start = dark.index("    jwst_nirspec_dark_0024.fits")
    assert dark[start + 1:start + 3] == ["      USEAFTER 2013-01-01 00:00:00  DETECTOR=NRS1  pedigree unknown",
                                         "      change level unknown"]
    assert " ".join(" ".join(dark[-2:]).split()) == ("jwst_nirspec_dark_0022.fits: Darks with the new readout "
                                                   "patterns (delivered 2019-07-29 10:00:00 UTC by J. Doe)")
    assert all(len(line) <= 78 for line in dark)
    assert not any("jwst_nirspec_dark_0023.fits:" in line for line in dark)  # nothing more to say for it
    assert not any(line.strip().startswith("Catalog:") for line in dark)
    # Sections where the catalog said nothing (an empty answer counts as nothing) say so once.
    assert text.count("Catalog: no pedigree, change level or deliverer on record for these files.") == 2
    assert text.count("unknown") == 2 * 16 + 1  # the 16 dark files not in the catalog, and 0023's level
    assert ">SEVERE</td>" in html and ">GROUND</td>" in html and "J. Doe" in html
    assert "Darks with the new readout patterns" in html and "2019-07-29 10:00:00 UTC" in html
    assert "<th" in html and html.count("<table") == 4
    files = webhook_payload(notice)["activations"][0]["files"]
    by_name = {f["file"]: f for f in files}
    assert by_name[info.name]["catalog"]["pedigree"] == info.pedigree
    assert by_name["jwst_nirspec_dark_0024.fits"]["catalog"] is None
    slack = _slack_text(slack_payloads(notice))
    assert "change level SEVERE" in slack and "Darks with the new readout patterns" in slack


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_mode_changes_said_in_words() -> None:
    def rule(action: str, readpatt: str, file: str = "f.fits", useafter: str = "2020-01-01 00:00:00") -> Change:
        return Change("a.rmap", "b.rmap", "reference", action, f"{action} {file}",  # type: ignore[arg-type]
                      match=("NRS1", readpatt), parameters=("META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT"),
                      useafter=useafter, old_file=file if action == "deleted" else None,
                      new_file=file if action == "added" else None, instrument="nirspec", reftype="dark",
                      rule="Match rule")

    changes = (rule("deleted", "A|B"), rule("added", "A"), rule("deleted", "C", "g.fits"),
               rule("added", "D", "g.fits"), rule("deleted", "E", "h.fits", "2019-01-01 00:00:00"),
               rule("added", "E", "h.fits"), rule("added", "F", "new.fits"), rule("deleted", "G", "old.fits"))
    diff = ActivationDiff("jwst", SERVER, "latest", Activation("2020-01-01T00:00:00", "jwst_0002.pmap"),
                          "jwst_0001.pmap", changes)
    text = text_body(_notice(diff))
    lines = text.splitlines()
    for expected in ("  1 file no longer applies to READPATT B (now A):", "  1 file now applies to READPATT D (was C):",
                     "  1 file has USEAFTER 2020-01-01 00:00:00 (was 2019-01-01 00:00:00):",
                     "  1 new file, 1 file removed:"):
        assert expected in lines
    assert re.search(r"^    new +new\.fits +2020-01-01 00:00:00  DETECTOR=NRS1 READPATT=F$", text, re.MULTILINE)
    assert re.search(r"^    removed +old\.fits +2020-01-01 00:00:00  DETECTOR=NRS1 READPATT=G$", text, re.MULTILINE)
    assert [u for u in re.findall(r"https://\S+", text) if "/browse/" in u] == [f"{SERVER}/browse/new.fits"]


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
    payloads = slack_payloads(notice, Budget("slack"))  # no budget: every line, split to Slack's limits
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
    assert line.startswith("[crdswatch TEST] sample notice, not a real CRDS activation: NIRSpec fflat, readnoise")
    assert "2 new files" in line and "[CRDS" not in line
    text = text_body(notice)
    assert "jwst_nirspec_fflat_TEST1.fits replaces jwst_nirspec_fflat_TEST0.fits" in text
    assert "SAMPLE: a new file, to show how deliveries read." in " ".join(text.split())
    assert "Catalog: no pedigree, change level or deliverer on record for these files." in text  # readnoise
    assert slack_payloads(notice) and webhook_payload(notice)["activations"][0]["new_files"]
    assert html_body(notice).startswith("<!DOCTYPE html>")


def test_send_test_is_unmistakable_in_every_channel() -> None:
    notice = sample_notice(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    banner = "TEST NOTICE from `crdswatch send-test`"
    text, html = text_body(notice), html_body(notice)
    slack, hook = slack_payloads(notice), webhook_payload(notice)
    assert text.splitlines()[1].startswith("!! " + banner)  # the first thing read, boxed in !!
    assert html.index(banner) < html.index("<h2")
    assert slack[0]["blocks"][0]["text"]["text"].startswith(":warning: *" + banner)
    assert slack[0]["text"].startswith("[crdswatch TEST]")
    assert hook["test"] is True and hook["banner"].startswith(banner) and hook["subject"].startswith("[crdswatch TEST]")
    msg = email_message(notice, sender="w@example.org", to=["a@example.org"], message_id="t@example.org",
                        date=datetime(2024, 5, 1, tzinfo=UTC), list_id="l.example.org")
    assert msg["Subject"].startswith("[crdswatch TEST]")
    everything = text + html + json.dumps(slack) + json.dumps(hook)
    # No real-looking context number, no link to a real server.
    assert not re.search(r"jwst_\d{4}\.pmap", everything)
    hosts = set(re.findall(r"https?://([^/\s\"'<>)]+)", everything))
    assert hosts == {"crds-server.invalid", "crdswatch.invalid"}, hosts  # the server; the webhook schema id


def test_long_notice_is_not_truncated(library: MappingLibrary, activations: dict[str, Activation]) -> None:
    diff = _diff(library, activations, "jwst_0300.pmap", "jwst_0541.pmap")
    html = html_body(_notice(diff))
    assert set(FILE_RE.findall(html)) == _expected_files(diff)
    changes: tuple[Change, ...] = diff.changes
    assert len(changes) > 1000


_MIME_CASES = [
    ("plain ascii\nsecond line\n", "<p>ascii</p>\n", "CRDS JWST: jwst_0541.pmap", "CRDS notices <n@example.org>"),
    ("", "", "", "n@example.org"),
    ("no final newline", "<p>x</p>", "short", "n@example.org"),
    ("é ü — ✓\r\nCRLF\rlone CR\n\n\nblank lines\n", "<p>é — ✓</p>\r\n", "CRDS JWST: jwst_0541.pmap — NIRSpec, MIRI",
     '"Ünïcode, Sender" <n@example.org>'),
    ("--===============0000000000000000000==\nlooks like a boundary\n", "<b>\x0bvertical\x0ctab</b>\n",
     "A " + "very long subject line " * 12, "CRDS notices <crds-notices@bench.invalid>"),
    ("x" * 3000 + "\n" + "y " * 700, "<td>" + "z" * 1200 + "</td>", "Subject with =?utf-8?q?x?= inside", "n@example.org"),
]


@pytest.mark.parametrize("case", range(len(_MIME_CASES)))
def test_8bit_alternative_is_what_the_stdlib_makes(case: int) -> None:
    """email_template's MIME builder writes the stdlib's message byte for byte (same boundary)."""
    import random
    from email.message import EmailMessage

    from crdswatch.render.email import _WIRE, _alternative_8bit
    from crdswatch.render.email_headers import NOTICE_POLICY

    text, html, subject_line, sender = _MIME_CASES[case]
    random.seed(case)
    msg = EmailMessage(policy=NOTICE_POLICY)
    msg.set_content(text, charset="utf-8", cte="8bit")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="8bit")
    msg["Subject"], msg["From"] = subject_line, sender
    head, _, body = msg.as_bytes(policy=_WIRE).partition(b"\r\n\r\n")
    random.seed(case)
    assert _alternative_8bit(text, html, subject_line, sender) == (head + b"\r\n", body)


@pytest.mark.parametrize("lines", [0, 1, 3])
def test_boundary_is_the_generators_when_the_text_holds_it(lines: int) -> None:
    """A body with lines that are the drawn boundary (or its closing form) gets `.0`, `.1`... as
    the stdlib's generator gives it; a body with the bare string inside a longer line keeps it."""
    import random
    from email.generator import BytesGenerator

    from crdswatch.render.email import _make_boundary

    random.seed(7)
    drawn = BytesGenerator._make_boundary().encode()  # type: ignore[attr-defined]
    clash = [b"--" + drawn, b"--" + drawn + b".0--", b"--" + drawn + b".1"][:lines]
    text = b"\n".join([b"x --" + drawn + b" y", *clash, b"end"])
    random.seed(7)
    expected = BytesGenerator._make_boundary(text)  # type: ignore[attr-defined]
    random.seed(7)
    assert _make_boundary(text) == expected
    assert expected.endswith({0: "==", 1: "==.0", 3: "==.2"}[lines])  # the clashes were real


@pytest.mark.parametrize("boundary", ["=" * 15 + "0" * 19 + "==", "=" * 15 + "9223372036854775806==",
                                      "=" * 15 + "1234567890123456789==.0", "=" * 15 + "1234567890123456789==.17",
                                      "=" * 15 + "1" * 60 + "==", "not-a-generator-boundary"])
def test_multipart_content_type_is_folded_as_the_stdlib_folds_it(boundary: str) -> None:
    from crdswatch.render.email import _content_type, _stored_header

    assert _content_type(boundary) == _stored_header("Content-Type", f'multipart/alternative; boundary="{boundary}"')


def test_shared_sections_render_once_and_say_each_subscribers_why(
        library: MappingLibrary, activations: dict[str, Activation]) -> None:
    """Two subscribers of one activation whose selections share the dark section: one view of its
    tables (rendered once), each with its own why, and the bytes a fresh rendering gives."""
    from crdswatch.model import Interest
    from crdswatch.notices import summary
    from crdswatch.notices.codec import narrowed
    from crdswatch.render import html as html_module
    from crdswatch.render import text as text_module
    from crdswatch.render import view as view_module

    memos = (summary._SUMMARIES, summary._SECTIONS, view_module._VIEWS, view_module._TABLES, text_module._SECTIONS,
             html_module._SECTIONS)
    full = _diff(library, activations, "jwst_0540.pmap", "jwst_0541.pmap")
    dark = narrowed(full, [c for c in full.changes if c.reftype == "dark"])
    nirspec = Notice("a", (full,), "r", interest=Interest(instruments=("nirspec",)))
    everything = Notice("b", (dark,), "r", interest=Interest())

    def fresh(notice: Notice) -> tuple[str, str]:
        for memo in memos:
            memo._entries.clear()
        return text_body(notice), html_body(notice)

    expected = {n.subscriber: fresh(n) for n in (nirspec, everything)}
    views = [notice_view(n).activations[0].sections for n in (nirspec, everything)]
    shared = next(s for s in views[0] if "DARK" in s.title)
    assert views[1][0].tables is shared.tables and views[1][0].notes is shared.notes  # one view, shared
    assert (shared.why, views[1][0].why) == ("you follow NIRSpec", "you follow everything")
    import dataclasses
    assert all(s.with_why("w") == dataclasses.replace(s, why="w") for v in views for s in v)  # every field kept
    view = notice_view(dataclasses.replace(nirspec, manage_url="https://m.invalid/x"))
    assert view.with_links("r", "u", "m") == dataclasses.replace(view, reason="r", unsubscribe_url="u", manage_url="m")
    assert len(dataclasses.fields(view)) == 11  # a new field goes into with_links too
    for notice in (nirspec, everything, nirspec):  # the other's rendering memoised in between
        assert (text_body(notice), html_body(notice)) == expected[notice.subscriber]
    assert "Why: you follow everything" in expected["b"][0] and "you follow NIRSpec" not in expected["b"][0]
    assert expected["a"][1].count("Why: you follow NIRSpec") == len(views[0])


def test_identity_memo_keys_on_the_objects_not_their_value() -> None:
    from crdswatch.notices.memo import IdentityMemo

    memo: IdentityMemo[object] = IdentityMemo(2)
    a, b = [1], [1]  # equal, not the same
    first = memo.get((a,), "x", object)
    assert memo.get((a,), "x", object) is first
    assert memo.get((b,), "x", object) is not first and memo.get((a,), "y", object) is not first
    assert len(memo) == 2  # the oldest went
    assert memo.get((a,), "x", object) is not first


def test_subject_header_is_what_the_stdlib_folds() -> None:
    """The Subject header written directly is the stdlib's, byte for byte: random subjects of every
    length around the fold, lines that end exactly at it, and the ones it leaves to the stdlib."""
    import random
    import string

    from crdswatch.render.email import _stored_header, _subject_header

    rng = random.Random(10)
    alphabet = string.ascii_letters + string.digits + "()[];:,.-_/'\"<>@!#$%&*+=?|{}~`\\^"
    cases = ["x" * n for n in (1, 68, 69, 70, 76, 77, 78, 79)]
    cases += [" ".join(["a" * 8] * 7 + ["b" * n]) for n in range(1, 20)]  # lines ending at 76..80
    cases += ["", " lead", "trail ", "two  spaces", "tab\there", "=?utf-8?q?x?= word", "é accent", "y" * 90]
    for _ in range(3000):
        width = rng.choice([3, 8, 15, 30, 60, 77, 80])
        cases.append(" ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, width)))
                              for _ in range(rng.randint(1, 25))))
    for line in cases:
        assert _subject_header(line) == _stored_header("Subject", line), line


def test_lines_within_agrees_with_splitting_every_line() -> None:
    """The 8-bit check measures only the lines of windows without a line feed: the same verdict
    as splitting the body at every CRLF, for lines around the limit at every offset."""
    import random

    from crdswatch.render.email import _lines_within

    rng = random.Random(5)
    for _ in range(3000):
        limit = rng.choice([1, 2, 3, 7, 10, 998])
        lines = [b"x" * rng.choice([0, 1, limit // 2, limit - 1, limit, limit + 1, 2 * limit, rng.randrange(3 * limit + 2)])
                 for _ in range(rng.randrange(6))]
        data = b"\r\n".join(lines) + rng.choice([b"", b"\r\n"])
        assert _lines_within(data, limit) == (max(map(len, data.split(b"\r\n"))) <= limit), (limit, lines)


def test_stand_ins_are_cut_where_a_regular_expression_cuts_them() -> None:
    """The template's body is cut at its stand-ins as `re.split` with them as alternatives cuts
    it: at every offset, next to each other, at either end, among bare markers and broken ones."""
    import random

    from crdswatch.render.email import _MARK, _STAND_INS, _split_stand_ins

    pattern = re.compile(b"(" + b"|".join(re.escape(k) for k in sorted(_STAND_INS, key=len, reverse=True)) + b")")
    keys = list(_STAND_INS)
    noise = [b"x", b"\r\n", b".", _MARK, _MARK[:-1], b"@", b"@@", *(k[:-1] for k in keys), *(k[1:] for k in keys)]
    assert all(k.count(_MARK) == 1 for k in keys)  # what the cut relies on
    rng = random.Random(11)
    for _ in range(3000):
        body = b"".join(rng.choice(keys) if rng.random() < 0.3 else rng.choice(noise) for _ in range(rng.randrange(12)))
        parts = pattern.split(body)
        assert _split_stand_ins(body) == (parts[0::2], [_STAND_INS[p] for p in parts[1::2]]), body


def test_warm_templates_compiles_the_notice_templates_once() -> None:
    """A daemon compiles them at startup; the first notice then finds them compiled."""
    from crdswatch.render import html, text
    from crdswatch.render.email import warm_templates

    warm_templates()
    cached = (text._template(), text._section_template(), html._template(), html._section_template())
    warm_templates()
    assert cached == (text._template(), text._section_template(), html._template(), html._section_template())
