"""List members, pending confirmation tokens and the request log; `store.lists` is the entry point.

Each method is one transaction. A confirmed member is also a row in `subscribers` (named by
`member_subscriber_name`), so the poller matches and queues list notices like any other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)

from crdswatch.model import SubscriberConfig
from crdswatch.notices.bounce_score import BounceState
from crdswatch.notices.codec import subscriber_to_json
from crdswatch.notices.list_tokens import TokenClaim
from crdswatch.store.engine import insert_ignore, upsert
from crdswatch.store.schema import UTCDateTime, metadata, subscribers


class Transactions(Protocol):
    """What ListStore needs of the Store: its write and read-only transactions."""

    def _write(self) -> AbstractContextManager[Connection]: ...

    def _read(self) -> AbstractContextManager[Connection]: ...

__all__ = [
    "ListMember",
    "ListRequest",
    "ListStore",
    "list_members",
    "list_requests",
    "list_tokens",
    "member_subscriber_name",
]

Origin = Literal["email", "web", "operator"]

list_members = Table(
    "list_members",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("list_name", String(255), nullable=False),
    Column("address", String(320), nullable=False),
    Column("subscriber", String(255), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("bounce_score", Integer, nullable=False),
    Column("last_bounce_at", UTCDateTime, nullable=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("warnings_sent", Integer, nullable=False),
    Column("last_warning_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("list_name", "address", name="uq_list_members_list_address"),
)

list_tokens = Table(
    "list_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("list_name", String(255), nullable=False),
    Column("address", String(320), nullable=False),
    Column("action", String(16), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Column("narrowing", JSON, nullable=True),  # the subscribe form's narrowing, applied on confirmation
    Index("ix_list_tokens_expires", "expires_at"),
)

list_requests = Table(
    "list_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("list_name", String(255), nullable=False),
    Column("address", String(320), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("replied", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_list_requests_address_at", "address", "at"),
    Index("ix_list_requests_at", "at"),
)


def member_subscriber_name(list_name: str, address: str) -> str:
    """The `subscribers` row a member's notices are queued for."""
    return f"list:{list_name}:{address}"


@dataclass(frozen=True)
class ListMember:
    list_name: str
    address: str
    subscriber: str
    origin: str
    bounce_score: int
    last_bounce_at: datetime | None
    disabled_at: datetime | None
    warnings_sent: int
    last_warning_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def enabled(self) -> bool:
        """False once bounces disabled delivery (the member stays until the warnings run out)."""
        return self.disabled_at is None

    @property
    def bounce_state(self) -> BounceState:
        return BounceState(self.bounce_score, self.last_bounce_at, self.disabled_at, self.warnings_sent,
                           self.last_warning_at)


@dataclass(frozen=True)
class ListRequest:
    at: datetime
    list_name: str
    address: str
    kind: str
    outcome: str
    replied: bool
    detail: str | None


def _member(m: Any) -> ListMember:
    return ListMember(**{f.name: m[f.name] for f in fields(ListMember)})


class ListStore:
    """Members, tokens and the request log of the mailing lists, over the Store's engine."""

    def __init__(self, store: Transactions) -> None:
        self._store = store

    # -- members ---------------------------------------------------------------------------

    def add_member(
        self, list_name: str, address: str, subscriber_config: SubscriberConfig, now: datetime,
        origin: Origin = "email",
    ) -> bool:
        """Make `address` a member with its subscriber row; False when it already was one.

        An existing member whose delivery bounces disabled is re-enabled with a clean score.
        """
        name = member_subscriber_name(list_name, address)
        with self._store._write() as conn:
            row = {"list_name": list_name, "address": address, "subscriber": name, "origin": origin,
                   "bounce_score": 0, "warnings_sent": 0, "created_at": now, "updated_at": now}
            added = insert_ignore(conn, list_members, [row], ["list_name", "address"]) == 1
            if not added:
                self._set_bounce(conn, list_name, address, BounceState(), now)
            sub = {"name": name, "config": subscriber_to_json(subscriber_config), "created_at": now, "updated_at": now}
            upsert(conn, subscribers, sub, ["name"], ["config", "updated_at"])
            return added

    def remove_member(self, list_name: str, address: str) -> bool:
        """Remove the member and its subscriber row (queued notices then fail as 'no longer exists')."""
        c = list_members.c
        with self._store._write() as conn:
            gone = conn.execute(
                delete(list_members).where(c.list_name == list_name, c.address == address)
            ).rowcount == 1
            conn.execute(delete(subscribers).where(
                subscribers.c.name == member_subscriber_name(list_name, address)))
            return gone

    def get_member(self, list_name: str, address: str) -> ListMember | None:
        c = list_members.c
        with self._store._read() as conn:
            row = conn.execute(
                select(list_members).where(c.list_name == list_name, c.address == address)
            ).mappings().first()
            return None if row is None else _member(row)

    def members(self, list_name: str | None = None) -> list[ListMember]:
        """Members of one list (or of all), by list then address."""
        c = list_members.c
        stmt = select(list_members).order_by(c.list_name, c.address)
        if list_name is not None:
            stmt = stmt.where(c.list_name == list_name)
        with self._store._read() as conn:
            return [_member(m) for m in conn.execute(stmt).mappings()]

    def member_counts(self) -> dict[str, tuple[int, int]]:
        """{list: (members, of which delivery-disabled)}."""
        c = list_members.c
        stmt = select(c.list_name, func.count(), func.count(c.disabled_at)).group_by(c.list_name)
        with self._store._read() as conn:
            return {str(n): (int(total), int(disabled)) for n, total, disabled in conn.execute(stmt)}

    def set_bounce_state(
        self, list_name: str, address: str, state: BounceState, now: datetime,
        subscriber_config: SubscriberConfig | None = None,
    ) -> None:
        """Store the member's bounce state; with `subscriber_config`, rewrite its subscriber too
        (delivery disabled or re-enabled) in the same transaction."""
        with self._store._write() as conn:
            self._set_bounce(conn, list_name, address, state, now)
            if subscriber_config is not None:
                conn.execute(update(subscribers).where(
                    subscribers.c.name == member_subscriber_name(list_name, address)
                ).values(config=subscriber_to_json(subscriber_config), updated_at=now))

    @staticmethod
    def _set_bounce(conn: Connection, list_name: str, address: str, state: BounceState, now: datetime) -> None:
        c = list_members.c
        conn.execute(update(list_members).where(c.list_name == list_name, c.address == address).values(
            bounce_score=state.score, last_bounce_at=state.last_bounce_at, disabled_at=state.disabled_at,
            warnings_sent=state.warnings_sent, last_warning_at=state.last_warning_at, updated_at=now))

    # -- tokens ----------------------------------------------------------------------------

    def save_token(self, digest: str, claim: TokenClaim, now: datetime) -> None:
        row = {"digest": digest, "list_name": claim.list_name, "address": claim.address,
               "action": claim.action, "nonce": claim.nonce, "expires_at": claim.expires_at,
               "created_at": now, "narrowing": dict(claim.narrowing) if claim.narrowing else None}
        with self._store._write() as conn:
            conn.execute(list_tokens.insert().values(**row))
            # Expired tokens are worthless; dropping them here keeps the table small.
            conn.execute(delete(list_tokens).where(list_tokens.c.expires_at < now, list_tokens.c.used_at.is_(None)))

    def get_token(self, digest: str) -> TokenClaim | None:
        with self._store._read() as conn:
            row = conn.execute(select(list_tokens).where(list_tokens.c.digest == digest)).mappings().first()
            return None if row is None else _claim(row)

    def use_token(self, digest: str, now: datetime) -> bool:
        """Mark the token used; False when it already was (so two confirmations cannot both win)."""
        c = list_tokens.c
        with self._store._write() as conn:
            stmt = update(list_tokens).where(c.digest == digest, c.used_at.is_(None)).values(used_at=now)
            return conn.execute(stmt).rowcount == 1

    # -- request log and rate limits --------------------------------------------------------

    def log_request(
        self, list_name: str, address: str, kind: str, outcome: str, now: datetime, *,
        replied: bool = False, detail: str | None = None,
    ) -> None:
        """One line of the request log; `replied` rows are what the rate limits count."""
        row = {"at": now, "list_name": list_name, "address": address[:320], "kind": kind[:32],
               "outcome": outcome[:32], "replied": replied, "detail": detail[:2000] if detail else None}
        with self._store._write() as conn:
            conn.execute(list_requests.insert().values(**row))

    def count_requests(
        self, since: datetime, *, address: str | None = None, kind: str | None = None,
        outcome: str | None = None, replied: bool | None = None,
    ) -> int:
        """How many log rows since `since` match every filter given."""
        c = list_requests.c
        stmt = select(func.count()).select_from(list_requests).where(c.at >= since)
        if replied is not None:
            stmt = stmt.where(c.replied == replied)
        if address is not None:
            stmt = stmt.where(c.address == address)
        if kind is not None:
            stmt = stmt.where(c.kind == kind)
        if outcome is not None:
            stmt = stmt.where(c.outcome == outcome)
        with self._store._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def requests(self, limit: int = 100, list_name: str | None = None) -> list[ListRequest]:
        """The request log, newest first."""
        c = list_requests.c
        stmt = select(list_requests).order_by(c.id.desc()).limit(limit)
        if list_name is not None:
            stmt = stmt.where(c.list_name == list_name)
        with self._store._read() as conn:
            return [ListRequest(**{f.name: m[f.name] for f in fields(ListRequest)})
                    for m in conn.execute(stmt).mappings()]


def _claim(m: Any) -> TokenClaim:
    return TokenClaim(m["list_name"], m["address"], m["action"], m["nonce"], m["expires_at"], m["used_at"],
                      m["narrowing"] or None)
