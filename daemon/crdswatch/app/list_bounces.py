"""Bounces, as Mailman 3 handles them: VERP names the member, flufl.bounce tells permanent from
temporary, the score rules (notices.bounce_score) decide disable, warnings and removal.

`handle_bounce` takes a mail to `<list>-bounces[+local=domain]@D`; `record_bounce` is also called
for an SMTP 5xx at send time; `run_bounce_checks` is the periodic warn-then-remove pass.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from email.message import Message

import structlog
from flufl.bounce import all_failures, scan_message

from crdswatch.app.lists import ListService, Outgoing
from crdswatch.notices.bounce_score import due_action, register_bounce, warning_sent
from crdswatch.notices.list_addresses import Recipient, canonical_address
from crdswatch.notices.list_spec import ListSpec
from crdswatch.render.list_mail import admin_message, warning_message

__all__ = ["handle_bounce", "record_bounce", "run_bounce_checks"]

log = structlog.get_logger("crdswatch.lists")


def _message_id(service: ListService) -> str:
    return f"<{secrets.token_hex(12)}@{service.policy.domain}>"


def _admin(service: ListService, spec: ListSpec, subject: str, body: str, now: datetime,
           raw: bytes | None = None) -> list[Outgoing]:
    admins = service.policy.admins
    if not admins:
        return []
    msg = admin_message(spec, to=admins, subject=subject, body=body, date=now, message_id=_message_id(service),
                        loop_id=service.policy.loop_id, attachment=raw)
    # The envelope sender is the bare -bounces address: a bounce of this note must not score anyone.
    return [Outgoing(msg, spec.address("bounces"), tuple(admins))]


def _detect(message: Message) -> tuple[set[str], set[str]]:
    """(temporary, permanent) failing addresses that flufl.bounce recognises in `message`."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # noqa: BLE001 - a detector choking on hostile mail means "not recognised"
        return set(), set()
    return _decode(temporary), _decode(permanent)


def _decode(found: frozenset[bytes]) -> set[str]:
    return {canonical_address(a.decode("utf-8", "replace")) for a in found}


def handle_bounce(service: ListService, rcpt: Recipient, message: Message, raw: bytes, now: datetime) -> list[Outgoing]:
    """Score the member a bounce is about; temporary failures do not count; the unrecognised go to the admin."""
    spec = service.spec(rcpt.list_name)
    temporary, permanent = _detect(message)
    members = {m.address for m in service.members(spec.name)}
    member = rcpt.verp_member
    if member is not None:
        # As Mailman: a VERP bounce is permanent unless the detectors call it temporary.
        if temporary and member in temporary and member not in permanent:
            service.log_event(spec.name, member, "bounce", "temporary", now, detail="temporary failure ignored")
            return []
        found = {member} & members
    else:
        try:
            found = {canonical_address(a.decode("utf-8", "replace")) for a in scan_message(message)} & members
        except Exception:  # noqa: BLE001
            found = set()
    if not found:
        service.log_event(spec.name, member or "?", "bounce", "unrecognised", now)
        body = (f"A bounce arrived for {spec.name} that names no member"
                f"{f' ({member} is not one)' if member else ''}. It is attached as received.\n")
        return _admin(service, spec, "unrecognised bounce", body, now, raw)
    out: list[Outgoing] = []
    for address in sorted(found):
        out += record_bounce(service, spec.name, address, now, "bounce message")
    return out


def record_bounce(service: ListService, list_name: str, address: str, now: datetime, why: str) -> list[Outgoing]:
    """One permanent failure for a member (a bounce, or a 5xx at send time): score, maybe disable."""
    spec = service.spec(list_name)
    member = service.store.lists.get_member(spec.name, canonical_address(address))
    if member is None:
        return []
    state, outcome = register_bounce(member.bounce_state, now, service.policy.rules)
    if outcome == "ignored":
        service.log_event(spec.name, member.address, "bounce", "ignored", now, detail=f"{why}; score {state.score}")
        return []
    config = service.member_row(spec, member.address, delivery_disabled=True) if outcome == "disabled" else None
    service.store.lists.set_bounce_state(spec.name, member.address, state, now, config)
    service.log_event(spec.name, member.address, "bounce", outcome, now, detail=f"{why}; score {state.score}")
    if outcome != "disabled":
        return []
    log.warning("list delivery disabled by bounces", list=spec.name, address=member.address, score=state.score)
    return _admin(service, spec, f"delivery to {member.address} disabled",
                  f"Mail to {member.address} bounced on {state.score} days; delivery is disabled.\n"
                  f"{service.policy.rules.warnings} warnings follow, then removal.\n", now)


def run_bounce_checks(service: ListService, now: datetime) -> list[Outgoing]:
    """Warn disabled members at the configured interval; remove them after the last warning."""
    rules = service.policy.rules
    out: list[Outgoing] = []
    for member in service.store.lists.members():
        spec = service.specs.get(member.list_name)
        action = due_action(member.bounce_state, now, rules) if spec is not None else None
        if spec is None or action is None:
            continue
        if action == "warn":
            state = warning_sent(member.bounce_state, now)
            service.store.lists.set_bounce_state(spec.name, member.address, state, now)
            msg = warning_message(spec, to=member.address, number=state.warnings_sent, of=rules.warnings, date=now,
                                  message_id=_message_id(service), loop_id=service.policy.loop_id)
            service.log_event(spec.name, member.address, "bounce", "warned", now, detail=f"warning {state.warnings_sent}")
            out.append(Outgoing(msg, spec.verp(member.address), (member.address,)))
        else:
            service.store.lists.remove_member(spec.name, member.address)
            service.log_event(spec.name, member.address, "bounce", "removed", now)
            out += _admin(service, spec, f"{member.address} removed",
                          f"{member.address} was removed from {spec.name}: delivery stayed disabled through "
                          f"{rules.warnings} warnings.\n", now)
    return out
