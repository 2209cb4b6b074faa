"""The exception hierarchy: each error has one owner that decides what happens next."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CrdswatchError",
    "DatabaseError",
    "DeliveryError",
    "IntegrityError",
    "MappingError",
    "MappingSyntaxError",
    "PermanentDeliveryError",
    "RpcError",
    "ServerError",
    "SourceError",
    "TransientDeliveryError",
    "UnknownMappingError",
]


class CrdswatchError(Exception):
    """Base of every error crdswatch raises on purpose."""


class ConfigError(CrdswatchError, ValueError):
    """A configuration file or setting is wrong; the message names the key path."""


class DatabaseError(CrdswatchError):
    """The state database did not answer in time (locked, slow, stopped or unreachable)."""


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
    """Sending one rendered notice failed."""


class TransientDeliveryError(DeliveryError):
    """Worth retrying later; `retry_after` (seconds) is the peer's hint when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the outbox row goes to the dead-letter state."""
