"""The server's logs: text or JSON lines (setting `log_format`), each line of a request
carrying its request id.

The request's id and client address live in context variables, set by the request
middleware (`observe.RequestMiddleware`) for the request's whole life: its handler, its
dependencies and the threads they run in (Starlette copies the context into its thread
pool). A log filter adds them to every record, and the audit log (`accounts.audit`) reads
the client address from here, so no handler passes them along.

`configure` is for the server's processes (the CLI calls it); tests and embedding
programs keep their own logging.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "RequestContextFilter",
    "adopt_uvicorn_loggers",
    "client_address",
    "configure",
    "request_id",
]

LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("kenshin_request_id", default=None)
client_address: ContextVar[str | None] = ContextVar("kenshin_client_address", default=None)

# What a LogRecord has of its own: anything else on it came as `extra=` and is logged.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}
_configured: LogFormat | None = None


class RequestContextFilter(logging.Filter):
    """Puts the current request's id (or None) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id,
    the record's `extra` fields, and the exception's traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: LogFormat = "text", stream: Any = None) -> None:
    """Root logging for a server process: one handler on stderr, `fmt` lines, the request
    id on every record. Alembic's chatter is left out (kenshin.server.db logs what it
    applies)."""
    global _configured
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _configured = fmt
    adopt_uvicorn_loggers()


def adopt_uvicorn_loggers() -> None:
    """uvicorn gives its loggers handlers of its own (text, no request id) when it starts:
    once `configure` has run in this process, they go through the root's handler instead.
    Called again from the application's startup, which comes after uvicorn's setup."""
    if _configured is None:
        return
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
