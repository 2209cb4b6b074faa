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
from types import TracebackType
from typing import Any, TextIO

import structlog

__all__ = ["QUIET_LOGGERS", "configure", "handler"]

# Libraries that narrate every request, job run or SMTP session at INFO: warnings and errors only.
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler.executors", "mail.log", "alembic", "asyncio",
                 "uvicorn.access", "hpack")

_HANDLER_NAME = "crdswatch"


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


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
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder()], processors=final)
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
    root.addHandler(handler(fmt, target))
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> this handler
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
