"""Log output on a real file descriptor: delivery lines in blocks, nothing lost or reordered."""

from __future__ import annotations

import io
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import hypothesis
import pytest

from service import logs


@pytest.fixture
def pipe() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A text stream on the write end of a pipe (as stderr read by a log collector)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = io.TextIOWrapper(io.FileIO(write_end, "wb"), line_buffering=True)
    yield stream, read_end
    stream.close()
    os.close(read_end)


def arrived(fd: int) -> list[str]:
    """The lines that have reached the pipe so far."""
    data = b""
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    return [json.loads(line)["msg"] for line in data.decode().splitlines()]


def handler_on(stream: io.TextIOWrapper) -> tuple[logs.BatchingHandler, logging.Logger]:
    handler = logs.BatchingHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    access = logging.Logger(logs.ACCESS)
    access.addHandler(handler)
    return handler, access


def test_a_lone_delivery_line_is_written_at_once(pipe: tuple[io.TextIOWrapper, int]) -> None:
    stream, read_end = pipe
    _, access = handler_on(stream)
    access.info("webhook accepted")
    assert arrived(read_end) == ["webhook accepted"]


def test_lines_under_load_are_written_within_the_flush_interval(
    pipe: tuple[io.TextIOWrapper, int],
) -> None:
    stream, read_end = pipe
    _, access = handler_on(stream)
    for n in range(500):
        access.info("delivery %d", n)
    first = arrived(read_end)
    # The first went out at once; the rest wait for a write-out (at most one so far).
    assert first[0] == "delivery 0" and len(first) < 500
    deadline = time.monotonic() + 5
    seen = first
    while len(seen) < 500 and time.monotonic() < deadline:
        time.sleep(logs.FLUSH_SECONDS / 4)
        seen += arrived(read_end)
    assert seen == [f"delivery {n}" for n in range(500)]


def test_any_other_record_writes_out_pending_lines_first(
    pipe: tuple[io.TextIOWrapper, int],
) -> None:
    stream, read_end = pipe
    handler, access = handler_on(stream)
    other = logging.Logger("service")
    other.addHandler(handler)
    access.info("webhook accepted")
    access.info("webhook duplicate")
    other.warning("redis unavailable")
    assert arrived(read_end) == ["webhook accepted", "webhook duplicate", "redis unavailable"]


@pytest.mark.spawns
def test_pending_lines_are_written_when_the_process_exits() -> None:
    code = (
        "import logging; from service import logs; logs.setup('info', json=True)\n"
        f"log = logging.getLogger({logs.ACCESS!r})\n"
        "for n in range(2000): log.info('delivery %d', n)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line)["msg"] for line in done.stderr.decode().splitlines()]
    assert messages == [f"delivery {n}" for n in range(2000)]


FIELDS = {"method": "POST", "status": 202, "type": "ORDERS.IMPORT", "id": "é\x1b", "ms": 1.5}


@pytest.mark.parametrize("formatter", [logs.JsonFormatter, logs.TextFormatter])
def test_a_delivery_line_without_a_record_is_the_line_a_record_makes(
    pipe: tuple[io.TextIOWrapper, int], formatter: type[logging.Formatter]
) -> None:
    stream, read_end = pipe
    handler, access = handler_on(stream)
    handler.setFormatter(formatter())
    other = logging.Logger("service")
    other.addHandler(handler)
    direct = logs.DeliveryLog(access)
    assert direct._direct() is handler  # written straight to the handler
    direct.info("webhook accepted", FIELDS)
    access.info("webhook accepted", extra={"fields": FIELDS})
    other.warning("redis unavailable")
    data = b""
    while select.select([read_end], [], [], 0)[0]:
        data += os.read(read_end, 1 << 16)
    first, second, third = data.decode().splitlines()
    if formatter is logs.JsonFormatter:
        made, recorded = json.loads(first), json.loads(second)
        assert made.pop("ts")[:16] == recorded.pop("ts")[:16]
        assert (
            made
            == recorded
            == {
                "level": "info",
                "logger": logs.ACCESS,
                "msg": "webhook accepted",
                **FIELDS,
            }
        )
        assert json.loads(third)["msg"] == "redis unavailable"
    else:
        assert first[8:] == second[8:]
        assert first.endswith(
            "webhook accepted  method=POST status=202 type=ORDERS.IMPORT id=é\\x1b ms=1.5"
        )
        assert "redis unavailable" in third


@pytest.mark.parametrize("formatter", [logs.JsonFormatter, logs.TextFormatter])
@pytest.mark.parametrize("request_id", ["v-é\x1b\u2028", None])
def test_a_delivery_line_from_its_fields_is_the_line_a_record_makes(
    pipe: tuple[io.TextIOWrapper, int], formatter: type[logging.Formatter], request_id: str | None
) -> None:
    stream, read_end = pipe
    handler, access = handler_on(stream)
    handler.setFormatter(formatter())
    fields = {
        "method": "POST",
        "path": "/webhooks/voucherify",
        "status": 202,
        "outcome": "accepted",
        "type": "voucher.published",
        "id": 'evt_"1\\',
        "request_id": request_id,
        "ms": 12.3,
    }
    logs.DeliveryLog(access).delivery("webhook accepted", *fields.values())
    access.info("webhook accepted", extra={"fields": fields})
    handler.flush()
    data = b""
    while select.select([read_end], [], [], 0)[0]:
        data += os.read(read_end, 1 << 16)
    made, recorded = data.decode().removesuffix("\n").split("\n")
    if formatter is logs.JsonFormatter:
        # The same bytes after the time: keys, order, escapes, null.
        assert made.split(",", 1)[1] == recorded.split(",", 1)[1]
        assert json.loads(made)["request_id"] == request_id
    else:
        assert made[8:] == recorded[8:]


def test_a_delivery_line_goes_through_logging_where_other_handlers_listen(
    pipe: tuple[io.TextIOWrapper, int], caplog: pytest.LogCaptureFixture
) -> None:
    stream, _ = pipe
    handler, _ = handler_on(stream)
    captured = logging.Logger(logs.ACCESS)
    captured.addHandler(handler)
    captured.addHandler(caplog.handler)
    assert logs.DeliveryLog(captured)._direct() is None
    logs.DeliveryLog(captured).info("webhook accepted", FIELDS)
    [record] = caplog.records
    assert record.getMessage() == "webhook accepted" and record.fields == FIELDS  # type: ignore[attr-defined]


@hypothesis.given(hypothesis.strategies.floats(min_value=0, max_value=4e9))
@hypothesis.example(1_796_651_900.9999995)  # rounds up into the next second
@hypothesis.example(1_796_651_900.0009996)  # rounds up into the next millisecond
@hypothesis.example(1_796_651_900.0010004)
def test_log_times_are_written_as_datetime_writes_them(moment: float) -> None:
    expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    assert logs.iso_utc(moment) == expected


@pytest.mark.parametrize("formatter", [logs.JsonFormatter, logs.TextFormatter])
@pytest.mark.parametrize("how", ["delivery", "info"])
def test_a_line_that_cannot_be_written_is_handled_as_logging_handles_a_record(
    formatter: type[logging.Formatter], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_end, "wb"), line_buffering=True)
    handler, access = handler_on(stream)
    handler.setFormatter(formatter())
    stream.close()  # the collector went away: every write fails
    os.close(read_end)
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    log = logs.DeliveryLog(access)
    if how == "delivery":
        # raises nothing
        log.delivery("webhook accepted", "POST", "/", 202, "accepted", "T", "i", None, 1.5)
    else:
        log.info("webhook accepted", FIELDS)
    [record] = failed
    assert record.getMessage() == "webhook accepted" and record.levelno == logging.INFO
    if how == "info":
        assert record.fields == FIELDS  # type: ignore[attr-defined]
