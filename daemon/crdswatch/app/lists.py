"""The mailing lists' story: a request -> a confirmation mail -> a confirmed token -> a membership.

`ListService` is what the inbound listener, the web pages and the CLI call. Its methods never
send anything: they return the `Outgoing` mails to send (see `service.inbound.deliver`), so the
rules stay testable without a mail server and the caller picks the transport.

For the web pages:
  service.request(list, address, "subscribe" | "unsubscribe", now) -> [Outgoing]  (double opt-in)
  service.describe(token, now)  -> TokenClaim  (what a token would confirm; GET must not confirm)
  service.confirm(token, now)   -> (Confirmed, [Outgoing])  (POST; single use)
  service.summaries(), service.members(list), service.spec(list)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Literal

import structlog

from crdswatch.errors import UnknownList
from crdswatch.model import SubscriberConfig
from crdswatch.notices.bounce_score import BounceRules
from crdswatch.notices.list_addresses import (
    Command,
    Recipient,
    automatic_reason,
    canonical_address,
    parse_commands,
)
from crdswatch.notices.list_spec import MEMBER_CHOICES, ListSpec, narrowing_text, own_choices
from crdswatch.notices.list_tokens import (
    DEFAULT_TTL,
    TokenClaim,
    TokenProblem,
    check_token,
    make_token,
    token_digest,
)
from crdswatch.render.list_mail import confirmation_message, help_message, result_message
from crdswatch.store import Store
from crdswatch.store.lists import ListMember, member_subscriber_name

if TYPE_CHECKING:
    from crdswatch.config import Settings

__all__ = ["Confirmed", "ListPolicy", "ListService", "Outgoing", "TokenProblem", "UnknownList", "list_service"]

log = structlog.get_logger("crdswatch.lists")
Action = Literal["subscribe", "unsubscribe"]
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ListPolicy:
    """How the lists behave at one mail domain (from [inbound], [http] and [alerts])."""

    domain: str
    secret: bytes
    token_ttl: timedelta = DEFAULT_TTL
    per_address: int = 5  # replies per sender address per hour
    per_hour: int = 200  # replies per hour, everybody together
    confirm_base: str | None = None  # web confirmation page: confirm_base + "/" + token
    admins: tuple[str, ...] = ()
    rules: BounceRules = field(default_factory=BounceRules)

    @property
    def loop_id(self) -> str:
        """Our X-Loop value: mail carrying it came from us and is never answered."""
        return f"crdswatch@{self.domain}"


@dataclass(frozen=True)
class Outgoing:
    """A mail to send: the message, its envelope sender (a -bounces address) and recipients."""

    message: EmailMessage
    envelope_from: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Confirmed:
    list_name: str
    address: str
    action: Action
    changed: bool  # False: it already was so (subscribed twice, left twice)
    narrowing: dict[str, Any] | None = None  # a subscribe's own narrowing, now the member's


class ListService:
    """Requests, confirmations and memberships of the configured lists; one store, one domain."""

    def __init__(self, store: Store, specs: Sequence[ListSpec], policy: ListPolicy) -> None:
        self.store = store
        self.policy = policy
        self.specs = {s.name: s for s in specs}
        self._by_lower = {s.name.lower(): s for s in specs}
        # Told (reason, detail) when a rate limit holds a reply back; the daemon counts it for
        # /healthz and /metrics. Called from a worker thread.
        self.on_trip: Callable[[str, str], None] = lambda reason, detail: None

    # -- lookups ----------------------------------------------------------------------------

    def spec(self, list_name: str) -> ListSpec:
        found = self._by_lower.get(list_name.lower())
        if found is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UnknownList(f"no list named {list_name!r} (configured: {known})")
        return found

    def members(self, list_name: str) -> list[ListMember]:
        return self.store.lists.members(self.spec(list_name).name)

    def summaries(self) -> list[dict[str, Any]]:
        """Per list: name, description, List-Id, join address, member and disabled counts."""
        counts = self.store.lists.member_counts()
        return [{"name": s.name, "description": s.description, "list_id": s.list_id,
                 "join": s.address("join"), "leave": s.address("leave"), "request": s.address("request"),
                 "members": counts.get(s.name, (0, 0))[0], "disabled": counts.get(s.name, (0, 0))[1]}
                for s in self.specs.values()]

    def confirm_url(self, token: str) -> str | None:
        base = self.policy.confirm_base
        return f"{base.rstrip('/')}/{token}" if base else None

    def _message_id(self) -> str:
        return f"<{secrets.token_hex(12)}@{self.policy.domain}>"

    # -- requests and confirmations --------------------------------------------------------

    def request(
        self, list_name: str, address: str, action: Action, now: datetime, *, origin: str = "email",
        in_reply_to: str | None = None, narrowing: dict[str, Any] | None = None,
    ) -> list[Outgoing]:
        """Start a subscribe or unsubscribe: a confirmation mail to `address`, nothing else changes.

        `narrowing` (a subscribe's reftypes/parameters, validated by the caller) rides in the
        pending token and becomes the member's own choice when confirmed.
        Already a member (or not one, to leave): a short reply says so instead of a token.
        """
        spec, address = self.spec(list_name), canonical_address(address)
        member = self.store.lists.get_member(spec.name, address)
        if action == "subscribe" and member is not None and member.enabled:
            return [self._result(spec, address, "already-member", now, action, origin, in_reply_to)]
        if action == "unsubscribe" and member is None:
            return [self._result(spec, address, "not-member", now, action, origin, in_reply_to)]
        narrowing = {k: v for k, v in (narrowing or {}).items() if k in ("reftypes", "parameters") and v}
        claim = TokenClaim(spec.name, address, action, secrets.token_hex(16), now + self.policy.token_ttl,
                           narrowing=narrowing if action == "subscribe" and narrowing else None)
        token = make_token(self.policy.secret, claim)
        self.store.lists.save_token(token_digest(token), claim, now)
        msg = confirmation_message(
            spec, to=address, action=action, token=token, confirm_url=self.confirm_url(token),
            hours=self.policy.token_ttl.total_seconds() / 3600, date=now, message_id=self._message_id(),
            loop_id=self.policy.loop_id, in_reply_to=in_reply_to, narrowing=narrowing_text(claim.narrowing))
        self.log_event(spec.name, address, action, "confirmation-sent", now, replied=True, origin=origin)
        return [Outgoing(msg, spec.address("bounces"), (address,))]

    def describe(self, token: str, now: datetime, *, list_name: str | None = None) -> TokenClaim:
        """What `token` would confirm, if it still may; TokenProblem otherwise. Changes nothing."""
        claim = self.store.lists.get_token(token_digest(token))
        return check_token(self.policy.secret, token, claim, now, list_name=list_name)

    def confirm(
        self, token: str, now: datetime, *, list_name: str | None = None, origin: str = "email",
        in_reply_to: str | None = None,
    ) -> tuple[Confirmed, list[Outgoing]]:
        """Redeem `token` once: make or end the membership it was issued for.

        `list_name` is the list the confirmation arrived for; a token for another list is
        refused. Raises TokenProblem (logged) for unknown, forged, expired or used tokens.
        """
        try:
            claim = self.describe(token, now, list_name=list_name)
            spec = self.spec(claim.list_name)
            if not self.store.lists.use_token(token_digest(token), now):
                raise TokenProblem("this confirmation token was already used")
        except (TokenProblem, UnknownList) as exc:
            self.log_event(list_name or "?", "?", "confirm", "refused", now, origin=origin, detail=str(exc))
            raise TokenProblem(str(exc)) from None
        address = claim.address
        if claim.action == "subscribe":
            own = dict(claim.narrowing) if claim.narrowing else None
            changed = self.store.lists.add_member(spec.name, address, spec.member_config(address, own=own), now,
                                                  origin="web" if origin == "web" else "email")
            outcome = "subscribed"
        else:
            changed = self.store.lists.remove_member(spec.name, address)
            outcome = "unsubscribed"
        self.log_event(spec.name, address, "confirm", outcome, now, replied=True, origin=origin,
                       detail=narrowing_text(claim.narrowing) or None)
        done = Confirmed(spec.name, address, claim.action, changed,
                         dict(claim.narrowing) if claim.narrowing else None)
        return done, [self._result(spec, address, outcome, now, None, origin, in_reply_to, log=False)]

    # -- the operator's commands ------------------------------------------------------------

    def add_member(self, list_name: str, address: str, now: datetime) -> bool:
        """Add without confirmation (the operator vouches); False when already a member."""
        spec, address = self.spec(list_name), canonical_address(address)
        added = self.store.lists.add_member(spec.name, address, spec.member_config(address), now, "operator")
        self.log_event(spec.name, address, "add", "subscribed" if added else "already-member", now, origin="operator")
        return added

    def remove_member(self, list_name: str, address: str, now: datetime, *, origin: str = "operator") -> bool:
        spec, address = self.spec(list_name), canonical_address(address)
        removed = self.store.lists.remove_member(spec.name, address)
        self.log_event(spec.name, address, "remove", "unsubscribed" if removed else "not-member", now, origin=origin)
        return removed

    def member_row(self, spec: ListSpec, address: str, *, delivery_disabled: bool = False) -> SubscriberConfig:
        """The member's subscriber row as the list's filters and the member's own choices make it."""
        stored = self.store.get_subscriber(member_subscriber_name(spec.name, address))
        return spec.member_config(address, delivery_disabled=delivery_disabled,
                                  own=own_choices(stored.config if stored else None))

    def set_own_choices(
        self, list_name: str, address: str, choices: dict[str, Any], now: datetime,
    ) -> SubscriberConfig:
        """A member's own narrowing/digest (from /manage): kept across restarts; returns the row."""
        spec, address = self.spec(list_name), canonical_address(address)
        stored = self.store.get_subscriber(member_subscriber_name(spec.name, address))
        old = stored.config if stored else None
        own = {**own_choices(old), **{k: v for k, v in choices.items() if k in MEMBER_CHOICES}}
        config = spec.member_config(address, delivery_disabled=old is not None and old.delivery_disabled, own=own)
        self.store.upsert_subscriber(member_subscriber_name(spec.name, address), config)
        self.log_event(spec.name, address, "settings", "changed", now, origin="web",
                       detail=", ".join(f"{k}={v}" for k, v in sorted(own.items())))
        return config

    def sync_members(self, now: datetime) -> int:
        """Rewrite every member's subscriber row from its list's current filters (at start-up).

        What a member chose for themselves (narrowing, digest: the row's "own") survives; the
        list's filters apply to every key they did not choose.
        """
        n = 0
        for member in self.store.lists.members():
            spec = self.specs.get(member.list_name)
            if spec is None:
                continue  # the list left the config: its members wait, unserved, until it returns
            config = self.member_row(spec, member.address, delivery_disabled=not member.enabled)
            self.store.lists.set_bounce_state(spec.name, member.address, member.bounce_state, now, config)
            n += 1
        return n

    # -- inbound mail -----------------------------------------------------------------------

    def handle_mail(self, rcpt: Recipient, mail_from: str, message: EmailMessage, now: datetime) -> list[Outgoing]:
        """One accepted mail to one of our request addresses; returns the replies to send.

        Bounces go to `app.list_bounces.handle_bounce`; this never answers automatic mail.
        """
        spec = self.spec(rcpt.list_name)
        headers = _headers(message)
        sender = _requester(mail_from, headers)
        why = automatic_reason(mail_from, headers, self.policy.domain, self.policy.loop_id)
        if why is not None:
            self.log_event(spec.name, sender or mail_from, rcpt.role, "ignored", now, detail=why)
            return []
        if not sender:
            self.log_event(spec.name, mail_from, rcpt.role, "ignored", now, detail="no sender address")
            return []
        lists = self.store.lists
        if lists.count_requests(now - _HOUR, address=sender, replied=True) >= self.policy.per_address:
            self.log_event(spec.name, sender, rcpt.role, "rate-limited", now, detail="per-address limit")
            self.on_trip("rate_address", f"more than max_requests_per_address ({self.policy.per_address}) "
                                         "replies to one address in an hour: no reply")
            return []
        if lists.count_requests(now - _HOUR, replied=True) >= self.policy.per_hour:
            self.log_event(spec.name, sender, rcpt.role, "rate-limited", now, detail="total limit")
            self.on_trip("rate_total", f"more than max_requests_per_hour ({self.policy.per_hour}) "
                                       "replies in an hour: no reply")
            return []
        command = self._command(rcpt, headers.get("subject", ""), message)
        reply_to = headers.get("message-id") or None
        if command.kind in ("subscribe", "unsubscribe"):
            action: Action = "subscribe" if command.kind == "subscribe" else "unsubscribe"
            return self.request(spec.name, sender, action, now, in_reply_to=reply_to)
        if command.kind == "confirm":
            try:
                return self.confirm(command.argument, now, list_name=spec.name, in_reply_to=reply_to)[1]
            except TokenProblem as exc:
                return [self._result(spec, sender, f"confirmation failed ({exc})", now, "confirm", "email",
                                     reply_to, log=False)]
        return self._help(spec, sender, now, command, reply_to)

    def _command(self, rcpt: Recipient, subject: str, message: EmailMessage) -> Command:
        if rcpt.role in ("subscribe", "unsubscribe"):
            return Command(rcpt.role)
        if rcpt.role == "confirm":
            return Command("confirm", rcpt.extension)
        commands = parse_commands(subject, _body_lines(message))
        for kind in ("confirm", "unsubscribe", "subscribe", "help"):
            for command in commands:
                if command.kind == kind:
                    return command
        return commands[0] if commands else Command("unknown", "(empty message)")

    def _help(self, spec: ListSpec, sender: str, now: datetime, command: Command, reply_to: str | None) -> list[Outgoing]:
        unknown = command.argument if command.kind == "unknown" else None
        if unknown is not None and self.store.lists.count_requests(
                now - timedelta(days=1), address=sender, kind="unknown", replied=True):
            self.log_event(spec.name, sender, "unknown", "ignored", now, detail="help already sent once")
            return []
        msg = help_message(spec, list(self.specs.values()), to=sender, date=now, message_id=self._message_id(),
                           loop_id=self.policy.loop_id, unknown=unknown, in_reply_to=reply_to)
        self.log_event(spec.name, sender, command.kind, "help-sent", now, replied=True, detail=unknown)
        return [Outgoing(msg, spec.address("bounces"), (sender,))]

    def _result(
        self, spec: ListSpec, address: str, outcome: str, now: datetime, kind: str | None, origin: str,
        in_reply_to: str | None, *, log: bool = True,
    ) -> Outgoing:
        msg = result_message(spec, to=address, outcome=outcome, date=now, message_id=self._message_id(),
                             loop_id=self.policy.loop_id, in_reply_to=in_reply_to)
        if log:
            self.log_event(spec.name, address, kind or "request", outcome, now, replied=True, origin=origin)
        return Outgoing(msg, spec.address("bounces"), (address,))

    def log_event(
        self, list_name: str, address: str, kind: str, outcome: str, now: datetime, *, replied: bool = False,
        origin: str = "email", detail: str | None = None,
    ) -> None:
        log.info("list request", list=list_name, address=address, kind=kind, outcome=outcome, origin=origin,
                 detail=detail)
        self.store.lists.log_request(list_name, address, kind, outcome, now, replied=replied,
                                     detail=f"{origin}: {detail}" if detail else origin)


def _headers(message: EmailMessage) -> dict[str, str]:
    """The headers the rules read, lower-cased names; a header Python cannot parse reads as ''."""
    out: dict[str, str] = {}
    for name in ("from", "subject", "message-id", "auto-submitted", "precedence", "x-loop", "x-autoreply",
                 "x-autorespond"):
        try:
            values = message.get_all(name) or []
            out[name] = " ".join(str(v) for v in values)[:2000]
        except Exception:  # noqa: BLE001 - a hostile header is a malformed header, not a crash
            out[name] = ""
    return out


def _requester(mail_from: str, headers: dict[str, str]) -> str:
    """Who asked: the From address (as Mailman), else the envelope sender."""
    from email.utils import getaddresses

    found = [a for _, a in getaddresses([headers.get("from", "")]) if "@" in a]
    candidate = found[0] if found else mail_from
    address = canonical_address(candidate)
    local, at, domain = address.rpartition("@")
    return address if at and local and "." in domain and " " not in address else ""


def _body_lines(message: EmailMessage) -> list[str]:
    try:
        part = message.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
    except Exception:  # noqa: BLE001 - undecodable body: no commands in it
        return []
    return str(text).splitlines()[:50]


def list_service(settings: Settings, store: Store) -> ListService | None:
    """The mailing lists of `settings` ([[lists]] at the [inbound] domain); None without [inbound]."""
    from crdswatch.notices.list_spec import FILTER_KEYS

    inbound = settings.inbound
    if inbound is None:
        return None
    specs = [ListSpec(item.name, inbound.domain, item.description,
                      {k: v for k, v in item.model_dump(mode="python").items() if k in FILTER_KEYS},
                      item.archive_url) for item in settings.lists]
    http = settings.http
    base = str(http.public_url or f"http://{http.listen}").rstrip("/")
    policy = ListPolicy(
        domain=inbound.domain, secret=inbound.token_secret.get_secret_value().encode(),
        token_ttl=timedelta(hours=inbound.token_ttl_hours), per_address=inbound.max_requests_per_address,
        per_hour=inbound.max_requests_per_hour, confirm_base=f"{base}/confirm",
        admins=tuple(settings.alerts.admin_email))
    return ListService(store, specs, policy)
