"""``fanout tail`` and ``stats`` as the installed console script, on real Redis; ``dlq`` is in
``test_dlq.py``, and the failures all three share (Redis unreachable, hostile text) here."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import Settings
from service.domain import actions, outbound, samples
from service.streams.keys import Keys
from service.streams.publisher import Accepted, Publisher
from tests.support.cli import FANOUT, clean_env, command, on_redis
from tests.support.feed import append
from tests.support.servers import free_port

pytestmark = pytest.mark.spawns


async def publish(settings: Settings, redis: Redis, type_: str, status: str = "DONE") -> str:
    publisher = Publisher.from_settings(redis, settings)
    action = actions.decode(msgspec.json.encode(samples.sample(type_, status=status)))
    outcome = await publisher.publish(outbound.publication(action, datetime.now(UTC)))
    assert isinstance(outcome, Accepted)
    # Entries of different streams are shown in the order of their ids' milliseconds:
    # keep publications apart so that order is the order of publishing.
    await asyncio.sleep(0.003)
    return action.id


async def test_tail_json_prints_the_events_as_published(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    first = await publish(settings, redis, "VOUCHERS.IMPORT")
    await publish(settings, redis, "ORDERS.IMPORT", "IN_PROGRESS")
    failed = await publish(settings, redis, "ORDERS.IMPORT", "FAILED")
    last = await publish(settings, redis, "SKUS.IMPORT_CSV")

    result = await on_redis(redis_url, keys.prefix, "tail", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    stored = [
        fields[b"event"].decode()
        for type_ in ("VOUCHERS.IMPORT", "ORDERS.IMPORT", "SKUS.IMPORT_CSV")
        for _, fields in await redis.xrange(keys.completed(type_))
    ]
    assert sorted(lines) == sorted(stored), "byte for byte what was published"
    assert [json.loads(line)["id"] for line in lines] == [first, failed, last], "oldest first"

    only = await on_redis(
        redis_url, keys.prefix, "tail", "--json", "--type", "ORDERS.IMPORT", "--progress"
    )
    assert [json.loads(line)["status"] for line in only.stdout.splitlines()] == [
        "IN_PROGRESS",
        "FAILED",
    ]
    done = await on_redis(redis_url, keys.prefix, "tail", "--json", "--status", "DONE", "-n", "1")
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [last]
    none = await on_redis(redis_url, keys.prefix, "tail", "--json", "-n", "0")
    assert none.returncode == 0 and none.stdout == ""


async def test_tail_count_is_the_newest_n_over_all_streams(
    redis: Redis, keys: Keys, redis_url: str
) -> None:
    # Entries of different streams are ordered by their ids' time: keep the batches
    # a few milliseconds apart so that order is the order of appending.
    ids: list[str] = []
    for type_ in ("ORDERS.IMPORT", "SKUS.IMPORT_CSV", "ORDERS.IMPORT"):
        ids += await append(redis, keys, type_, 4)
        await asyncio.sleep(0.005)
    fewer = await on_redis(redis_url, keys.prefix, "tail", "--json", "-n", "20")
    assert [json.loads(line)["id"] for line in fewer.stdout.splitlines()] == ids
    newest = await on_redis(redis_url, keys.prefix, "tail", "--json", "-n", "6")
    assert [json.loads(line)["id"] for line in newest.stdout.splitlines()] == ids[-6:]


async def test_tail_table_and_dead_letters(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    id_ = await publish(settings, redis, "CUSTOMERS.IMPORT_CSV")
    publisher = Publisher.from_settings(redis, settings)
    await publisher.dead_letter("malformed_json", "not JSON", b"{oops", datetime.now(UTC))

    table = await on_redis(redis_url, keys.prefix, "tail")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == [
        "time",
        "type",
        "status",
        "id",
        "request_id",
        "progress",
        "done",
        "failed",
    ]
    assert row.split()[1:4] == ["CUSTOMERS.IMPORT_CSV", "DONE", id_]
    assert row.split()[-3:] == ["100", "40", "2"]

    dead = await on_redis(redis_url, keys.prefix, "tail", "--dead")
    assert dead.returncode == 0
    assert "malformed_json" in dead.stdout and "not JSON" in dead.stdout
    dead_json = await on_redis(redis_url, keys.prefix, "tail", "--dead", "--json")
    [letter] = [json.loads(line) for line in dead_json.stdout.splitlines()]
    assert letter["reason"] == "malformed_json" and letter["body"] == "{oops"


async def test_tail_follow_prints_new_entries_until_interrupted(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        FANOUT,
        "tail",
        "--follow",
        "--json",
        "--redis-url",
        redis_url,
        "--stream-prefix",
        keys.prefix,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        await asyncio.sleep(0.8)  # let it start reading
        new = await publish(settings, redis, "PRODUCTS.IMPORT_CSV")
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert json.loads(line)["id"] == new
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


async def test_stats_shows_streams_groups_pending_lag_and_dead_letters(
    redis: Redis, keys: Keys, settings: Settings, redis_url: str
) -> None:
    for _ in range(3):
        await publish(settings, redis, "ORDERS.IMPORT")
    await publish(settings, redis, "ORDERS.IMPORT", "IN_PROGRESS")
    publisher = Publisher.from_settings(redis, settings)
    await publisher.dead_letter("malformed_json", "x", b"{", datetime.now(UTC))
    stream = keys.completed("ORDERS.IMPORT")
    await redis.xgroup_create(stream, "billing", id="0")
    await redis.xreadgroup("billing", "c1", {stream: ">"}, count=1)  # one pending, two lagging
    empty = keys.completed("SKUS.IMPORT_CSV")
    await redis.xgroup_create(empty, "billing", id="0", mkstream=True)  # as a Consumer makes them

    result = await on_redis(redis_url, keys.prefix, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {s["stream"]: s for s in data["streams"]}
    assert set(by_name) == {stream, empty, keys.progress("ORDERS.IMPORT"), keys.dead_letters()}
    completed = by_name[stream]
    assert completed["length"] == 3 and completed["kind"] == "completed"
    assert completed["first_entry_at"] <= completed["last_entry_at"]
    [group] = completed["groups"]
    assert group["name"] == "billing" and group["pending"] == 1 and group["consumers"] == 1
    assert group["lag"] in (2, None)  # None: a server that does not track lag
    assert data["dead_letters"] == 1
    # 3 completions of 3 actions (3 done markers), 1 progress step, 1 dead letter body
    assert data["dedup_records"] == {"ORDERS.IMPORT": 7, "dead": 1}
    assert not any(data["dedup_keys"].values())  # no key with a TTL

    # The table: each group with its totals, then its streams that hold something.
    table = await on_redis(redis_url, keys.prefix, "stats")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("billing "))
    assert lines[at].split()[1:5] == ["2", "streams", "3", "1"]  # length 3, 1 pending
    assert lines[at + 1].split()[:3] == [stream, "3", "1"]
    assert empty not in table.stdout, "an empty stream is left out"
    assert "1 empty stream row not shown (--all shows them)" in lines
    every = await on_redis(redis_url, keys.prefix, "stats", "--all")
    assert any(line.split()[:2] == [empty, "0"] for line in every.stdout.splitlines())
    assert any(
        line.startswith("(no group)") and keys.progress("ORDERS.IMPORT") in line for line in lines
    )
    assert "dead letters: 1" in table.stdout
    assert "dedup records held: 8 (ORDERS.IMPORT 7, dead 1)" in table.stdout


async def test_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for words in (["tail"], ["stats"], ["dlq", "list"]):
        result = await on_redis(url, "p", *words)
        assert result.returncode == 1, words
        assert result.stderr.startswith(f"fanout: cannot reach Redis at {url}")
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


async def test_the_password_of_an_unreachable_url_is_not_printed() -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    result = await on_redis(url, "p", "stats")
    assert result.returncode == 1
    assert "s3cret" not in result.stderr and "user:***@127.0.0.1" in result.stderr


async def test_wrong_url_and_no_server_are_named(tmp_path: Path) -> None:
    wrong = await on_redis("http://localhost:6379", "p", "stats")
    assert wrong.returncode == 2
    assert "FANOUT_REDIS_URL" in wrong.stderr and "Traceback" not in wrong.stderr
    nothing = await command(clean_env(), "stats", "--data-dir", str(tmp_path))
    assert nothing.returncode == 1
    assert "no running `fanout serve` was found" in nothing.stderr
    assert str(tmp_path / "server.json") in nothing.stderr


# Every C0/C1 control character, DEL, a line separator, a bidi override, rich markup.
HOSTILE = "aa_\x00\x07\x1b[2J\x1b]0;owned\x07\r\x7f\x9b31m\u2028\u202e[bold red]x[/]"


def _unprintable(text: str) -> list[str]:
    allowed = {"\n"}  # line ends of the output itself
    return [ch for ch in text if ch not in allowed and not (ch == " " or ch.isprintable())]


async def test_nothing_printed_reaches_the_terminal_raw(
    redis: Redis, keys: Keys, redis_url: str
) -> None:
    # Issue 13: ids with NUL or ANSI escapes were written raw to the terminal. The
    # receiver refuses such ids now, but streams may hold older entries, dead-letter
    # bodies are whatever was sent, and group names are anyone's choice.
    _, event = event_json_with("VOUCHERS.IMPORT", id=HOSTILE)
    stream = keys.completed("VOUCHERS.IMPORT")
    await redis.xadd(
        stream,
        {
            "type": "VOUCHERS.IMPORT",
            "status": "DONE",
            "id": HOSTILE,
            "request_id": HOSTILE,
            "event": event,
        },
    )
    await redis.xgroup_create(stream, HOSTILE, id="0")
    body = b'{"id":"' + HOSTILE.encode() + b'","raw":"\x1b[31m"}'
    await redis.xadd(
        keys.dead_letters(),
        {
            "reason": "invalid_payload",
            "detail": HOSTILE,
            "body": body,
            "sha256": "0" * 64,
            "received_at": "2026-11-29T00:00:00.000Z",
        },
    )
    letter = (await redis.xrange(keys.dead_letters()))[0][0].decode()
    commands = [
        ("tail",),
        ("tail", "--json"),
        ("tail", "--dead"),
        ("tail", "--dead", "--json"),
        ("dlq", "list"),
        ("dlq", "list", "--json"),
        ("dlq", "show", letter),
        ("dlq", "show", letter, "--json"),
        ("stats",),
        ("stats", "--json"),
    ]
    # Read-only commands: run side by side (one after another was 10 process starts).
    results = await asyncio.gather(*(on_redis(redis_url, keys.prefix, *a) for a in commands))
    for args, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (args, result.stderr)
        assert _unprintable(result.stdout) == [], args
        assert "\\x1b" in result.stdout or "\\u001b" in result.stdout, args
        if "--json" in args:
            for line in result.stdout.splitlines():
                json.loads(line)  # still JSON, same values
        elif args[:2] == ("dlq", "show"):  # no column to cut the value short
            assert "[bold red]x[/]" in result.stdout, "markup shown as text"
    shown = json.loads((await on_redis(redis_url, keys.prefix, "tail", "--json")).stdout)
    assert shown["id"] == HOSTILE, "the JSON value is unchanged, only escaped"


def event_json_with(type_: str, **overrides: str) -> tuple[str, bytes]:
    """The published event JSON of a sample, with fields replaced after validation."""
    from service.domain import completion

    action = actions.decode(msgspec.json.encode(samples.sample(type_)))
    event = completion.from_action(action, datetime.now(UTC))
    return action.id, msgspec.json.encode(msgspec.structs.replace(event, **overrides))
