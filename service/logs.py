"""Structured logs: one JSON object per line, or readable text on a terminal.

Call sites pass their fields as ``extra={"fields": {...}}``; the formatter
writes them beside the message. Nothing here ever receives a secret, a
signature or a body: callers log ids, types, outcomes and reasons only.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from .domain.text import escape

_encoder = msgspec.json.Encoder()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # A terminal reads these: control characters in a value are shown escaped.
        extra = " ".join(
            f"{k}={escape(str(v))}" for k, v in _fields(record).items() if v not in (None, "")
        )
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {escape(record.getMessage())}"
        return f"{text}  {extra}" if extra else text


def setup(level: str = "info", json: bool | None = None) -> None:
    """Log to stderr: JSON unless stderr is a terminal (or ``json`` says otherwise)."""
    as_json = not sys.stderr.isatty() if json is None else json
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
