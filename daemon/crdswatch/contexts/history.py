"""Pure parsing of CRDS server_config files, context-history rows and history dates."""

from __future__ import annotations

import ast
import base64
import binascii
import gzip
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crdswatch.errors import ConfigError, HistoryFormatError
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import Activation

__all__ = [
    "HistoryFormatError",
    "ServerConfig",
    "activation_from_row",
    "activations_from_history",
    "crds_decode",
    "crds_encode",
    "format_history_date",
    "load_server_config",
    "parse_history_date",
    "parse_server_config",
    "since_cutoff",
]

# "2019-07-30 15:06:02", "2026-06-17 18:42:21.675150+00:00", and the same with "T" or "Z".
_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class ServerConfig:
    """The fields of a `get_server_info()` reply crdswatch relies on, plus the raw dict."""

    observatory: str
    operational_context: str | None
    edit_context: str | None
    latest_context: str | None
    build_context: str | None
    context_history: tuple[tuple[str, str, str], ...]  # as the server sends it: newest first
    download_metadata: dict[str, dict[str, str]]  # decoded: {file: {"sha1sum", "size"}}
    raw: dict[str, Any] = field(repr=False, compare=False)

    def activations(self) -> list[Activation]:
        return activations_from_history(self.context_history)

    def default_context(self) -> str | None:
        # Newer servers call the operational context "latest"; prefer it when present.
        return self.latest_context or self.operational_context


def crds_encode(obj: Any) -> dict[str, str]:
    """Encode like the CRDS server does for large results: base64(gzip(json))."""
    payload = base64.b64encode(gzip.compress(json.dumps(obj).encode("utf-8"))).decode("ascii")
    return {"crds_encoded": "1.0", "crds_payload": payload}


def crds_decode(obj: Any, max_bytes: int = DEFAULT_LIMITS.crds_reply_max_bytes) -> Any:
    """Undo `crds_encode`; anything not encoded is returned unchanged.

    The gzip payload is inflated at most to `max_bytes`: a few KB of zeros must not become GB.
    """
    if not (isinstance(obj, dict) and "crds_encoded" in obj):
        return obj
    payload = obj.get("crds_payload")
    if not isinstance(payload, str):
        raise ValueError("crds_encoded result has no string crds_payload")  # noqa: TRY004 - bad data, not a bug
    try:
        inflate = zlib.decompressobj(wbits=31)  # gzip framing
        data = inflate.decompress(base64.b64decode(payload, validate=True), max_bytes + 1)
        if len(data) > max_bytes or inflate.unconsumed_tail:
            raise ValueError(f"decoded payload larger than the cap of {max_bytes} bytes")
        if not inflate.eof:
            raise EOFError("truncated gzip stream")
        return json.loads(data.decode("utf-8"))
    except (binascii.Error, OSError, EOFError, UnicodeDecodeError, ValueError, RecursionError, zlib.error) as exc:
        raise ValueError(f"cannot decode crds_encoded payload: {exc}") from exc


def parse_history_date(text: str) -> datetime:
    """Parse a history date; naive dates are UTC (that is what the servers mean)."""
    if not isinstance(text, str):
        raise HistoryFormatError(f"history date must be a string, got {type(text).__name__}")
    m = _DATE_RE.match(text.strip())
    if m is None:
        raise HistoryFormatError(f"unrecognised history date {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(6, "0"))
    tz = UTC
    offset = m.group(8)
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        value = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise HistoryFormatError(f"impossible history date {text!r}: {exc}") from exc
    return value.astimezone(UTC)


def since_cutoff(text: str) -> datetime:
    """A `since` date as the config documents it: "2024-05-01", or a full ISO date-time.

    A date alone means its midnight UTC; a date-time without an offset is UTC too (as history
    dates are). Raises ValueError naming the value.
    """
    value = text.strip()
    try:
        when = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date like 2024-05-01 or 2024-05-01T12:00:00Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def format_history_date(value: datetime) -> str:
    """Render like newer servers do: `2026-06-17 18:42:21.675150+00:00`."""
    return value.astimezone(UTC).isoformat(sep=" ")


def activation_from_row(row: object, index: int | None = None) -> Activation:
    """Turn one `[start_date, context, description]` row into an Activation."""
    if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) not in (2, 3):
        raise HistoryFormatError("expected [date, context, description]", index, row)
    date, context = row[0], row[1]
    description = row[2] if len(row) == 3 else ""
    if not isinstance(context, str) or not context.endswith(".pmap"):
        raise HistoryFormatError("context is not a .pmap name", index, row)
    if not isinstance(description, str):
        raise HistoryFormatError("description is not a string", index, row)
    try:
        when = parse_history_date(date)
    except HistoryFormatError as exc:
        raise HistoryFormatError(str(exc), index, row) from exc
    return Activation(date=when.isoformat(), context=context, description=description)


def activations_from_history(rows: Sequence[object]) -> list[Activation]:
    """Activations oldest first: the server sends them newest first (crds_server's own order)."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise HistoryFormatError(f"context history must be a list, got {type(rows).__name__}")
    acts = [activation_from_row(row, i) for i, row in enumerate(rows)]
    # The server's order is the activation order (newest first); dates are only what the row says.
    # Sorting by date would hide a backdated or reverted entry before the last one we processed.
    return acts[::-1]


def _opt_str(raw: Mapping[str, Any], key: str, source: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string, got {type(value).__name__}")
    return value


def parse_server_config(text: str, source: str = "server_config") -> ServerConfig:
    """Parse a server_config (Python literal dict) safely: literal_eval only, never eval."""
    try:
        raw = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ConfigError(f"{source}: not a Python literal: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a dict, got {type(raw).__name__}")
    history = raw.get("context_history", [])
    if not isinstance(history, list):
        raise ConfigError(f"{source}: context_history must be a list")
    rows: list[tuple[str, str, str]] = []
    for i, row in enumerate(history):
        act = activation_from_row(row, i)  # validates; keeps the server's own spelling below
        rows.append((str(row[0]), act.context, act.description))
    try:
        metadata = crds_decode(raw.get("download_metadata", {}))
    except ValueError as exc:
        raise ConfigError(f"{source}: download_metadata: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ConfigError(f"{source}: download_metadata must be a dict")
    clean_md: dict[str, dict[str, str]] = {}
    for name, info in metadata.items():
        if not isinstance(info, dict):
            raise ConfigError(f"{source}: download_metadata[{name!r}] must be a dict")
        clean_md[str(name)] = {str(k): str(v) for k, v in info.items()}
    return ServerConfig(
        observatory=_opt_str(raw, "observatory", source) or "",
        operational_context=_opt_str(raw, "operational_context", source),
        edit_context=_opt_str(raw, "edit_context", source),
        latest_context=_opt_str(raw, "latest_context", source),
        build_context=_opt_str(raw, "build_context", source),
        context_history=tuple(rows),
        download_metadata=clean_md,
        raw=raw,
    )


def load_server_config(path: Path) -> ServerConfig:
    """Read and parse a server_config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_server_config(text, source=str(path))
