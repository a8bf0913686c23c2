"""Structured logs: one JSON object per line, or readable text on a terminal.

Call sites pass their fields as ``extra={"fields": {...}}``; the formatter
writes them beside the message. Nothing here ever receives a secret, a
signature or a body: callers log ids, types, outcomes and reasons only.

Each delivery's line (logger ``service.access``) is written in blocks while
deliveries keep coming: written at once when it is the first for
``FLUSH_SECONDS``, else within about ``FLUSH_SECONDS``. Every other record is
written at once, after any lines still pending, so the order holds. Measured
(``fanout serve`` at saturation, mixed load, stderr to a pipe, quiet machine):
with a write per line, 86 us of CPU per delivery at level info against 74 us at
warning; with these blocks and the switches in ``setup``, 77 us (see
docs/performance.md).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import IO, Any

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


#: Logger of the one line per delivery; batched by ``BatchingHandler``.
ACCESS = "service.access"
#: How long a delivery's line may wait in the buffer while deliveries keep coming.
FLUSH_SECONDS = 0.2


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes ``service.access`` lines in blocks under load.

    The lines go through a buffer of their own on the stream's file descriptor
    (``sys.stderr`` itself writes each line at once); any other record writes out
    what is pending first. A daemon thread writes out what is pending every
    ``FLUSH_SECONDS``.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        stream.flush()
        # closefd=False: closing this writer never closes the process's stderr.
        raw = io.FileIO(stream.fileno(), "wb", closefd=False)
        self._bytes = io.BufferedWriter(raw, buffer_size=1 << 16)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._pending = False
        self._flushed_at = 0.0
        _start_flusher(self)

    def emit(self, record: logging.LogRecord) -> None:
        # ``Handler.handle`` holds ``self.lock`` around this call.
        try:
            line = self.format(record) + self.terminator
            self._bytes.write(line.encode(self._encoding, "backslashreplace"))
            now = time.monotonic()
            if record.name != ACCESS or now - self._flushed_at >= FLUSH_SECONDS:
                self._bytes.flush()
                self._pending = False
                self._flushed_at = now
            else:
                self._pending = True
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._bytes.flush()
            self._pending = False
            self._flushed_at = time.monotonic()

    def flush_pending(self) -> None:
        if self._pending:
            try:
                self.flush()
            except (OSError, ValueError):  # the stream is gone: nothing to write to
                self._pending = False


_batching: weakref.WeakSet[BatchingHandler] = weakref.WeakSet()
_flusher: threading.Thread | None = None


def _start_flusher(handler: BatchingHandler) -> None:
    """One daemon thread for the process writes out every handler's pending lines."""
    global _flusher
    _batching.add(handler)
    if _flusher is None:
        _flusher = threading.Thread(target=_flush_forever, name="log-flush", daemon=True)
        _flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        for handler in list(_batching):
            handler.flush_pending()


def setup_as(level: str, format_: str) -> None:
    """``setup`` for a log format named as ``--log-format`` names it: auto, json or text."""
    setup(level, json=None if format_ == "auto" else format_ == "json")


def setup(level: str = "info", json: bool | None = None) -> None:
    """Log to stderr: JSON unless stderr is a terminal (or ``json`` says otherwise)."""
    as_json = not sys.stderr.isatty() if json is None else json
    handler: logging.Handler
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no file descriptor (a test's capture)
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    # Neither formatter prints the caller, thread or process: not gathering them takes
    # a line from 8.5 to 6.6 us (the logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
