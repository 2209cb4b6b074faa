"""Bridge notices worded and rendered: posts tied to activations, MAST summaries, hostile text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from crdswatch.model import Activation, ActivationDiff, Change
from crdswatch.notices.bridge import announcement_line, mast_notice, post_notice
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.notices.correlate import correlate, names_of
from crdswatch.notices.mast import likely_cause, parse_mast_mail, summarise_events
from crdswatch.notices.upstream import parse_post
from crdswatch.render.bridge import bridge_email, bridge_html, bridge_slack, bridge_text, bridge_webhook
from tests.support import upstream_mail as um

NOW = datetime(2020, 1, 1, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>\x1b[31m red \u202e evil\r\nBcc: x@y"


def _seen() -> list:
    change = Change(old_mapping="jwst_nirspec_dark_0028.rmap", new_mapping="jwst_nirspec_dark_0029.rmap",
                    level="reference", action="added", line="", new_file="jwst_nirspec_dark_0022.fits")
    diff = ActivationDiff("jwst", "http://x", "latest", Activation("2019-07-30T15:06:02+00:00", "jwst_0541.pmap"),
                          "jwst_0540.pmap", (change,))
    return [names_of(diff)]


def _notice(raw: bytes | None = None):
    post = parse_post(raw or um.plain_post(), upstream="nirspec_reffiles_upd", list_id=um.LIST_ID, received=NOW)
    return post_notice(post, correlate(post.references, _seen()), subscriber="ann", checked=NOW.isoformat(),
                       reason="you follow JWST NIRSpec", public_url="https://watch.example.org",
                       unsubscribe_url="https://watch.example.org/unsubscribe?t=abc")


def test_post_notice_ties_the_post_to_its_activation() -> None:
    text = bridge_text(_notice())
    assert "Posted on nirspec_reffiles_upd by redcat@stsci.edu on 2019-07-30 16:00:00 UTC:" in text
    assert ("Active in jwst_0541.pmap (activated 2019-07-30 15:06:02 UTC): jwst_0541.pmap, "
            "jwst_nirspec_dark_0029.rmap, jwst_nirspec_dark_0022.fits") in " ".join(text.split())
    assert "https://watch.example.org/activations/jwst_0541.pmap" in text
    assert "Tickets: CRDS-287, REDCAT-52, JWSTDMSSDPDR-5245" in text
    assert all(len(line) <= 78 or " " not in line.strip() for line in text.splitlines())


def test_files_not_yet_active_are_said_so() -> None:
    raw = um.plain_post("New flat jwst_nirspec_flat_0099.fits coming in the next context.\n", subject="Flats")
    text = " ".join(bridge_text(_notice(raw)).split())
    assert "Not active on the server as of 2020-01-01 00:00:00 UTC: jwst_nirspec_flat_0099.fits" in text
    assert "Active in" not in text


def test_hostile_post_text_is_neutralised_everywhere() -> None:
    notice = _notice(um.plain_post(HOSTILE + "\n", subject="Hi " + HOSTILE.replace("\r\n", " ")))
    html = bridge_html(notice)
    assert "<script>" not in html and "&lt;script&gt;" in html
    for rendered in (bridge_text(notice), html, json.dumps(bridge_slack(notice)), json.dumps(bridge_webhook(notice))):
        assert "\x1b" not in rendered
    raw = bytes(bridge_email(notice, sender="crdswatch@example.org", to=["ann@example.org"],
                             message_id="<a@example.org>", date=NOW, list_id="nirspec.watch.example.org"))
    head = raw.split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in head and b"\r\nBcc:" not in head


def test_slack_blocks_validate() -> None:
    (message,) = bridge_slack(_notice())
    assert message["blocks"][0]["type"] == "header"
    assert all(len(json.dumps(b)) < 3500 for b in message["blocks"])


def test_mast_notice_names_the_likely_cause() -> None:
    events = parse_mast_mail(um.mast_mail(um.mast_events(count=37)))
    (summary,) = summarise_events(events)
    cause = likely_cause(summary.last_archived, [("2019-07-30T15:06:02+00:00", "jwst_0541.pmap")])
    notice = mast_notice(summary, cause, source="mast", subscriber="ann", reason="you follow program 1234",
                         public_url="https://watch.example.org")
    text = bridge_text(notice)
    assert notice.subject == "[MAST JWST] program 1234: 37 files reprocessed on 2019-08-02"
    assert "Likely cause: jwst_0541.pmap" in text and "/activations/jwst_0541.pmap" in text
    assert "jw01234001001_02100_00001" in text


def test_announcement_line() -> None:
    assert (announcement_line("nirspec_reffiles_upd", "2019-07-30T16:00:00+00:00", "Darks")
            == "Announced on nirspec_reffiles_upd on 2019-07-30: Darks")


def test_audiences() -> None:
    from crdswatch.notices.bridge import post_audience, program_audience
    from crdswatch.notices.subscriptions import subscription_from_config

    subs = [subscription_from_config("nirspec", subscriber_from_json({"email": ["a@x.org"], "instruments": ["nirspec"], "reftypes": ["dark"]})),
            subscription_from_config("miri", subscriber_from_json({"email": ["b@x.org"], "instruments": ["miri"]})),
            subscription_from_config("hst", subscriber_from_json({"email": ["c@x.org"], "observatories": ["hst"]})),
            subscription_from_config("prog", subscriber_from_json({"webhook_url": "https://x", "programs": ["01234"], "instruments": ["miri"]}))]
    audience = post_audience(subs, "jwst", ("nirspec",))
    assert [(s.name, why) for s, why in audience] == [("nirspec", "subscriber 'nirspec' follows JWST NIRSPEC")]
    assert [s.name for s, _ in post_audience(subs, "jwst", ())] == ["nirspec", "miri", "prog"]
    assert [s.name for s, _ in program_audience(subs, "1234")] == ["prog"]
