"""The list story without a network: request -> token -> confirmation -> membership, and its refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from crdswatch.app.lists import ListPolicy, ListService, Outgoing, TokenProblem, UnknownList
from crdswatch.notices.list_addresses import Recipient, parse_commands, parse_recipient
from crdswatch.notices.list_spec import ListSpec
from crdswatch.notices.subscriptions import subscription_from_config
from crdswatch.store import Store
from crdswatch.store.lists import member_subscriber_name
from tests.support.store_db import BACKENDS, database_url

D = "lists.example.org"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NIRSPEC = ListSpec("nirspec_reffiles_upd", D, "JWST NIRSpec reference file updates",
                   {"observatories": ["jwst"], "instruments": ["nirspec"]})
MIRI = ListSpec("miri_reffiles_upd", D, "JWST MIRI reference file updates", {"instruments": ["miri"]})


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url, Store.open(url) as s:
        yield s


@pytest.fixture
def service(store: Store) -> ListService:
    policy = ListPolicy(D, b"0123456789abcdef-test", confirm_base="https://crdswatch.example.org/confirm",
                        per_address=3, per_hour=50)
    return ListService(store, [NIRSPEC, MIRI], policy)


def token_of(out: list[Outgoing]) -> str:
    (mail,) = out
    found = re.fullmatch(r"confirm ([0-9a-f]{40})", str(mail.message["Subject"]))
    assert found, mail.message["Subject"]
    return found.group(1)


def mail(sender: str = "Jane <Jane.Doe@uni.example.edu>", subject: str = "", body: str = "",
         **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body or "\n")
    return msg


def rcpt(local: str) -> Recipient:
    found = parse_recipient(f"{local}@{D}", D, [NIRSPEC.name, MIRI.name])
    assert found is not None
    return found


def test_subscribe_is_only_a_confirmation_until_confirmed(service: ListService, store: Store) -> None:
    out = service.request(NIRSPEC.name, "Jane.Doe@Uni.Example.edu", "subscribe", T0)
    msg = out[0].message
    assert out[0].recipients == ("jane.doe@uni.example.edu",)
    assert out[0].envelope_from == f"nirspec_reffiles_upd-bounces@{D}"
    assert msg["Auto-Submitted"] == "auto-replied"
    token = token_of(out)
    assert str(msg["From"]) == f"nirspec_reffiles_upd-confirm+{token}@{D}"
    assert f"https://crdswatch.example.org/confirm/{token}" in msg.get_content()
    assert store.lists.members() == []  # nothing yet: double opt-in
    done, replies = service.confirm(token, T0 + timedelta(hours=1), list_name=NIRSPEC.name)
    assert (done.action, done.address, done.changed) == ("subscribe", "jane.doe@uni.example.edu", True)
    assert str(replies[0].message["Subject"]).startswith("Welcome")
    (member,) = service.members(NIRSPEC.name)
    sub = store.get_subscriber(member_subscriber_name(NIRSPEC.name, member.address))
    assert sub is not None
    subscription = subscription_from_config(sub.name, sub.config)
    assert subscription.channels == ("email:jane.doe@uni.example.edu",)
    assert subscription.filters.instruments == {"nirspec"}


def test_tokens_are_single_use_expiring_bound_and_unforgeable(service: ListService) -> None:
    token = token_of(service.request(NIRSPEC.name, "a@example.com", "subscribe", T0))
    with pytest.raises(TokenProblem, match="for list nirspec_reffiles_upd, not miri_reffiles_upd"):
        service.confirm(token, T0, list_name=MIRI.name)  # wrong list
    with pytest.raises(TokenProblem, match="unknown"):
        service.confirm("0" * 40, T0)  # forged
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    with pytest.raises(TokenProblem):
        service.confirm(forged, T0)
    with pytest.raises(TokenProblem, match="expired"):
        service.confirm(token, T0 + timedelta(hours=48))
    later = token_of(service.request(NIRSPEC.name, "a@example.com", "subscribe", T0))
    service.confirm(later, T0)
    with pytest.raises(TokenProblem, match="already used"):
        service.confirm(later, T0)  # replayed


def test_unsubscribe_by_mail_needs_confirmation(service: ListService, store: Store) -> None:
    service.add_member(NIRSPEC.name, "b@example.com", T0)
    forged = mail(sender="b@example.com")
    out = service.handle_mail(rcpt("nirspec_reffiles_upd-leave"), "attacker@evil.example", forged, T0)
    assert [m.address for m in service.members(NIRSPEC.name)] == ["b@example.com"]  # still there
    assert out[0].recipients == ("b@example.com",)  # the confirmation goes to the member, not the forger
    token = token_of(out)
    reply = mail(sender="b@example.com", subject=f"Re: confirm {token}")
    service.handle_mail(rcpt("nirspec_reffiles_upd-request"), "b@example.com", reply, T0)
    assert service.members(NIRSPEC.name) == []
    assert store.get_subscriber(member_subscriber_name(NIRSPEC.name, "b@example.com")) is None


@pytest.mark.parametrize("headers,mail_from", [
    ({}, ""),
    ({"Auto_Submitted": "auto-replied"}, "c@example.com"),
    ({"Precedence": "bulk"}, "c@example.com"),
    ({"Precedence": "list"}, "c@example.com"),
    ({"X_Loop": f"crdswatch@{D}"}, "c@example.com"),
    ({}, f"someone@{D}"),
])
def test_automatic_mail_is_never_answered(service: ListService, store: Store, headers: dict[str, str],
                                         mail_from: str) -> None:
    sender = f"someone@{D}" if mail_from.endswith(D) else "c@example.com"
    out = service.handle_mail(rcpt("nirspec_reffiles_upd-join"), mail_from, mail(sender=sender, **headers), T0)
    assert out == []
    (logged,) = store.lists.requests()
    assert logged.outcome == "ignored" and not logged.replied


def test_floods_are_rate_limited_per_address_and_help_for_unknown_goes_once(service: ListService) -> None:
    join = rcpt("nirspec_reffiles_upd-join")
    trips: list[tuple[str, str]] = []
    service.on_trip = lambda reason, detail: trips.append((reason, detail))
    sent = [service.handle_mail(join, "d@example.com", mail(sender="d@example.com"), T0) for _ in range(6)]
    assert [len(s) for s in sent] == [1, 1, 1, 0, 0, 0]  # per_address=3 per hour
    assert [r for r, _ in trips] == ["rate_address"] * 3 and "max_requests_per_address (3)" in trips[0][1]
    assert service.handle_mail(join, "d@example.com", mail(sender="d@example.com"), T0 + timedelta(hours=1, seconds=1))
    request = rcpt("miri_reffiles_upd-request")
    first = service.handle_mail(request, "e@example.com", mail(sender="e@example.com", subject="gimme"), T0)
    assert "Could not understand" in first[0].message.get_content()
    assert service.handle_mail(request, "e@example.com", mail(sender="e@example.com", subject="gimme"), T0) == []
    helped = service.handle_mail(request, "e@example.com", mail(sender="e@example.com", subject="help"), T0)
    assert "nirspec_reffiles_upd" in helped[0].message.get_content()


def test_request_address_commands_and_recipient_parsing() -> None:
    names = [NIRSPEC.name, MIRI.name, "a-b"]
    assert parse_recipient(f"MIRI_reffiles_upd-Subscribe-Request@{D.upper()}", D, names) == Recipient(
        MIRI.name, "subscribe")
    assert parse_recipient(f"a-b-unsubscribe-request@{D}", D, names) == Recipient("a-b", "unsubscribe")
    assert parse_recipient(f"a-b-bounces+jo.x=uni.edu@{D}", D, names).verp_member == "jo.x@uni.edu"  # type: ignore[union-attr]
    assert parse_recipient(f"a-b@{D}", D, names) == Recipient("a-b", "post")
    for bad in (f"nope-join@{D}", "a-b-join@other.org", f"a-b-confirm+zz@{D}", f"a-b-join+x@{D}"):
        assert parse_recipient(bad, D, names) is None
    token = "ab" * 20
    commands = parse_commands("Re: confirm " + token.upper(), ["> subscribe", "leave", "--", "help"])
    assert [(c.kind, c.argument) for c in commands] == [("confirm", token), ("unsubscribe", "")]


def test_unknown_list_is_a_clear_error(service: ListService) -> None:
    with pytest.raises(UnknownList, match="no list named 'nirspec'"):
        service.request("nirspec", "x@example.com", "subscribe", T0)


def test_list_unsubscribe_of_any_notice_goes_out_raw_not_rfc2047_encoded() -> None:
    """The bytes aiosmtplib transmits: a long one-click URL stays an angle-bracketed URI."""
    from aiosmtplib.email import flatten_message

    from crdswatch.render.email import email_message
    from crdswatch.render.sample import sample_notice

    url = "https://crdswatch.example.org/unsubscribe?token=" + "eyJhYmMiOiJkZWYifQ" * 6 + ".c2lnbmF0dXJl"
    msg = email_message(sample_notice(T0), sender="CRDS <crds@example.org>", to=["a@example.org"],
                        message_id="x@crdswatch.invalid", date=T0, list_id="crdswatch-a.crdswatch.invalid",
                        unsubscribe_url=url, unsubscribe_mailto="mailto:leave@example.org")
    head = flatten_message(msg).split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    (line,) = [v for v in unfolded.split("\r\n") if v.startswith("List-Unsubscribe:")]
    assert line == f"List-Unsubscribe: <{url}>, <mailto:leave@example.org>"
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in unfolded
    assert "=?" not in "".join(v for v in unfolded.split("\r\n") if v.startswith("List-"))


def test_postfix_transport_line_matches_the_example_config() -> None:
    from crdswatch.config import load_settings

    root = Path(__file__).resolve().parent.parent
    settings = load_settings(root / "config" / "crdswatch.example.toml", {})
    assert settings.inbound is not None and [item.name for item in settings.lists]
    lines = [line.split() for line in (root / "deploy" / "postfix-lists.cf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == [[settings.inbound.domain, f"lmtp:[{settings.inbound.host}]:{settings.inbound.port}"]]


def test_a_members_own_narrowing_and_digest_survive_the_start_up_sync(service: ListService, store: Store) -> None:
    address = "jane.doe@uni.example.edu"
    service.confirm(token_of(service.request(NIRSPEC.name, address, "subscribe", T0)), T0, list_name=NIRSPEC.name)
    other = "bob@example.org"  # never chose anything: follows the list
    service.confirm(token_of(service.request(NIRSPEC.name, other, "subscribe", T0)), T0, list_name=NIRSPEC.name)
    service.set_own_choices(NIRSPEC.name, address, {"reftypes": ["flat"], "digest": "daily"}, T0)
    name = member_subscriber_name(NIRSPEC.name, address)
    # the operator narrows the list in the config file; the daemon restarts and syncs every member
    narrower = ListSpec(NIRSPEC.name, D, NIRSPEC.description,
                        {"observatories": ["jwst"], "instruments": ["nirspec"], "reftypes": ["dark", "flat"],
                         "digest": "weekly"})
    restarted = ListService(store, [narrower, MIRI], service.policy)
    assert restarted.sync_members(T0 + timedelta(days=1)) == 2
    mine = store.get_subscriber(name)
    assert mine is not None
    assert (mine.config.reftypes, mine.config.digest) == (("flat",), "daily")
    assert mine.config.instruments == ("nirspec",)  # what the member did not choose follows the list
    sub = subscription_from_config(name, mine.config)
    assert sub.filters.reftypes == {"flat"} and sub.digest == "daily"
    theirs = store.get_subscriber(member_subscriber_name(NIRSPEC.name, other))
    assert theirs is not None and (theirs.config.reftypes, theirs.config.digest) == (("dark", "flat"), "weekly")
    assert not theirs.config.own
    restarted.sync_members(T0 + timedelta(days=2))  # and again: still theirs
    again = store.get_subscriber(name)
    assert again is not None and again.config == mine.config
