"""The console script as a user runs it: serve on the embedded Valkey, send samples."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import msgspec
import pytest
import redis

from service.domain import samples
from tests.support.cli import FANOUT, clean_env, embedded_url, run, send, serve
from tests.support.http import SECRET, signed
from tests.support.servers import answers_ping, free_port

pytestmark = pytest.mark.spawns


def test_serve_embedded_then_send_a_sample(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, folder, process = served
    sent = send(base, folder, "--sample", "VOUCHERS.IMPORT")
    assert sent.returncode == 0, sent.stderr
    status, answer = sent.stdout.split(" ", 1)
    assert status == "202"
    accepted = json.loads(answer)
    assert accepted["stream"] == "voucherify:{VOUCHERS.IMPORT}:completed"

    # The event is in the embedded server, on a loopback port with a password.
    client = redis.Redis.from_url(embedded_url(folder / ".fanout"))
    try:
        [(entry_id, entry)] = client.xrange(accepted["stream"])
        assert entry_id.decode() == accepted["entry_id"]
        assert json.loads(entry[b"event"])["type"] == "VOUCHERS.IMPORT"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        client.close()

    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=15)[0]
    secret = (folder / ".fanout" / "webhook-secret").read_text().strip()
    assert output.count(secret) == 1, "the generated secret is printed once"
    assert "For local use only" in output
    password = (folder / ".fanout" / "redis-password").read_text().strip()
    port = int((folder / ".fanout" / "redis-port").read_text())
    assert f"embedded Valkey listening on redis://127.0.0.1:{port}/0 " in output
    assert f"its password is kept in {(folder / '.fanout' / 'redis-password').resolve()}" in output
    assert password not in output, "the Redis password is never printed"
    assert process.returncode == 0
    assert answers_ping(port) == b"", "the embedded server stopped"


def test_serve_with_cloudevents_writes_the_data_field(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    env = {"FANOUT_REDIS_URL": redis_url, "FANOUT_STREAM_PREFIX": prefix, "FANOUT_SECRETS": SECRET}
    body = msgspec.json.encode(samples.sample("ORDERS.IMPORT"))
    client = redis.Redis.from_url(redis_url)
    try:
        with serve(tmp_path, "--cloudevents", "1", **env) as (base, _):
            answer = httpx.post(f"{base}/webhooks/voucherify", content=body, headers=signed(body))
            document = httpx.get(f"{base}/asyncapi.json").json()
        assert answer.status_code == 202, answer.text
        [(_, entry)] = client.xrange(answer.json()["stream"])
        assert (
            json.loads(entry[b"data"])["type"]
            == "io.voucherify.async_action.orders.import.completed"
        )
        key = document["channels"]["ORDERS.IMPORT.completed"]["x-redis-key"]
        assert key == answer.json()["stream"] == f"{prefix}:{{ORDERS.IMPORT}}:completed"
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


def test_send_a_file_twice_gives_accepted_then_duplicate(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, folder, _ = served
    action = {
        "id": "aa_cli_file",
        "type": "ORDERS.IMPORT",
        "status": "DONE",
        "request_id": "v-1",
        "result": {"done_count": 3, "failed_count": 0, "failed": []},
    }
    path = folder / "action.json"
    path.write_text(json.dumps(action, indent=2))
    sent = send(base, folder, str(path), "--count", "2")
    assert sent.returncode == 0, sent.stderr
    lines = sent.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["202", "200"]
    assert json.loads(lines[1].split(" ", 1)[1])["status"] == "duplicate"


def test_send_reports_a_rejection_with_exit_status_1(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, folder, _ = served
    sent = send(base, folder, "--sample", "SKUS.IMPORT_CSV", "--secret", "wrong")
    assert sent.returncode == 1
    assert sent.stdout.startswith("401 ")


def test_send_says_plainly_when_a_body_was_dead_lettered_and_exits_1(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    # Issue 25: a 200 all the same (Voucherify must not retry it), but nothing published.
    base, folder, _ = served
    path = folder / "broken.json"
    path.write_text(
        '{"id": "aa_cli_broken", "type": "ORDERS.IMPORT", "status": "DONE", "progress": "50%"}'
    )
    sent = send(base, folder, str(path), "--count", "2")
    assert sent.returncode == 1
    first, again = sent.stdout.splitlines()
    answer = json.loads(first.split(" ", 1)[1])
    assert first.startswith("200 ") and answer["status"] == "dead_lettered"
    assert json.loads(again.split(" ", 1)[1]) == answer, "the same letter for a resend"
    letter = answer["dead_letter"]
    said = [line for line in sent.stderr.splitlines() if "not published" in line]
    assert (
        said
        == [
            f"fanout: not published: kept as dead letter {letter} (invalid_payload: "
            "Expected `int | null`, got `str` - at `$.progress`); "
            f"see `fanout dlq show {letter}`"
        ]
        * 2
    )


def test_send_to_nothing_is_one_line_and_exit_1(tmp_path: Path) -> None:
    sent = run(
        "send",
        "--sample",
        "SKUS.IMPORT_CSV",
        "--secret",
        "s",
        "--url",
        f"http://127.0.0.1:{free_port()}/webhooks/voucherify",
        cwd=tmp_path,
    )
    assert sent.returncode == 1
    assert sent.stderr.splitlines()[-1].startswith("fanout: cannot reach")
    assert "Traceback" not in sent.stderr


def test_bad_configuration_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = run("serve", cwd=tmp_path, env=clean_env(FANOUT_DEDUP_TTL="soon"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fanout: configuration error: FANOUT_DEDUP_TTL: expected a positive integer, got 'soon'"
    ]


def test_flag_wins_over_the_variable(tmp_path: Path) -> None:
    result = run("serve", "--dedup-ttl", "nope", cwd=tmp_path, env=clean_env(FANOUT_DEDUP_TTL="60"))
    assert result.returncode == 2
    # The value came from the flag, so the flag is named.
    assert result.stderr.splitlines() == [
        "fanout: configuration error: --dedup-ttl: expected a positive integer, got 'nope'"
    ]


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    result = run("send", "--sample", "NOT.A_TYPE", cwd=tmp_path)
    assert result.returncode == 2


def test_durability_aof_is_refused_on_a_server_without_waitaof(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("server")
    finally:
        client.close()
    has_waitaof = "valkey_version" in info or tuple(
        int(part) for part in str(info["redis_version"]).split(".")[:2]
    ) >= (7, 2)
    port = str(free_port())
    process = subprocess.Popen(
        [
            FANOUT,
            "serve",
            "--port",
            port,
            "--durability",
            "aof",
            "--secrets",
            "s",
            "--redis-url",
            redis_url,
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    # Either way the answer is explicit: refused with a reason, or WAITAOF works
    # only when the server keeps an AOF (the shared test server does not).
    appendonly = None
    client = redis.Redis.from_url(redis_url)
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
    finally:
        client.close()
    if has_waitaof and appendonly == "yes":
        assert "webhook URL" in out
    else:
        assert process.returncode == 1
        assert "FANOUT_DURABILITY=aof" in err
        assert "WAITAOF" in err
        assert "Traceback" not in err
