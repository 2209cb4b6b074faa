"""The daemon's log output, in one place: structlog events and every stdlib logger, one format.

`configure("json")` makes every line the daemon writes one JSON object: crdswatch's own
structlog events, and whatever the libraries log through stdlib `logging` (httpx, APScheduler,
aiosmtpd, uvicorn, alembic, the SMTP channel's plaintext warning, the CRDS client's retry
warnings), `warnings.warn` (captured), uncaught exceptions (tracebacks go into the object, not
over several lines). `configure("console")` is the human format; colours only on a terminal.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import structlog

__all__ = ["QUIET_LOGGERS", "buffer_early", "configure", "handler"]

# Libraries that narrate every request, job run or SMTP session at INFO: warnings and errors only.
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler.executors", "mail.log", "alembic", "asyncio",
                 "uvicorn.access", "hpack")

_HANDLER_NAME = "crdswatch"
_EARLY_NAME = "crdswatch-early"


def buffer_early() -> None:
    """Hold what is logged or warned before `configure` knows the format (a warning raised while
    the command line loads, say); `configure` then writes it in that format, in order."""
    from logging.handlers import MemoryHandler

    root = logging.getLogger()
    if not any(h.get_name() == _EARLY_NAME for h in root.handlers):
        early = MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
        early.set_name(_EARLY_NAME)
        root.addHandler(early)
    logging.captureWarnings(True)


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _record_time(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A library record's own time (a buffered early one is written later than it happened)."""
    record = event_dict.get("_record")
    if record is not None:
        when = datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        event_dict.setdefault("timestamp", when)
    return event_dict


def handler(fmt: str, stream: TextIO) -> logging.Handler:
    """A stdlib handler rendering both structlog events and foreign records in `fmt`."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                 structlog.processors.format_exc_info, renderer]
    else:
        colours = bool(getattr(stream, "isatty", None)) and stream.isatty()
        renderer = structlog.dev.ConsoleRenderer(
            colors=colours, exception_formatter=structlog.dev.plain_traceback if not colours
            else structlog.dev.default_exception_formatter)
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    foreign: list[Any] = [structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
                          structlog.stdlib.add_logger_name, _record_time, structlog.stdlib.ExtraAdder()]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign, processors=final)
    out = logging.StreamHandler(stream)
    out.set_name(_HANDLER_NAME)
    out.setFormatter(formatter)
    return out


def configure(fmt: str, *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Route everything the process logs through one handler on `stream` (stderr) in `fmt`."""
    target = stream if stream is not None else sys.stderr
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    out = handler(fmt, target)
    root.addHandler(out)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> this handler
    for early in [h for h in root.handlers if h.get_name() == _EARLY_NAME]:
        root.removeHandler(early)
        for record in getattr(early, "buffer", []):
            if record.levelno >= level and logging.getLogger(record.name).isEnabledFor(record.levelno):
                out.handle(record)
        early.close()
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("crdswatch").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    logging.getLogger("crdswatch").error(
        "uncaught exception in thread", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"thread_name": getattr(args.thread, "name", None)})
