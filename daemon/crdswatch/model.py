"""Plain frozen records that flow between the pipeline stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Action", "Activation", "BridgeNotice", "Change", "DiffResult", "Interest", "Level", "SourceKey", "SubscriberConfig",
           "utc_now"]

Action = Literal["added", "deleted", "replaced", "header", "parameters", "classes"]
Level = Literal["pipeline", "instrument", "reference"]


@dataclass(frozen=True)
class SourceKey:
    """One watched source: a CRDS server, an observatory and a context state.

    Stored (cursor, activation and outbox rows), logged and used as a metric label as the string
    `server_url|observatory|state`: `str(key)` makes it, `SourceKey.parse` is the one place it is
    split again. The URL holds no credentials (`SourceKey.of` drops any user:password@), so its
    parts may be shown and linked to.
    """

    server_url: str
    observatory: str
    state: str

    @classmethod
    def of(cls, server_url: str, observatory: str, state: str) -> SourceKey:
        """The key of a configured source: trailing "/" and any user:password@ dropped from the URL."""
        parts = urlsplit(server_url.rstrip("/"))
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            netloc += f":{parts.port}" if parts.port else ""
            server_url = urlunsplit(parts._replace(netloc=netloc))
        return cls(server_url.rstrip("/"), observatory, state)

    @classmethod
    def parse(cls, key: str) -> SourceKey:
        """The parts of a stored key (the URL may hold a "|"; the observatory and state do not)."""
        server_url, observatory, state = key.rsplit("|", 2)
        return cls(server_url, observatory, state)

    def __str__(self) -> str:
        return f"{self.server_url}|{self.observatory}|{self.state}"


@dataclass(frozen=True)
class Change:
    """One difference between two contexts, at the level of the mappings that differ.

    `line` is exactly what `crds diff OLD NEW --brief --squash-tuples` prints for it; the other
    fields are the same fact in structured form for filters and notices.
    """

    old_mapping: str
    new_mapping: str
    level: Level
    action: Action
    line: str
    match: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()  # match parameter names, parallel to `match` (rmap level)
    useafter: str | None = None  # "YYYY-MM-DD HH:MM:SS"
    old_file: str | None = None
    new_file: str | None = None
    instrument: str | None = None
    reftype: str | None = None
    rule: str | None = None  # "Match rule", "terminal", ... as crds words it
    key: str | None = None  # header key, for action "header"
    old_value: Any = None
    new_value: Any = None

    def to_json(self) -> dict[str, Any]:
        # A shallow copy, not dataclasses.asdict(): its deep copies cost more than the whole diff.
        data = dict(self.__dict__)
        data["match"] = list(self.match)
        data["parameters"] = list(self.parameters)
        return data


@dataclass(frozen=True)
class DiffResult:
    """The changes between two contexts, in `crds diff` order."""

    old: str
    new: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True)
class Activation:
    """One entry of a server's context history: `context` became operational at `date`."""

    date: str  # ISO-8601 UTC, "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00"
    context: str
    description: str = ""


@dataclass(frozen=True)
class FileInfo:
    """Catalog facts about one reference file, as the server's `get_file_info_map` gives them.

    None means the server did not say; notices show it as unknown and never guess.
    """

    name: str
    pedigree: str | None = None
    change_level: str | None = None
    description: str | None = None
    deliverer: str | None = None
    delivery_date: str | None = None
    activation_date: str | None = None
    useafter_date: str | None = None
    source: str = "catalog"  # or "fits-header" when read from the file itself

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ActivationDiff:
    """One activation with the changes it brought and the catalog facts about its new files."""

    observatory: str
    server_url: str
    state: str  # latest | build | edit
    activation: Activation
    previous: str | None
    changes: tuple[Change, ...]
    catalog: dict[str, FileInfo] = field(default_factory=dict)
    revert: bool = False  # the new context is older than the one it replaces
    # Upstream list posts that announced what this activation makes active (the bridge), one line each.
    announcements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interest:
    """What a subscriber follows, kept with its notices so each section can say why it was selected.

    Empty means "everything", as in the subscriber's filters. Names as the subscriber wrote them
    (lower case); `parameters` maps a FITS keyword (EXP_TYPE) to the values of interest;
    `datasets` are the dataset ids of a dataset subscription.
    """

    observatories: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    reftypes: tuple[str, ...] = ()
    parameters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    change_levels: tuple[str, ...] = ()
    pedigrees: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"observatories": list(self.observatories), "instruments": list(self.instruments),
                "reftypes": list(self.reftypes), "parameters": {k: list(v) for k, v in self.parameters},
                "change_levels": list(self.change_levels), "pedigrees": list(self.pedigrees),
                "datasets": list(self.datasets)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interest:
        def names(key: str) -> tuple[str, ...]:
            return tuple(map(str, data.get(key) or ()))  # map, not a generator: read once per claimed row

        params = data.get("parameters") or {}
        return cls(names("observatories"), names("instruments"), names("reftypes"),
                   tuple((str(k), tuple(map(str, vs))) for k, vs in params.items()),
                   names("change_levels"), names("pedigrees"), names("datasets"))


@dataclass(frozen=True)
class Notice:
    """What one subscriber is told: one activation (immediate) or several, oldest first (digest).

    Each ActivationDiff here holds only the changes this subscriber's filters selected.
    """

    subscriber: str
    activations: tuple[ActivationDiff, ...]
    reason: str  # "why you got this", e.g. "you subscribe to JWST NIRSpec (all reference types)"
    unsubscribe_url: str | None = None
    digest: str = "immediate"  # immediate | daily | weekly
    interest: Interest | None = None  # the filters that selected the changes, for "why" per section
    # Dataset subscriptions: file -> the subscriber's dataset ids whose best references it is.
    dataset_hits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    public_url: str | None = None  # crdswatch's own web pages: `<public_url>/activations/<context>`
    test: bool = False  # `crdswatch send-test`: said in the subject and a banner in every channel
    manage_url: str | None = None  # `<public_url>/manage/<signed token>`: change filters, digest, leave


@dataclass(frozen=True)
class BridgeNotice:
    """What one subscriber is told about an upstream list post or a MAST program event.

    `lines` is the body already worded (by notices.bridge), one paragraph line each; renderers
    only lay it out, so every channel says the same thing.
    """

    subscriber: str
    kind: Literal["post", "mast", "programs"]
    source: str  # the [[upstream]] name, e.g. nirspec_reffiles_upd
    subject: str
    lines: tuple[str, ...]
    reason: str
    link: str | None = None  # the post in the upstream archive, or the MAST portal
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class SubscriberConfig:
    """A stored subscriber: its channels, filters and digest schedule (the [[subscribers]] keys),
    where it came from, and what links, the manage page and its list changed.

    `notices.codec.subscriber_to_json` / `subscriber_from_json` are its one stored form (the
    `subscribers.config` JSON column); secrets are plain text there (the database is private).
    `extra` keeps keys this version does not know, so rewriting a row never loses them.
    """

    email: tuple[str, ...] = ()
    slack_webhook: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    observatories: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    reftypes: tuple[str, ...] = ()
    change_levels: tuple[str, ...] = ()
    pedigrees: tuple[str, ...] = ()
    parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    states: tuple[str, ...] = ("latest",)
    digest: str = "immediate"
    digest_hour: int = 8
    digest_weekday: str = "mon"
    timezone: str = "UTC"
    programs: tuple[str, ...] = ()  # MAST program ids as stored (leading zeros possible in old rows)
    # Dataset subscriptions: parameter tables (or {"fits": path}), as in the config's `datasets`.
    datasets: tuple[Mapping[str, Any], ...] = ()
    origin: str | None = None  # "config", "cli" or "list"; None in rows older than the key
    list_name: str | None = None  # a list member: the list (stored as "list")
    own: Mapping[str, Any] = field(default_factory=dict)  # a list member's own choices (MEMBER_CHOICES)
    delivery_disabled: bool = False  # a list member whose bounces disabled delivery
    left: bool = False  # left through the manage page
    unsubscribed: tuple[str, ...] = ()  # channels left through a link (notices.subscriptions owns it)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, key: str) -> Any:
        """A setting by its stored key: a field's value, else an `extra` key's (a channel this
        version does not ship reads its own key so), else None."""
        if key != "extra" and key in _SUBSCRIBER_FIELDS:
            return getattr(self, key)
        return self.extra.get(key)


_SUBSCRIBER_FIELDS = frozenset(f.name for f in fields(SubscriberConfig))


def utc_now() -> datetime:
    """The one default clock (store, channels, daemon); each takes another so tests need no real time."""
    return datetime.now(UTC)
