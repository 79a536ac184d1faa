"""Structured logging: every record, ours, the app's and uvicorn's, is one JSON line.

One line per record keeps a multi-line traceback a single event for whatever collects the
container's output, and the fixed keys (ts, level, app, version, request_id) let a reader
join an error to the request that caused it and to the release that served it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from servicekit.requestid import current_request_id

__all__ = ["JsonFormatter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=` and is
# written out as a field of its own.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts (UTC, ISO 8601, ms), level, app, version,
    logger, message, request_id (when inside a request), the record's `extra` fields, and
    exc (the traceback) when the record carries an exception."""

    def __init__(self, app: str, version: str) -> None:
        super().__init__()
        self.app = app
        self.version = version

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "app": self.app,
            "version": self.version,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(app_name: str, version: str, *, level: str = "INFO",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record of the process, as one JSON line, to `stream` (stderr).

    Replaces the root logger's handlers and routes uvicorn's loggers through the root, so
    calling it again reconfigures rather than duplicates. Returns the installed handler.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(app_name, version))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        # Another logging setup in the process (a dictConfig with disable_existing_loggers,
        # a level of its own) must not silence them: the root's level decides.
        uvicorn_logger.disabled = False
        uvicorn_logger.setLevel(logging.NOTSET)
    return handler
