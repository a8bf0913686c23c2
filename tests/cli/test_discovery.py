"""The local server is found without configuration: by the CLI, the example and ``Consumer``."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from service.consumer import Consumer, NoRedis
from tests.support.cli import EXAMPLE, ROOT, LocalServe, clean_env, run
from tests.support.servers import answers_ping

pytestmark = pytest.mark.spawns


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServe]:
    """One ``fanout serve`` with nothing configured, in an empty folder."""
    server = LocalServe(tmp_path_factory.mktemp("project")).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_example_with_no_arguments_receives_a_sent_sample(served: LocalServe) -> None:
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--count", "1", "--group", "newcomer"],
        cwd=served.folder,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = run("send", "--sample", "VOUCHERS.IMPORT", cwd=served.folder)
        assert sent.returncode == 0, sent.stderr
        accepted = json.loads(sent.stdout.split(" ", 1)[1])
        out, err = example.communicate(timeout=30)
    finally:
        if example.poll() is None:
            example.kill()
            example.communicate()
    assert example.returncode == 0, err
    assert out.splitlines() == [
        f"VOUCHERS.IMPORT {accepted['id']} DONE: 2 failed (Duplicate resource key)"
    ]
    port = int((served.folder / ".fanout" / "redis-port").read_text())
    assert err.splitlines() == [
        f"connected to redis://default:***@127.0.0.1:{port}/0 of the local `fanout serve` "
        f"(pid {served.record['pid']}, .fanout/server.json)"
    ]
    assert sent.stderr.splitlines() == [
        f"fanout: posting to {served.base_url}/webhooks/voucherify of the local `fanout serve` "
        f"(pid {served.record['pid']}, .fanout/server.json)"
    ]


def test_the_record_holds_the_way_in_and_no_secret(served: LocalServe) -> None:
    record = served.record
    assert record["pid"] == served.process.pid if served.process else None
    port = int((served.folder / ".fanout" / "redis-port").read_text())
    assert record["redis_url"] == f"redis://default@127.0.0.1:{port}/0"
    password_file = (served.folder / ".fanout" / "redis-password").resolve()
    assert record["redis_password_file"] == str(password_file)
    assert password_file.read_text().strip() not in json.dumps(record)
    for kept in ("server.json", "redis-password", "webhook-secret", "admin-token", "valkey.conf"):
        mode = (served.folder / ".fanout" / kept).stat().st_mode & 0o777
        assert mode == 0o600, f"{kept} is mode {mode:o}"
    assert record["webhook_url"] == f"{served.base_url}/webhooks/voucherify"
    assert record["dashboard_url"] == f"{served.base_url}/dashboard"
    secret = (served.folder / ".fanout" / "webhook-secret").read_text().strip()
    assert secret not in json.dumps(record)
    output = served.output()
    assert f"dashboard: {served.base_url}/dashboard?token=" in output
    assert f"webhook URL: {served.base_url}/webhooks/voucherify" in output


def test_a_second_serve_in_the_same_folder_is_one_line_and_exit_1(served: LocalServe) -> None:
    second = run("serve", "--port", "1", cwd=served.folder, timeout=30)
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.splitlines() == [
        f"fanout: another `fanout serve` (pid {served.record['pid']}, webhook URL "
        f"{served.base_url}/webhooks/voucherify) already uses the data folder .fanout: "
        "stop it, or give this one another --data-dir (FANOUT_DATA_DIR)"
    ]
    assert served.process is not None and served.process.poll() is None, "the first one runs on"


def test_commands_in_a_subfolder_find_the_server_above(served: LocalServe) -> None:
    below = served.folder / "src" / "billing"
    below.mkdir(parents=True, exist_ok=True)
    stats = run("stats", "--json", cwd=below)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["prefix"] == "voucherify"
    assert stats.stderr.startswith("fanout: connected to redis://default:***@127.0.0.1:")


def test_send_from_another_folder_needs_the_data_dir_and_says_where_it_looked(
    served: LocalServe, tmp_path: Path
) -> None:
    lost = run("send", "--sample", "ORDERS.IMPORT", cwd=tmp_path)
    assert lost.returncode == 1
    [line] = lost.stderr.splitlines()
    assert line.startswith("fanout: no secret to sign with:")
    assert str(tmp_path / ".fanout" / "webhook-secret") in line and "--data-dir" in line

    data_dir = str(served.folder / ".fanout")
    for how in (["--data-dir", data_dir],):
        found = run("send", "--sample", "ORDERS.IMPORT", *how, cwd=tmp_path)
        assert found.returncode == 0, found.stderr
        assert found.stdout.startswith("202 ")
    by_env = run(
        "send", "--sample", "ORDERS.IMPORT", cwd=tmp_path, env=clean_env(FANOUT_DATA_DIR=data_dir)
    )
    assert by_env.returncode == 0, by_env.stderr
    tail = run("tail", "--json", "--type", "ORDERS.IMPORT", "--data-dir", data_dir, cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 2


async def test_consumer_connect_uses_the_local_server(served: LocalServe) -> None:
    consumer = await Consumer.connect(
        "lib", data_dir=served.folder / ".fanout", announce=False, types=["SKUS.IMPORT_CSV"]
    )
    try:
        assert consumer.keys.prefix == "voucherify"
        assert await consumer.redis.ping()
    finally:
        await consumer.aclose()


def test_a_stale_record_is_ignored_and_said_so(tmp_path: Path) -> None:
    data_dir = tmp_path / ".fanout"
    data_dir.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    record = {"pid": int(gone.stdout), "redis_url": "unix:///nowhere.sock"}
    (data_dir / "server.json").write_text(json.dumps(record))
    stats = run("stats", cwd=tmp_path)
    assert stats.returncode == 1
    [line] = stats.stderr.splitlines()
    assert line.startswith("fanout: no Redis to connect to:")
    assert (
        f"ignored .fanout/server.json: its server (pid {gone.stdout.strip()}) is no longer running"
        in line
    )
    with pytest.raises(NoRedis, match="no longer running"):
        asyncio.run(Consumer.connect("g", data_dir=data_dir))


def test_the_example_without_any_server_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=clean_env(FANOUT_DATA_DIR=str(tmp_path / "none")),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("consume.py: no Redis to connect to: url and FANOUT_REDIS_URL")
    assert "Start `fanout serve` here" in line


def test_serve_stops_and_removes_its_record(tmp_path: Path) -> None:
    server = LocalServe(tmp_path).start()
    assert (tmp_path / ".fanout" / "server.json").exists()
    assert server.stop() == 0
    assert not (tmp_path / ".fanout" / "server.json").exists()
    assert answers_ping(int((tmp_path / ".fanout" / "redis-port").read_text())) == b""


def test_fanout_url_prints_the_url_with_and_without_the_password(served: LocalServe) -> None:
    port = int((served.folder / ".fanout" / "redis-port").read_text())
    password = (served.folder / ".fanout" / "redis-password").read_text().strip()
    plain = run("url", cwd=served.folder)
    assert (plain.returncode, plain.stdout, plain.stderr) == (
        0,
        f"redis://default@127.0.0.1:{port}/0\n",
        "",
    )
    full = run("url", "--password", cwd=served.folder)
    assert full.stdout == f"redis://default:{password}@127.0.0.1:{port}/0\n"
    with redis.Redis.from_url(full.stdout.strip()) as client:
        assert client.ping()
    with (
        redis.Redis.from_url(plain.stdout.strip()) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
    # Other tools read it as written: redis-cli takes the URL.
    if shutil.which("redis-cli"):
        cli = subprocess.run(
            ["redis-cli", "-u", full.stdout.strip(), "--no-auth-warning", "PING"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert cli.stdout == "PONG\n", cli.stderr


def test_the_live_asyncapi_document_names_the_embedded_server(served: LocalServe) -> None:
    port = int((served.folder / ".fanout" / "redis-port").read_text())
    password_file = (served.folder / ".fanout" / "redis-password").resolve()
    response = httpx.get(f"{served.base_url}/asyncapi.json")
    assert response.status_code == 200
    assert password_file.read_text().strip() not in response.text
    doc = response.json()
    [server] = doc["servers"].values()
    assert server["host"] == f"127.0.0.1:{port}"
    assert server["protocol"] == "redis"
    assert server["x-redis-url"] == f"redis://default@127.0.0.1:{port}/0"
    assert server["x-redis-password-file"] == str(password_file)
    assert str(password_file) in server["description"]
    assert server["security"] == [{"$ref": "#/components/securitySchemes/redisPassword"}]
    assert doc["components"]["securitySchemes"]["redisPassword"]["type"] == "userPassword"


def test_the_sample_body_file_is_accepted_then_a_duplicate(served: LocalServe) -> None:
    # Before the README's consumer step, which sends the same file.
    sample = str(ROOT / "examples" / "vouchers-import.json")
    sent = run("send", sample, "--count", "2", cwd=served.folder)
    assert sent.returncode == 0, sent.stderr
    first, second = (json.loads(line.split(" ", 1)[1]) for line in sent.stdout.splitlines())
    assert sent.stdout.startswith("202 ") and first["status"] == "accepted"
    assert second == {"status": "duplicate", "id": first["id"], "entry_id": first["entry_id"]}


def _readme_line(needle: str) -> str:
    """The README's command line that contains ``needle`` (in a sh block)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    [line] = [line for block in blocks for line in block.splitlines() if needle in line]
    return line


def test_the_readme_consumer_step_works_in_a_new_shell(served: LocalServe) -> None:
    # Exactly the README's line, from a shell with no virtualenv activated, in a
    # checkout (its .venv and examples/) where `make serve` runs.
    line = _readme_line("examples/consume.py")
    venv = Path(sys.executable).parent.parent
    for name, target in ((".venv", venv), ("examples", ROOT / "examples")):
        link = served.folder / name
        if not link.exists():
            link.symlink_to(target)
    env = {k: v for k, v in clean_env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    example = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-c", line],
        cwd=served.folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = run("send", "examples/vouchers-import.json", cwd=served.folder)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith(("202 ", "200 "))
        assert example.stdout is not None
        # The group reads the stream from its start: earlier tests' samples come first.
        lines = [example.stdout.readline()]
        while "aa_0a1b2c3d4e5f6a7b8c" not in lines[-1] and lines[-1] and len(lines) < 20:
            lines.append(example.stdout.readline())
    finally:
        example.send_signal(signal.SIGINT)
        try:
            _, err = example.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            example.kill()
            _, err = example.communicate()
    assert lines[-1] == (
        "VOUCHERS.IMPORT aa_0a1b2c3d4e5f6a7b8c DONE: 2 failed (Duplicate resource key)\n"
    ), err
    assert "ModuleNotFoundError" not in err
    assert err.startswith("connected to redis://default:***@127.0.0.1:")


def test_tail_refused_shows_a_bad_signature_with_its_detail(served: LocalServe) -> None:
    sent = run(
        "send", "--sample", "VOUCHERS.IMPORT", "--secret", "an-old-secret", cwd=served.folder
    )
    assert sent.returncode == 1 and sent.stdout.startswith("401 ")
    body = b'{"id": "aa_x", "type": "VOUCHERS.IMPORT", "status": "DONE", "token": "b0dy"}'
    answer = httpx.post(
        f"{served.base_url}/webhooks/voucherify",
        content=body,
        headers={
            "content-type": "application/json",
            "x-voucherify-signature": "ab" * 32,
            "x-api-token": "hunter2",
        },
    )
    assert answer.status_code == 401
    deadline = time.monotonic() + 10  # refusals reach Redis every 2 s
    while True:
        shown = run("tail", "--refused", "--json", cwd=served.folder)
        assert shown.returncode == 0, shown.stderr
        refused = [json.loads(line) for line in shown.stdout.splitlines()]
        if len(refused) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    first, second = refused[-2:]
    for refusal in (first, second):
        assert refusal["status"] == "401" and refusal["reason"] == "invalid_signature"
        assert refusal["detail"] == "signature does not match the body for any configured secret"
        assert refusal["peer"] == "127.0.0.1"
        assert refusal["path"] == "/webhooks/voucherify"
    assert "x-api-token" in second["headers"].split(",")
    assert "x-voucherify-signature" in second["headers"].split(",")
    table = run("tail", "--refused", cwd=served.folder, env=clean_env(COLUMNS="200"))
    assert "invalid_signature" in table.stdout
    assert "signature does not match the body for any configured secret" in table.stdout
    for secret in (
        "hunter2",
        "ab" * 32,
        "b0dy",
    ):  # never a header's value, the body or the signature
        assert secret not in shown.stdout + table.stdout
