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

import codecs
import io
import logging
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import IO, Any, cast

import msgspec

from .domain.text import escape

_encoder = msgspec.json.Encoder()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


_stamp_second = -1
_stamp_prefix = ""
_stamp_millis = -1  # the millisecond (since the epoch) of ``_stamp_text``
_stamp_text = ""


def iso_utc(created: float) -> str:
    """``created`` as ``datetime.fromtimestamp(created, UTC).isoformat(timespec=
    "milliseconds")`` writes it: the text kept for the millisecond (many lines share
    one under load), the date and time made once a second."""
    global _stamp_millis, _stamp_text
    scaled = created * 1000
    millis = int(scaled)
    # Away from a millisecond's edges the float product names the millisecond datetime
    # rounds to (its error is under 0.002 ms up to the year 2096); near one, the exact way.
    if 0.004 < scaled - millis < 0.996:
        if millis == _stamp_millis:
            return _stamp_text
        second, rest = divmod(millis, 1000)
    else:
        second = int(created)
        micros = round((created - second) * 1e6)  # rounded to the microsecond as datetime does
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        rest = micros // 1000
        millis = second * 1000 + rest
    _stamp_millis, _stamp_text = millis, f"{_date_time(second)}.{rest:03d}+00:00"
    return _stamp_text


def _date_time(second: int) -> str:
    global _stamp_second, _stamp_prefix
    if second != _stamp_second:
        moment = datetime.fromtimestamp(second, UTC)
        _stamp_prefix, _stamp_second = moment.strftime("%Y-%m-%dT%H:%M:%S"), second
    return _stamp_prefix


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            extra = {**_fields(record), "exc": self.formatException(record.exc_info)}
        else:
            extra = _fields(record)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), extra)

    @staticmethod
    def line(created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> str:
        """One record's line, from its parts."""
        return JsonFormatter.encoded(created, level, name, msg, fields).decode()

    @staticmethod
    def encoded(created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> bytes:
        """``line`` in UTF-8 (``DeliveryLog`` writes it without a record)."""
        line: dict[str, Any] = {
            "ts": iso_utc(created),
            "level": level.lower(),
            "logger": name,
            "msg": msg,
            **fields,
        }
        return _encoder.encode(line)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), _fields(record)
        )

    @staticmethod
    def line(created: float, level: str, name: str, msg: str, fields: dict[str, Any]) -> str:
        # A terminal reads these: control characters in a value are shown escaped.
        extra = " ".join(f"{k}={escape(str(v))}" for k, v in fields.items() if v not in (None, ""))
        stamp = datetime.fromtimestamp(created).strftime("%H:%M:%S")
        text = f"{stamp} {level:<7} {escape(msg)}"
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
        #: What a line is written in (the stream's encoding).
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self._utf8 = codecs.lookup(self.encoding).name == "utf-8"
        self._pending = False
        self._flushed_at = 0.0
        _start_flusher(self)

    def emit(self, record: logging.LogRecord) -> None:
        # ``Handler.handle`` holds ``self.lock`` around this call.
        try:
            line = self.format(record) + self.terminator
            self._bytes.write(line.encode(self.encoding, "backslashreplace"))
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

    @property
    def utf8(self) -> bool:
        """Whether a line's UTF-8 bytes are what ``emit`` writes for it."""
        return self._utf8 and self.terminator == "\n"

    def write_access(self, data: bytes) -> None:
        """Write a ``service.access`` line made without a record (``DeliveryLog``), as
        ``emit`` writes one: the same buffer, under the same lock, the same flush rule."""
        with self.lock:  # type: ignore[union-attr]
            self._bytes.write(data)
            now = time.monotonic()
            if now - self._flushed_at >= FLUSH_SECONDS:
                self._bytes.flush()
                self._pending = False
                self._flushed_at = now
            else:
                self._pending = True

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


class _DeliveryLine(msgspec.Struct):
    """A delivery's JSON line, its keys in ``JsonFormatter.encoded``'s order."""

    ts: str
    level: str
    logger: str
    msg: str
    method: str
    path: str
    status: int
    outcome: str
    type: str | None
    id: str | None
    request_id: str | None
    ms: float


class DeliveryLog:
    """The delivery line of the webhook route, at info on ``service.access``.

    Where the logging setup is the one ``setup`` makes (one ``BatchingHandler`` with
    one of this module's formatters, no filters, nothing else on the way), the line
    is made from its parts and written to that handler's buffer, without a
    ``LogRecord`` and a ``Formatter.format`` per delivery: the same bytes, in the
    same order with every other record (the handler's lock and buffer are the same).
    Anywhere else (a test's capture, an operator's own handlers) it goes through
    ``logging`` as any record does. Measured (in a loop, 2-core machine under load):
    8.2 against 2.9 us a line.
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logging.getLogger(ACCESS) if logger is None else logger

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def info(self, msg: str, fields: dict[str, Any]) -> None:
        """Write ``msg`` with ``fields`` at info (the caller checked ``enabled``)."""
        self._info(self._direct(), msg, fields)

    def _info(self, handler: BatchingHandler | None, msg: str, fields: dict[str, Any]) -> None:
        if handler is None:
            self.logger.info(msg, extra={"fields": fields})
            return
        formatter = cast(JsonFormatter | TextFormatter, handler.formatter)
        name, created = self.logger.name, time.time()
        try:
            if type(formatter) is JsonFormatter and handler.utf8:
                data = formatter.encoded(created, "INFO", name, msg, fields) + b"\n"
            else:
                line = formatter.line(created, "INFO", name, msg, fields) + handler.terminator
                data = line.encode(handler.encoding, "backslashreplace")
            handler.write_access(data)
        except RecursionError:
            raise
        except Exception:
            self._failed(handler, msg, fields)

    def _failed(
        self, handler: BatchingHandler, msg: str, fields: dict[str, Any] | None = None
    ) -> None:
        """What ``logging`` does with a record its handler could not write."""
        extra = None if fields is None else {"fields": fields}
        handler.handleError(
            self.logger.makeRecord(
                self.logger.name, logging.INFO, "", 0, msg, (), None, extra=extra
            )
        )

    def delivery(
        self,
        msg: str,
        method: str,
        path: str,
        status: int,
        outcome: str,
        type_: str | None,
        id_: str | None,
        request_id: str | None,
        ms: float,
    ) -> None:
        """A delivery's line at info (the caller checked ``enabled``): ``info`` with the
        fields method, path, status, outcome, type, id, request_id and ms, in that order.

        Where the line would be written as JSON straight to the handler, it is encoded
        from a Struct of those fields, the same bytes as ``JsonFormatter.encoded`` makes
        of them (``tests/test_logs.py``), without the two dicts: 2.5-2.8 against
        3.9-5.6 us a line, its fields gathered (timeit, best of 5, two rounds); in
        process, 0.972x the instructions per delivery (``bench.instructions``)."""
        handler = self._direct()
        if handler is None or type(handler.formatter) is not JsonFormatter or not handler.utf8:
            fields = {
                "method": method,
                "path": path,
                "status": status,
                "outcome": outcome,
                "type": type_,
                "id": id_,
                "request_id": request_id,
                "ms": ms,
            }
            self._info(handler, msg, fields)  # the handlers walked once, not again
            return
        line = _DeliveryLine(
            iso_utc(time.time()),
            "info",
            self.logger.name,
            msg,
            method,
            path,
            status,
            outcome,
            type_,
            id_,
            request_id,
            ms,
        )
        try:
            handler.write_access(_encoder.encode(line) + b"\n")
        except RecursionError:
            raise
        except Exception:
            self._failed(handler, msg)

    def _direct(self) -> BatchingHandler | None:
        """The one handler a record of this logger would reach, when the line can be
        written to it directly."""
        found: logging.Handler | None = None
        logger: logging.Logger | None = self.logger
        while logger is not None:
            if logger.filters:
                return None
            for handler in logger.handlers:
                if found is not None:
                    return None
                found = handler
            if not logger.propagate:
                break
            logger = logger.parent
        if (
            type(found) is not BatchingHandler
            or found.filters
            or found.level > logging.INFO
            or type(found.formatter) not in (JsonFormatter, TextFormatter)
        ):
            return None
        return found


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
