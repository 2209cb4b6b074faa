"""A mailing list as the application sees it: name, description, filters, addresses (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crdswatch.model import SubscriberConfig
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.notices.list_addresses import list_address, verp_address

__all__ = ["FILTER_KEYS", "MEMBER_CHOICES", "ListSpec", "narrowing_text", "own_choices"]

# The [[subscribers]] keys a list passes on to each member's subscriber row.
FILTER_KEYS = (
    "observatories", "instruments", "reftypes", "change_levels", "pedigrees", "parameters", "states",
    "digest", "digest_hour", "digest_weekday", "timezone",
)
# What a member may choose for themselves (the subscribe form's narrowing, /manage). Their
# choices are kept under "own" in the subscriber row and win over the list's filters, also
# when the daemon restarts and rewrites every member from its list (ListService.sync_members).
MEMBER_CHOICES = ("reftypes", "parameters", "digest")


def own_choices(config: SubscriberConfig | None) -> dict[str, Any]:
    """The member's own choices in a stored subscriber (only MEMBER_CHOICES keys)."""
    return {k: v for k, v in config.own.items() if k in MEMBER_CHOICES} if config is not None else {}


def narrowing_text(narrowing: Mapping[str, Any] | None) -> str:
    """"reference types DARK, FLAT; EXP_TYPE NRS_IFU" (empty: no narrowing)."""
    if not narrowing:
        return ""
    parts = []
    if narrowing.get("reftypes"):
        parts.append("reference types " + ", ".join(str(r).upper() for r in narrowing["reftypes"]))
    for name, values in sorted((narrowing.get("parameters") or {}).items()):
        parts.append(f"{name} " + ", ".join(str(v) for v in values))
    return "; ".join(parts)


@dataclass(frozen=True)
class ListSpec:
    """One configured list at its mail domain; `filters` holds the FILTER_KEYS of its table."""

    name: str
    domain: str
    description: str = ""
    filters: Mapping[str, Any] = field(default_factory=dict)
    archive_url: str | None = None

    @property
    def list_id(self) -> str:
        return f"{self.name}.{self.domain}"

    def address(self, suffix: str = "", extension: str = "") -> str:
        """`<name>[-suffix][+extension]@domain`: address("join"), address("confirm", token)."""
        return list_address(self.name, self.domain, suffix, extension)

    def verp(self, member: str) -> str:
        """The envelope sender of a mail to `member`, so its bounce names the member."""
        return verp_address(self.name, self.domain, member)

    def member_config(
        self, address: str, *, delivery_disabled: bool = False, own: Mapping[str, Any] | None = None,
    ) -> SubscriberConfig:
        """The stored subscriber of one member: the list's filters and an e-mail channel to them.

        `own` (MEMBER_CHOICES keys the member chose) replaces the list's value of each key it
        names and is kept in the row under "own"; keys it does not name (or leaves empty:
        "everything") follow the list.
        """
        config: dict[str, Any] = {k: v for k, v in self.filters.items() if k in FILTER_KEYS}
        chosen = {k: v for k, v in own.items() if k in MEMBER_CHOICES and v} if own else {}
        config.update(chosen)
        config.update({"email": [address], "origin": "list", "list": self.name})
        if chosen:
            config["own"] = chosen
        if delivery_disabled:
            config["delivery_disabled"] = True
        return subscriber_from_json(config)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name
