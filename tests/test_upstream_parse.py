"""Upstream posts and MAST mails, parsed from real-looking bytes (pure parts of the bridge)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crdswatch.model import Activation, ActivationDiff, Change
from crdswatch.notices.correlate import correlate, names_of
from crdswatch.notices.mast import MastFormatError, likely_cause, parse_mast_mail, summarise_events
from crdswatch.notices.upstream import extract_references, infer_instruments, parse_post
from tests.support import upstream_mail as um

NOW = datetime(2020, 1, 1, tzinfo=UTC)


def _parse(raw: bytes, list_id: str | None = um.LIST_ID):
    return parse_post(raw, upstream="nirspec_reffiles_upd", list_id=list_id, received=NOW)


@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_plain_post_in_every_transfer_encoding(cte: str) -> None:
    post = _parse(um.plain_post(cte=cte))
    assert post.kind == "post"
    assert post.sender == "redcat@stsci.edu"
    assert post.date == "2019-07-30T16:00:00+00:00"
    assert "READNOISE and SUPERBIAS" in post.body
    refs = post.references
    assert refs.contexts == ("jwst_0541.pmap",)
    assert refs.mappings == ("jwst_nirspec_dark_0029.rmap",)
    assert refs.files == ("jwst_nirspec_dark_0022.fits",)
    assert refs.tickets == ("CRDS-287", "REDCAT-52", "JWSTDMSSDPDR-5245")


def test_iso_8859_1_body_is_decoded() -> None:
    post = _parse(um.plain_post("Pédigrée für jwst_0541.pmap — naïve\n".replace("—", "-"), charset="iso-8859-1"))
    assert "Pédigrée für" in post.body and post.references.contexts == ("jwst_0541.pmap",)


def test_multipart_prefers_text_plain() -> None:
    post = _parse(um.multipart_post())
    assert "<p>" not in post.body and "CRDS-287" in post.body


def test_html_only_post_is_converted_to_text() -> None:
    post = _parse(um.html_only_post())
    assert "<" not in post.body
    assert "jwst_nirspec_dark_0022.fits" in post.body and "Context jwst_0541.pmap & REDCAT-52" in post.body
    assert post.references.tickets == ("REDCAT-52",)


def test_listserv_confirmation_request_is_not_a_post() -> None:
    post = _parse(um.confirmation_request("4A1B2C3D"), list_id=None)
    assert post.kind == "confirm-request"
    assert post.confirmation is not None
    assert post.confirmation.cookie == "4A1B2C3D"
    assert post.confirmation.reply_to == "LISTSERV@LISTSERV.STSCI.EDU"


def test_mail_from_another_list_is_admin_mail() -> None:
    assert _parse(um.plain_post(), list_id="MIRI_REFFILES_UPD.LISTSERV.STSCI.EDU").kind == "admin"


def test_message_without_id_gets_a_stable_one() -> None:
    raw = um.plain_post().replace(b"Message-ID: <post-1@listserv.stsci.edu>\n", b"")
    assert _parse(raw).message_id == _parse(raw).message_id != "<post-1@listserv.stsci.edu>"


def test_references_ignore_charsets_and_lookalikes() -> None:
    refs = extract_references("UTF-8 ISO-8859-1 hst_1234.pmap 4bb1536oi_drk.fits hst_acs_darkfile_0250.rmap CRDS-1")
    assert refs.tickets == ("CRDS-1",)
    assert refs.contexts == ("hst_1234.pmap",)
    assert refs.files == ("4bb1536oi_drk.fits",)
    assert refs.mappings == ("hst_acs_darkfile_0250.rmap",)


def test_instruments_inferred_from_list_names() -> None:
    assert infer_instruments("nirspec_reffiles_upd") == ("nirspec",)
    assert infer_instruments("MIRI_REFFILES_UPD") == ("miri",)
    assert infer_instruments("mast") == ()


def _diff(context: str, date: str, new_file: str | None) -> ActivationDiff:
    change = Change(old_mapping="a.rmap", new_mapping="jwst_nirspec_dark_0029.rmap", level="reference",
                    action="added", line="", new_file=new_file)
    return ActivationDiff("jwst", "http://x", "latest", Activation(date, context), None, (change,))


def test_correlation_names_the_activation_and_what_is_not_active() -> None:
    refs = extract_references("jwst_0541.pmap jwst_nirspec_dark_0022.fits jwst_nirspec_flat_9999.fits")
    seen = [names_of(_diff("jwst_0540.pmap", "2019-07-01T00:00:00+00:00", None)),
            names_of(_diff("jwst_0541.pmap", "2019-07-30T15:06:02+00:00", "jwst_nirspec_dark_0022.fits"))]
    found = correlate(refs, seen)
    assert found.contexts == ("jwst_0541.pmap",)
    assert found.found[0][1] == ("jwst_0541.pmap", "jwst_nirspec_dark_0022.fits")
    assert found.not_active == ("jwst_nirspec_flat_9999.fits",)


def test_mast_mail_events_summarised_per_program() -> None:
    events = parse_mast_mail(um.mast_mail(um.mast_events(count=37) + um.mast_events("2345", 2, "Public")))
    assert len(events) == 39 and events[0].program == "1234" and events[0].mission == "jwst"
    summaries = summarise_events(events)
    assert [s.headline() for s in summaries] == [
        "program 1234: 37 files reprocessed on 2019-08-02",
        "program 2345: 2 files made public on 2019-08-02",
    ]
    assert summaries[0].filesets == tuple(f"jw01234001001_0210{n}_00001" for n in range(3))


@pytest.mark.parametrize(("events", "message"), [
    ([{"event_id": "1", "program": "1", "event_type": "Deleted", "archived_date": "2019-01-01"}], "event_type"),
    ([{"event_id": "1", "program": "1", "event_type": "New"}], "missing archived_date"),
    ([{"event_id": "1", "program": "1", "event_type": "New", "archived_date": "yesterday"}], "not an ISO date"),
    ({"no": "events"}, "expected a list"),
])
def test_bad_mast_attachments_say_what_is_wrong(events: object, message: str) -> None:
    with pytest.raises(MastFormatError, match=message):
        parse_mast_mail(um.mast_mail(events))  # type: ignore[arg-type]


def test_mast_mail_without_attachment_and_oversized_attachment() -> None:
    with pytest.raises(MastFormatError, match="no JSON attachment"):
        parse_mast_mail(um.plain_post())
    with pytest.raises(MastFormatError, match="limit"):
        parse_mast_mail(um.mast_mail(um.mast_events(count=50)), max_bytes=100)


def test_likely_cause_is_the_last_activation_before_archiving() -> None:
    history = [("2019-07-01T00:00:00+00:00", "jwst_0540.pmap"), ("2019-07-30T15:06:02+00:00", "jwst_0541.pmap")]
    assert likely_cause("2019-08-02T10:00:00+00:00", history) == "jwst_0541.pmap"
    assert likely_cause("2019-07-15T00:00:00+00:00", history) == "jwst_0540.pmap"
    assert likely_cause("2018-01-01T00:00:00+00:00", history) is None
