"""The exception hierarchy: each error has one owner that decides what happens next."""

from __future__ import annotations

import copy
from typing import Self

from crdswatch.redact import redact_url

__all__ = [
    "BadToken",
    "BestrefError",
    "ChannelPausedError",
    "ConfigError",
    "CrdswatchError",
    "DatabaseError",
    "DatasetHeaderError",
    "DateError",
    "DeliveryConnectionError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "ExprError",
    "ExprSyntaxError",
    "FeedError",
    "FitsReadError",
    "HistoryFormatError",
    "IntegrityError",
    "LookupFailure",
    "MappingError",
    "MappingSyntaxError",
    "MastFormatError",
    "PermanentDeliveryError",
    "ReplyTooLarge",
    "RmapError",
    "RpcError",
    "SchemaNotReady",
    "SelectionError",
    "ServerError",
    "SourceError",
    "StartupError",
    "TokenProblem",
    "TransientDeliveryError",
    "UnknownList",
    "UnknownMappingError",
]


class CrdswatchError(Exception):
    """Base of every error crdswatch raises on purpose.

    Its text is scrubbed where it is made: a URL's password (scheme://user:password@) never
    reaches a log line, a status page or an outbox row through an error message.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_url(a) if isinstance(a, str) else a for a in args))


class ConfigError(CrdswatchError, ValueError):
    """A configuration file or setting is wrong; the message names the key path."""


class DatabaseError(CrdswatchError):
    """The state database did not answer in time (locked, slow, stopped or unreachable)."""


class StartupError(CrdswatchError):
    """The daemon cannot start; the message is one line: what failed, where, and what to do."""


class SchemaNotReady(CrdswatchError):
    """A read-only command found no crdswatch schema, or one at another revision (nothing was changed)."""


class MappingError(CrdswatchError, ValueError):
    """A CRDS mapping cannot be used."""


class MappingSyntaxError(MappingError):
    """A mapping's text uses a construct the safe parser does not accept."""

    def __init__(self, filename: str, line: int | None, reason: str) -> None:
        self.filename = filename
        self.line = line
        self.reason = reason
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {reason}")


class UnknownMappingError(MappingError, LookupError):
    """A mapping name was asked for that the library or server does not have."""


class SourceError(CrdswatchError):
    """Reading from a CRDS server failed; the poll is retried, the cursor stays put."""


class ServerError(SourceError):
    """Transport-level failure: HTTP status, timeout, reset, or a body that is not JSON-RPC."""


class RpcError(SourceError):
    """The server answered with a JSON-RPC error envelope; carries the server's own message."""

    def __init__(self, method: str, name: str, message: str, code: int | None = None) -> None:
        self.method = method
        self.name = name
        self.server_message = message
        self.code = code
        super().__init__(f"CRDS server error in {method}: {name}: {message}")


class IntegrityError(SourceError):
    """A downloaded file does not match its checksum; it is never used."""


class DeliveryError(CrdswatchError):
    """Sending one rendered notice failed.

    `code` is the peer's machine-readable answer when it gave one: the SMTP reply code (550,
    451, 535) or the HTTP status (429, 503); None when there was no answer (a timeout, a refused
    connection, a message we could not build).
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Worth retrying later; `retry_after` (seconds) is the peer's hint when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None, *, code: int | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code)

    def retry_later(self, seconds: float) -> Self:
        """The same error (type, message, code) with another `retry_after`."""
        later = copy.copy(self)
        later.retry_after = seconds
        return later


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the outbox row goes to the dead-letter state."""


class ChannelPausedError(TransientDeliveryError):
    """The channel itself is broken (bad credentials, bad certificate, bad URL): pause it and alert.

    It is transient for the item, which did nothing wrong and must not be dead-lettered, but
    retrying one item at a time is pointless until an operator fixes the channel.
    """


class DeliveryTimeoutError(TransientDeliveryError, TimeoutError):
    """The peer did not answer in time (a read timeout, or the whole send's `send_deadline`)."""


class DeliveryConnectionError(TransientDeliveryError, ConnectionError):
    """The peer could not be reached, or the connection broke mid-send."""


# -- contexts/ (pure): mappings, selection, header expressions, bestref ------------------------------


class DateError(CrdswatchError, ValueError):
    """A date/time crds would not accept; the message is crds' own where it has one."""


class HistoryFormatError(SourceError, ValueError):
    """A context-history row or date cannot be understood; names the offending row."""

    def __init__(self, message: str, row_index: int | None = None, row: object = None) -> None:
        self.row_index = row_index
        self.row = row
        where = f"context_history row {row_index} {row!r}: " if row_index is not None else ""
        super().__init__(where + message)


class LookupFailure(CrdswatchError, LookupError):
    """No selection on this branch (crds' CrdsLookupError): try the next candidate."""


class SelectionError(CrdswatchError, ValueError):
    """The lookup cannot go on (crds' ValidationError, AmbiguousMatchError, bad date...)."""


class BestrefError(MappingError):
    """The header or context cannot be used at all (no instrument, unknown instrument...)."""


class ExprSyntaxError(CrdswatchError, ValueError):
    """The expression uses a construct crds' verifier rejects (the rmap would not load)."""


class ExprError(CrdswatchError, ValueError):
    """Evaluation failed, as Python's would (unknown name, bad comparison)."""


class RmapError(CrdswatchError, ValueError):
    """This rmap cannot be used for selection (crds would refuse to load it)."""


# -- sources/: CRDS server, FITS headers, archive feeds ----------------------------------------------


class ReplyTooLarge(ServerError):
    """A body over its size cap: aborted while streaming; not retried (it would be as large again)."""


class FitsReadError(CrdswatchError, ValueError):
    """The header could not be read within its bounds (size, redirects, host); the file stays unknown."""


class FeedError(SourceError):
    """An archive feed could not be read; the message says what to do about it."""


class DatasetHeaderError(CrdswatchError, ValueError):
    """A header could not be read; the message names the file or parameter."""


# -- notices/: tokens and MAST mail ------------------------------------------------------------------


class TokenProblem(CrdswatchError, ValueError):
    """Why a token confirms nothing: unknown, expired, used, for another list or tampered with."""


class BadToken(CrdswatchError, ValueError):
    """The token was not made by us (or was altered)."""


class MastFormatError(CrdswatchError, ValueError):
    """The mail is not a MAST event notification we can read; the message says why."""


# -- app/: mailing lists -----------------------------------------------------------------------------


class UnknownList(CrdswatchError, LookupError):
    """No list of that name is configured."""
