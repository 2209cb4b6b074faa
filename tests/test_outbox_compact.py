"""Community scale, behaviour only: compact outbox rows, one rendering personalised per recipient."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdswatch.channels.smtp_pipeline import DataBody, _wire_body
from crdswatch.notices.codec import decode_selection, encode_selection, selected_diff
from crdswatch.render.email import email_message, email_template
from crdswatch.render.sample import sample_notice

NOW = datetime(2026, 1, 2, tzinfo=UTC)


@given(st.lists(st.integers(min_value=0, max_value=400)))
def test_selection_round_trips(indices: list[int]) -> None:
    assert decode_selection(encode_selection(indices)) == sorted(set(indices))


def test_selection_is_compact_and_refuses_garbage() -> None:
    assert encode_selection([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"
    for bad in ("3-1", "-2", "a", "1-b"):
        with pytest.raises(ValueError):
            decode_selection(bad)


def test_a_selection_beyond_the_stored_changes_is_unreadable() -> None:
    diff = sample_notice(NOW).activations[0]
    assert selected_diff(diff, {"sel": "0"}).changes == diff.changes[:1]
    with pytest.raises(ValueError):
        selected_diff(diff, {"sel": f"0-{len(diff.changes)}"})


def _parts(raw: bytes) -> list[str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [p.get_content().replace("\r\n", "\n") for p in parsed.iter_parts()]


@pytest.mark.parametrize(("url", "manage"), [("https://x.example/unsubscribe?token=a&b=1", None),
                                             (None, None), ("https://x.example/u?t=1", "https://x.example/manage/" + "t" * 90)])
def test_template_personalised_equals_the_message_rendered_for_that_recipient(url: str | None, manage: str | None) -> None:
    reason = 'subscriber "ann" <follows> JWST NIRSpec & more, café, and a reason long enough to wrap in the text'
    notice = dataclasses.replace(sample_notice(NOW), subscriber="ann", reason=reason, unsubscribe_url=url,
                                 manage_url=manage)
    kw = {"to": ["ann@example.org"], "message_id": "<m1@x.example>", "date": NOW, "list_id": "crdswatch-ann.x.example"}
    reference = email_message(notice, sender="CRDS <crds@x.example>", unsubscribe_url=url, **kw)  # type: ignore[arg-type]
    template = email_template(notice, sender="CRDS <crds@x.example>", with_unsubscribe=url is not None,
                              with_manage=manage is not None)
    raw = template.render(reason=reason, unsubscribe_url=url, manage_url=manage, **kw)  # type: ignore[arg-type]
    assert template.eightbit
    assert _parts(raw) == _parts(reference.as_bytes(policy=email.policy.SMTP))
    head = raw.split(b"\r\n\r\n", 1)[0]
    ours = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("Subject", "From", "To", "Message-ID", "Date", "List-Id", "List-Unsubscribe", "Auto-Submitted"):
        assert ours.get(name) == reference.get(name), name
    assert b"@@crdswatch" not in raw and b"\r\n" in head and b"\n\n" not in raw.replace(b"\r\n", b"")
    assert [p["Content-Transfer-Encoding"] for p in ours.iter_parts()] == ["8bit", "8bit"]
    with pytest.raises(ValueError):  # a template with a link cannot be sent without one, nor vice versa
        template.render(reason=reason, unsubscribe_url=None if url else "https://x.example/u", manage_url=manage,
                        **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("first", [b".first line\r\n", b""])
@pytest.mark.parametrize("reason", [".a reason that starts with a dot", "a plain reason"])
def test_template_as_data_carries_it_is_the_rendered_message_dot_stuffed(reason: str, first: bytes) -> None:
    # Lines that start with a dot inside the shared body, right after a personalised value, and
    # a personalised value at the start of a line: each must get exactly one more dot.
    url, manage = "https://x.example/u?t=1", "https://x.example/manage/t"
    notice = dataclasses.replace(sample_notice(NOW), subscriber="ann", reason=reason, unsubscribe_url=url,
                                 manage_url=manage)
    template = email_template(notice, sender="CRDS <crds@x.example>", with_unsubscribe=True, with_manage=True)
    reason_html = b"@@crdswatch-reason-html@@"
    assert reason_html in template.body
    body = template.body.replace(reason_html, b"\r\n" + reason_html + b"\r\n.after\r\n", 1)
    template = dataclasses.replace(template, body=first + body.replace(b"\r\n<", b"\r\n.<", 3))
    kw = {"reason": reason, "to": ["ann@example.org"], "message_id": "<m1@x.example>", "date": NOW,
          "list_id": "crdswatch-ann.x.example", "unsubscribe_url": url, "manage_url": manage}
    message = template.render(**kw)  # type: ignore[arg-type]
    stuffed, size = template.render_data(**kw)  # type: ignore[arg-type]
    assert (size, stuffed) == _wire_body(message)
    assert DataBody(stuffed, size).message() == message


def test_fits_fallback_is_on_only_when_configured(tmp_path: Path) -> None:
    """astropy being importable (the test extra brings it) must not add a request per new file."""
    from crdswatch.config import Settings
    from crdswatch.service.runtime import build_watches

    source = {"observatory": "jwst", "server_url": "http://127.0.0.1:9"}
    plain = build_watches(Settings(sources=[source]), tmp_path)[0].source
    asked = build_watches(Settings(sources=[{**source, "fits_fallback": True}]), tmp_path)[0].source
    assert plain.fits_fallback is False and asked.fits_fallback is True


async def test_a_notice_is_rendered_once_off_the_event_loop_for_concurrent_recipients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large notice's one full rendering takes tens of milliseconds: MailWiring.warm makes it in
    a worker thread, and sends of the same shape arriving meanwhile wait for that one rendering."""
    import asyncio
    import threading

    from crdswatch.channels import mail
    from crdswatch.channels.email import EmailChannel, SmtpSettings

    made: list[int] = []
    real = mail.email_template

    def recording(*args: object, **kwargs: object) -> object:
        made.append(threading.get_ident())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mail, "email_template", recording)
    wiring = mail.MailWiring(EmailChannel(SmtpSettings(host="127.0.0.1", port=1, security="none")),
                             "CRDS <crds@x.example>")
    notice = dataclasses.replace(sample_notice(NOW), unsubscribe_url="https://x.example/u?t=1")
    loop_thread = threading.get_ident()
    async with wiring.cycle():  # a drain cycle: sessions connect lazily, so none is opened here
        await asyncio.gather(*(wiring.warm(notice, True, False) for _ in range(5)))
        template = wiring.rendering(notice, True, False, None)  # the warmed one
    assert len(made) == 1 and made[0] != loop_thread
    assert template is not None
    assert b"a@x.example" in template.render_data(reason="r", to=["a@x.example"], message_id="<m@x.example>", date=NOW,
                                                  list_id="l.x.example", unsubscribe_url="https://x.example/u")[0]


@given(st.sampled_from(["Unsubscribe: ", "Change what you get or leave: ", "Why you got this: ", "x" * 77 + " "]),
       st.text(alphabet=st.sampled_from("ab/:?=.%-_~|, \t\ue000\u00a0\x1c"), max_size=160))
def test_a_footer_wraps_as_the_text_body_does(label: str, value: str) -> None:
    from crdswatch.render.email import _footer
    from crdswatch.render.layout import wrap

    assert _footer(label, value) == "\r\n".join(wrap(label + value, "", "  ")).encode()


def test_a_list_members_template_mail_has_the_lists_headers_as_the_stdlib_message_does() -> None:
    """List mail goes through the shared rendering too: the list's headers replace the notice's
    and follow the rest, as apply_headers does on the stdlib message (same headers, same parts)."""
    from crdswatch.render.email_headers import apply_headers, mailing_list_headers

    url, manage = "https://x.example/unsubscribe?token=t1", "https://x.example/manage/m1"
    notice = dataclasses.replace(sample_notice(NOW), subscriber="ann", reason="the jwst-nirspec list follows NIRSpec",
                                 unsubscribe_url=url, manage_url=manage)
    lists = mailing_list_headers(name="jwst-nirspec", domain="lists.x.example", description="JWST NIRSpec updates",
                                 archive_url="https://x.example/lists/jwst-nirspec/feed.atom", unsubscribe_url=url)
    kw = {"to": ["ann@example.org"], "message_id": "<m1@x.example>", "date": NOW,
          "list_id": "jwst-nirspec.lists.x.example"}
    reference = apply_headers(email_message(notice, sender="CRDS <crds@x.example>", unsubscribe_url=url, **kw),  # type: ignore[arg-type]
                              lists)
    template = email_template(notice, sender="CRDS <crds@x.example>", with_unsubscribe=True, with_manage=True)
    raw = template.render(reason=notice.reason, unsubscribe_url=url, manage_url=manage, extra_headers=lists,
                          **kw)  # type: ignore[arg-type]
    ours = email.message_from_bytes(raw, policy=email.policy.default)
    assert _parts(raw) == _parts(reference.as_bytes(policy=email.policy.SMTP))
    assert sorted(ours.keys()) == sorted(reference.keys())
    for name in reference:
        if name != "Content-Type":  # its boundary is drawn at random
            assert ours.get_all(name) == reference.get_all(name), name
    assert list(ours.keys())[-len(lists):] == list(lists)  # after the rest, in the list's order


def test_change_from_json_is_the_dataclass_constructor() -> None:
    """The decoder sets a Change's fields directly: equal to Change(**...), fields in the same
    order (to_json, and so stored rows and webhook bytes, follow it), and a record with a field
    missing or unknown still fails as the constructor does."""
    import json

    import pytest

    from crdswatch.model import Change
    from crdswatch.notices.codec import change_from_json

    full = Change("a.rmap", "b.rmap", "reference", "replaced", "line", ("X",), ("META.EXPOSURE.TYPE",), "2020-01-01 00:00:00",
                  "old.fits", "new.fits", "nirspec", "dark", "Match rule", None, None, [1, 2])
    for data in (full.to_json(), {"old_mapping": "a", "new_mapping": "b", "level": "context", "action": "added", "line": "l"},
                 {**full.to_json(), "match": None}):
        decoded = change_from_json(data)
        expected = Change(**{**data, "match": tuple(data.get("match") or ()), "parameters": tuple(data.get("parameters") or ())})
        assert decoded == expected and list(vars(decoded)) == list(vars(expected))
        assert json.dumps(decoded.to_json()) == json.dumps(expected.to_json())
    for bad in ({**full.to_json(), "extra": 1}, {k: v for k, v in full.to_json().items() if k != "line"}):
        with pytest.raises(TypeError):
            change_from_json(bad)
