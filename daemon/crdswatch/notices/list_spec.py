"""A mailing list as the application sees it: name, description, filters, addresses (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crdswatch.notices.list_addresses import list_address, verp_address

__all__ = ["FILTER_KEYS", "ListSpec"]

# The [[subscribers]] keys a list passes on to each member's subscriber row.
FILTER_KEYS = (
    "observatories", "instruments", "reftypes", "change_levels", "pedigrees", "parameters", "states",
    "digest", "digest_hour", "digest_weekday", "timezone",
)


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

    def member_config(self, address: str, *, delivery_disabled: bool = False) -> dict[str, Any]:
        """The subscriber row of one member: the list's filters and an e-mail channel to them."""
        config: dict[str, Any] = {k: v for k, v in self.filters.items() if k in FILTER_KEYS}
        config.update({"email": [address], "origin": "list", "list": self.name})
        if delivery_disabled:
            config["delivery_disabled"] = True
        return config

    @property
    def label(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name
