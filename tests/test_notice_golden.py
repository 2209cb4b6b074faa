"""Golden notices: the exact text, HTML, Slack and webhook output of six real activations.

Three JWST (the largest of the bundled history, jwst_0160.pmap with 734 changes; the NIRSpec
READPATT widening jwst_0541.pmap; new MIRI files in jwst_0540.pmap) and three HST (the largest
of hst_0690-0729, hst_0723.pmap and hst_0724.pmap; the ACS APERTURE list of hst_0702.pmap), each
for a subscriber whose filters select it, rendered as the channels send them (within budget).

After an intended change of layout, regenerate and review the diff:
  CRDSWATCH_UPDATE_GOLDEN=1 pytest tests/test_notice_golden.py
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import tarfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.model import Activation, ActivationDiff, Notice
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.notices.match import notices_for
from crdswatch.notices.subscriptions import Subscription, subscription_from_config
from crdswatch.render import email_message, slack_payloads, text_body, webhook_payload
from crdswatch.render.budget import EMAIL_BUDGET, SLACK_BUDGET
from crdswatch.render.view import notice_view

GOLDEN = Path(__file__).parent / "golden"
HST_TARBALL = Path(__file__).parent / "data" / "hst-golden.tar.xz"
UPDATE = os.environ.get("CRDSWATCH_UPDATE_GOLDEN") == "1"
PUBLIC = "https://crdswatch.example.org"
UNSUBSCRIBE = f"{PUBLIC}/unsubscribe/golden-token"
DATE = datetime(2024, 1, 1, tzinfo=UTC)
WIDTH = 78

# (observatory, old, new, subscriber config): each subscriber's filters select the activation.
CASES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "jwst_0160": ("jwst", "jwst_0126.pmap", "jwst_0160.pmap", {"observatories": ["jwst"]}),
    "jwst_0541": ("jwst", "jwst_0540.pmap", "jwst_0541.pmap",
                  {"instruments": ["nirspec"], "parameters": {"EXP_TYPE": ["NRS_IFU"]}}),
    "jwst_0540": ("jwst", "jwst_0538.pmap", "jwst_0540.pmap", {"instruments": ["miri"], "reftypes": ["regions"]}),
    "hst_0723": ("hst", "hst_0722.pmap", "hst_0723.pmap", {"observatories": ["hst"]}),
    "hst_0724": ("hst", "hst_0723.pmap", "hst_0724.pmap", {}),
    "hst_0702": ("hst", "hst_0701.pmap", "hst_0702.pmap", {"instruments": ["acs"], "parameters": {"APERTURE": ["WFC"]}}),
}


@pytest.fixture(scope="module")
def hst_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hst-golden")
    with tarfile.open(HST_TARBALL, "r:xz") as archive:
        archive.extractall(root, filter="data")
    return root


@pytest.fixture(scope="module")
def sources(jwst_data: Path, hst_root: Path) -> dict[str, tuple[MappingLibrary, dict[str, Activation]]]:
    jwst = {a.context: a for a in load_server_config(jwst_data / "config" / "server_config").activations()}
    hst = {a["context"]: Activation(**a) for a in json.loads((hst_root / "history.json").read_text())}
    return {"jwst": (MappingLibrary.from_dir(jwst_data / "mappings"), jwst),
            "hst": (MappingLibrary.from_dir(hst_root / "mappings"), hst)}


def _subscription(name: str, config: dict[str, Any]) -> Subscription:
    return subscription_from_config(name, subscriber_from_json({"email": [f"{name}@example.org"], **config}))


def _notice(sources: dict[str, tuple[MappingLibrary, dict[str, Activation]]], case: str) -> Notice:
    observatory, old, new, config = CASES[case]
    library, history = sources[observatory]
    diff = ActivationDiff(observatory, f"https://{observatory}-crds.stsci.edu", "latest", history[new], old,
                          diff_contexts(old, new, library).changes)
    ((_, notice),) = notices_for(diff, [_subscription(f"{case}-reader", config)])
    return replace(notice, unsubscribe_url=UNSUBSCRIBE, public_url=PUBLIC)


def _email_parts(notice: Notice) -> tuple[bytes, str, str]:
    msg = email_message(notice, sender="crdswatch <crdswatch@example.org>", to=["reader@example.org"],
                        message_id="golden@example.org", date=DATE, list_id="golden.example.org")
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return msg.as_bytes(), text.get_content(), html.get_content()


def _check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(actual.encode(), mtime=0))
        else:
            path.write_text(actual, encoding="utf-8")
    expected = gzip.decompress(path.read_bytes()).decode() if name.endswith(".gz") else path.read_text("utf-8")
    assert actual == expected, f"{name} differs from the golden file (CRDSWATCH_UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_text_and_html(sources: dict[str, Any], case: str) -> None:
    notice = _notice(sources, case)
    raw, text, html = _email_parts(notice)
    _check(f"{case}.txt", f"Subject: {notice_view(notice).subject}\n\n{text}")
    _check(f"{case}.html", html)
    assert len(raw) <= EMAIL_BUDGET.max_bytes  # type: ignore[operator]


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_slack(sources: dict[str, Any], case: str) -> None:
    payloads = slack_payloads(_notice(sources, case))
    _check(f"{case}.slack.json", json.dumps(payloads, indent=1, ensure_ascii=False) + "\n")
    assert len(payloads) <= SLACK_BUDGET.max_messages  # type: ignore[operator]
    assert len(json.dumps(payloads, ensure_ascii=False).encode()) <= SLACK_BUDGET.max_bytes  # type: ignore[operator]
    for p in payloads:
        assert len(p["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in p["blocks"] if b["type"] == "section")


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_webhook(sources: dict[str, Any], case: str) -> None:
    payload = webhook_payload(_notice(sources, case))
    # Every fact, unbudgeted: large, so stored compressed.
    _check(f"{case}.webhook.json.gz", json.dumps(payload, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def _long_lines(text: str) -> list[str]:
    """Lines over WIDTH that are more than indentation, an optional label and one unbreakable token."""
    return [line for line in text.splitlines()
            if len(line) > WIDTH and len(line.split()) > 1 + line.strip().startswith(("Browse:", "Context:"))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_fits_78_columns(sources: dict[str, Any], case: str) -> None:
    notice = _notice(sources, case)
    full = text_body(notice)
    _raw, sent, _html = _email_parts(notice)
    assert _long_lines(full) == [] and _long_lines(sent) == []
    over = [line for line in full.splitlines() if len(line) > WIDTH]
    assert all(re.search(r"(https?://|\.(fits|asdf|r?map|pmap|imap))\S*$", line) for line in over), over[:3]


def test_over_budget_keeps_first_rows_and_says_where_the_rest_is(sources: dict[str, Any]) -> None:
    notice = _notice(sources, "jwst_0160")
    _raw, sent, html = _email_parts(notice)
    archive = f"{PUBLIC}/activations/jwst_0160.pmap"
    assert "Shortened to stay within 100 KB" in " ".join(sent.split()) and archive in sent
    assert "Shortened to stay within 100 KB" in html and archive in html
    # Nothing is cut silently: every table's rows are shown or counted in its "… and N more rows".
    full = notice_view(notice)
    hidden = [int(n) for n in re.findall(r"… and (\d+) more rows?", sent)]
    total = sum(len(t.rows) for a in full.activations for s in a.sections for t in s.tables)
    shown_files = set(re.findall(r"jwst_[a-z0-9_]+\.(?:fits|asdf)", sent))
    assert hidden and sum(hidden) + sum(1 for line in sent.splitlines() if _is_row(line, shown_files)) >= total
    # Every section keeps its heading and its "why".
    for section in full.activations[0].sections:
        assert section.title in sent
    assert sent.count("Why: you follow all of JWST") == len(full.activations[0].sections)


def _is_row(line: str, files: set[str]) -> bool:
    words = line.split()
    return bool(words) and (words[0] in files or words[0] == "N/A")


def test_why_says_which_filter_selected_each_section(sources: dict[str, Any]) -> None:
    text = " ".join(_email_parts(_notice(sources, "jwst_0541"))[1].split())
    assert text.count("Why: you follow NIRSpec; its rules do not select on EXP_TYPE (they apply to every "
                      "EXP_TYPE)") == 4
    hst = " ".join(text_body(_notice(sources, "hst_0702")).split())
    assert "Why: you follow ACS; APERTURE WFC matches rule value NONE|WFC|WFC-FIX|… (31 alternatives)" in hst
    everything = " ".join(text_body(_notice(sources, "hst_0724")).split())
    assert "Why: you follow everything" in everything
    # The hook for dataset subscriptions: a file a subscriber's dataset selects says so.
    notice = replace(_notice(sources, "jwst_0541"), dataset_hits={"jwst_nirspec_dark_0022.fits": ("NRS1-IFU",)})
    assert "your dataset NRS1-IFU selects jwst_nirspec_dark_0022.fits" in " ".join(text_body(notice).split())


def test_whole_history_digest_stays_within_the_email_budget(sources: dict[str, Any]) -> None:
    """Every bundled JWST activation (149, 2012-2019) in one digest for an 'everything' subscriber."""
    library, history = sources["jwst"]
    ordered = list(history.values())
    sub = _subscription("everything", {"digest": "daily"})
    notices = []
    for before, after in itertools.pairwise(ordered):
        diff = ActivationDiff("jwst", "https://jwst-crds.stsci.edu", "latest", after, before.context,
                              diff_contexts(before.context, after.context, library).changes)
        notices += [n for _s, n in notices_for(diff, [sub])]
    digest = replace(notices[0], activations=tuple(a for n in notices for a in n.activations), public_url=PUBLIC)
    assert len(digest.activations) >= 140
    raw, text, html = _email_parts(digest)
    assert len(raw) <= 100_000
    lines = text.splitlines()
    assert lines[0].startswith("Shortened to stay within 100 KB")
    start = next(i for i, line in enumerate(lines) if line.startswith("Overview: "))
    assert lines[start].startswith(f"Overview: {len(digest.activations)} activations, ")
    assert lines[start + 1].split()[:3] == ["activation", "date", "instruments"]
    rows = lines[start + 2:start + 2 + len(digest.activations)]
    assert [r.split()[0] for r in rows] == [a.activation.context for a in digest.activations]
    assert rows[-1].split()[1] == "2019-07-30"
    assert _long_lines(text) == []
    # The activations not shown in full are said, with where their details are.
    assert "are in this overview only" in " ".join(text.split())
    assert html.count(f'href="{PUBLIC}/activations/') >= len(digest.activations)


def test_readme_notice_sample_is_the_real_output() -> None:
    """README's sample: pieces of the golden notice, verbatim and in order, cut only at `[…]` lines."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    marker = "<!-- notice-sample: tests/golden/jwst_0541.txt -->\n```\n"
    assert marker in readme
    sample = readme.split(marker, 1)[1].split("\n```\n", 1)[0]
    golden = (GOLDEN / "jwst_0541.txt").read_text(encoding="utf-8").split("\n")
    pieces: list[list[str]] = [[]]
    for line in sample.split("\n"):
        if line.startswith("[…"):
            pieces.append([])
        else:
            pieces[-1].append(line)
    at = 0
    for piece in pieces:
        found = next((i for i in range(at, len(golden)) if golden[i:i + len(piece)] == piece), None)
        assert found is not None, f"README sample piece not in the golden notice: {piece[:2]}"
        at = found + len(piece)
    assert pieces[0][0].startswith("Subject: [CRDS JWST] jwst_0541.pmap activated") and len(pieces) >= 2



def test_fit_renders_each_distinct_view_once(sources: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A notice over budget is viewed at each level, but a level that leaves out nothing more
    than the one before (no table longer than its rows) is not rendered again: the same bytes
    as rendering every level (but the boundary, a random draw)."""
    from crdswatch.render import email as email_module
    from crdswatch.render.view import NoticeView

    notice = replace(_notice(sources, "jwst_0160"), unsubscribe_url=f"{PUBLIC}/u/x")
    views: list[Any] = []
    render_text = email_module.render_text

    def counting(view: Any) -> str:
        views.append(view)
        return render_text(view)

    def body(template: Any) -> bytes:
        boundary = re.search(rb'boundary="([^"]+)"', template.static_headers)
        assert boundary is not None
        return bytes(template.body.replace(boundary[1], b"BOUNDARY"))

    monkeypatch.setattr(email_module, "render_text", counting)
    sender = "crdswatch <crdswatch@example.org>"
    skipping = email_module.email_template(notice, sender=sender, with_unsubscribe=True)
    assert len(views) >= 2 and all(a != b for a, b in itertools.pairwise(views))
    rendered = len(views)
    monkeypatch.setattr(NoticeView, "__eq__", lambda a, b: a is b)  # every level rendered
    every = email_module.email_template(notice, sender=sender, with_unsubscribe=True)
    assert len(views) - rendered > rendered  # levels were skipped
    assert body(skipping) == body(every)
