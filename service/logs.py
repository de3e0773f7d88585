"""Logging, in web and worker alike: one handler on the root logger writes every record to
stderr, as text or as JSON lines (LOG_FORMAT); ours ("mailhooks.*") at LOG_LEVEL; uvicorn's
and arq's through the same handler; uvicorn's access log only with ACCESS_LOG.

A log call names what it is about with ids in `extra` (`extra={"webhook_id": 3}`, see IDS);
the JSON format writes them as fields and the text format leaves them to the message. Nothing
logged anywhere includes a secret, an API key or a request or payload body: the JSON format
writes only the fields named here (FIELDS), whatever else a record carries.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from config import Config

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a record may be about, in the order JSON lines show them.
IDS = ("request_id", "account_id", "webhook_id", "event_id", "delivery_id")
# A delivery attempt's outcome (worker/deliverer.py), for a drain to count and chart.
OUTCOME_FIELDS = ("outcome", "status_code", "error", "attempt", "latency_ms")
FIELDS = IDS + OUTCOME_FIELDS
# A request's id as the platform's router gave it (Heroku's X-Request-ID), cut to this length.
REQUEST_ID_LENGTH = 200
ACCESS_LOGGER = "uvicorn.access"

_ENCODER = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601, milliseconds), level, logger,
    message, then those of FIELDS the record carries and, for an exception, `exception`: its
    traceback."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in FIELDS:
            value = fields.get(name)
            if value is not None:
                line[name] = value
        if record.name == ACCESS_LOGGER:
            line.update(access_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return _ENCODER.encode(line).decode()


def access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access record as fields: (client, method, path and query, version, status)."""
    args = record.args
    if not (isinstance(args, tuple) and len(args) == 5):
        return {}
    client, method, path, _, status = args
    return {"method": method, "path": path, "status": status, "client": client}


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, told apart from a handler someone else (pytest, say) put on the root logger."""


def configure(config: Config) -> None:
    """Route every record through one handler in the configured format; idempotent."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(formatter(config.log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)  # the root's own level (WARNING) holds back others' chatter
    logging.getLogger("mailhooks").setLevel(config.log_level)
    # uvicorn and arq configured loggers of their own, with handlers and formats of their own:
    # through ours instead, at LOG_LEVEL but never below INFO (their DEBUG is per connection
    # and per job).
    level = max(logging.INFO, logging.getLevelName(config.log_level))
    for name in ("uvicorn", "uvicorn.error", "arq"):
        own = logging.getLogger(name)
        own.handlers.clear()
        own.propagate = True
        own.setLevel(level)
    access = logging.getLogger(ACCESS_LOGGER)
    access.handlers.clear()
    # Without a handler to reach, uvicorn skips the access log, the line's formatting
    # included (its protocol asks hasHandlers() per connection), as --no-access-log does.
    access.propagate = config.access_log
    access.setLevel(logging.INFO)  # ACCESS_LOG=true shows it whatever LOG_LEVEL says


def lean_records() -> None:
    """Stop every log record from looking up what no format here shows: the calling frame
    (sys._getframe), the thread's and the process's names. Per record, about 2 of 11 µs
    (the logging HOWTO's "Optimization"); the worker logs a line per delivery. For the
    processes' own use: a test runner's log capture shows callers."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def request_id(headers: Mapping[str, str]) -> str | None:
    """The id the platform's router gave the request (Heroku's X-Request-ID), for logs."""
    value = headers.get("x-request-id")
    return value[:REQUEST_ID_LENGTH] if value else None


def ids(headers: Mapping[str, str] | None = None, **values: object) -> dict[str, object]:
    """A log call's `extra`: the ids it is about (names from IDS) and, given the request's
    headers, the request's id: `extra=logs.ids(request.headers, webhook_id=3)`."""
    extra = dict(values)
    found = request_id(headers) if headers is not None else None
    if found is not None:
        extra["request_id"] = found
    return extra
