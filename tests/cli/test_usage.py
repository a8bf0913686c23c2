"""What a newcomer meets first: help, version, one-line errors, tables that fit, follow."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service import cli
from service.domain import actions, webhook_samples
from tests.support.cli import FANOUT, LocalServe, clean_env, run

pytestmark = pytest.mark.spawns

COMMANDS = (
    ["serve"],
    ["send"],
    ["tail"],
    ["stats"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "replay"],
    ["poll"],
)


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "fanout 0.1.0"


def help_page(*command: str) -> str:
    """``fanout <command> --help`` as printed, from the parser the console script builds
    for it (in this process: one process start per page cost 11 starts, most of this test)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.build_parser(command[0]).parse_args([*command, "--help"])
    assert exited.value.code == 0, command
    return out.getvalue()


def test_help_has_examples_and_exit_codes_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = run("--help", cwd=tmp_path, env=clean_env(COLUMNS="100"))
    assert top.returncode == 0
    assert "``" not in top.stdout, "no docstring markup"
    assert "exit status: 0 ok, 1 failure (one line on stderr), 2 usage" in top.stdout
    assert "fanout send --sample VOUCHERS.IMPORT" in top.stdout
    monkeypatch.setenv("COLUMNS", "100")  # argparse's width, as in the terminal above
    for command in COMMANDS:
        page = help_page(*command)
        assert "examples:\n  fanout " in page or "examples:\n  export " in page
        assert "exit status: 0 ok" in page, command
    tail = help_page("tail")
    assert "--status {ENQUEUED,IN_PROGRESS,DONE,FAILED}\n                        only async" in tail
    send = help_page("send")
    assert "--list-samples" in send and "status of the sample" in send


def test_the_command_list_reads_the_same_whichever_command_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The console script loads only the named command's module; the others are listed
    # from usage.COMMANDS. `fanout --help` must not depend on which one that was.
    monkeypatch.setenv("COLUMNS", "100")
    every = cli.build_parser().format_help()
    assert all(line in every for line in cli.COMMANDS.values())
    for name in ["", *cli.COMMANDS]:
        assert cli.build_parser(name).format_help() == every, name


def test_a_command_loads_no_other_commands_module(tmp_path: Path) -> None:
    # What makes `fanout url` start in half the CPU it took: serve's module (uvicorn, the
    # app), poll's (httpx, the reconciler) and the rest are not imported for it.
    code = (
        "import sys\n"
        "from service import cli\n"
        "cli.build_parser('url').parse_args(['url'])\n"
        "print(*sorted(m for m in sys.modules if m.startswith(('service.cli.', 'uvicorn'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "service.cli.url" in loaded
    others = {f"service.cli.{name}" for name in cli.COMMANDS} - {"service.cli.url"}
    assert not loaded & others, loaded & others
    assert "uvicorn" not in loaded


def test_list_samples(tmp_path: Path) -> None:
    result = run("send", "--list-samples", cwd=tmp_path)
    assert result.returncode == 0
    listed = result.stdout.split()
    # 22 async actions, 72 documented and 17 schema-less event types, 80 Workflows, custom
    assert len(listed) == len(set(listed)) == 22 + 72 + 17 + 80 + 1
    assert listed[:22] == list(actions.TYPES)
    assert listed[22:94] == list(webhook_samples.TYPES)
    assert {"voucher.published", "campaign.vouchers.added", "POINTS_EARNED", "custom"} <= set(
        listed
    )


def test_a_bad_flag_value_names_the_flag_and_a_bad_variable_the_variable(
    tmp_path: Path,
) -> None:
    by_flag = run("stats", "--redis-url", "http://foo", cwd=tmp_path)
    assert by_flag.returncode == 2
    assert by_flag.stderr.splitlines() == [
        "fanout: configuration error: --redis-url: expected a redis://, rediss://, unix:// "
        "or redis+sentinel:// URL, got 'http://foo'"
    ]
    by_env = run("stats", cwd=tmp_path, env=clean_env(FANOUT_REDIS_URL="http://foo"))
    assert by_env.returncode == 2
    assert by_env.stderr.startswith("fanout: configuration error: FANOUT_REDIS_URL: ")
    serve = run("serve", "--port", "70000", cwd=tmp_path)
    assert serve.returncode == 2
    assert serve.stderr.splitlines() == [
        "fanout: configuration error: --port: expected a port from 1 to 65535, got '70000'"
    ]


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"fanout: cannot listen on 127.0.0.1:{port}: Address already in use (another server "
        "uses it: stop that one, or choose a port with --port or FANOUT_PORT)"
    ]
    assert "webhook URL" not in result.stdout, "nothing claims to be up"
    assert not (tmp_path / ".fanout" / "redis-port").exists(), "no Valkey was started"
    assert not (tmp_path / ".fanout" / "server.json").exists()


@pytest.fixture
def busy_server(tmp_path: Path) -> LocalServe:
    server = LocalServe(tmp_path).start()
    for type_, status in (
        ("CAMPAIGN.VOUCHERS_IMPORT_CSV", "DONE"),
        ("ORDERS.IMPORT", "IN_PROGRESS"),
        ("VOUCHERS.IMPORT", "FAILED"),
    ):
        sent = run("send", "--sample", type_, "--status", status, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
    return server


def test_tables_fit_80_columns(busy_server: LocalServe) -> None:
    try:
        env = clean_env(COLUMNS="80")
        tail = run("tail", "--progress", cwd=busy_server.folder, env=env)
        stats = run("stats", cwd=busy_server.folder, env=env)
        dead = run("dlq", "list", cwd=busy_server.folder, env=env)
    finally:
        busy_server.stop()
    for result in (tail, stats, dead):
        assert result.returncode == 0, result.stderr
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    header, *rows = tail.stdout.splitlines()
    assert header.split()[:4] == ["time", "type", "status", "id"]
    assert [row.split()[3] for row in rows] == ["DONE", "IN_PROGRESS", "FAILED"]
    table = stats.stdout.splitlines()
    assert table[1].split() == ["group", "stream", "length", "pending", "lag"]
    row = next(line for line in table if "{ORDERS.IMPORT}:progress" in line)
    assert row.split()[-1] == "1"


def test_tail_follow_waits_out_a_server_restart(tmp_path: Path) -> None:
    server = LocalServe(tmp_path).start()
    follow = subprocess.Popen(
        [FANOUT, "tail", "--follow", "--json"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = run("send", "--sample", "SKUS.IMPORT_CSV", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert server.stop() == 0
        time.sleep(1.5)  # the follower notices and keeps trying
        server.start()
        second = run("send", "--sample", "SKUS.IMPORT_CSV", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        ids = [json.loads(answer.stdout.split(" ", 1)[1])["id"] for answer in (first, second)]
        deadline = time.monotonic() + 20
        lines: list[str] = []
        assert follow.stdout is not None
        while len(lines) < 2 and time.monotonic() < deadline:
            lines.append(follow.stdout.readline())
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=15)
    finally:
        if follow.poll() is None:
            follow.kill()
        server.stop()
    assert [json.loads(line)["id"] for line in lines] == ids
    assert follow.returncode == 0
    messages = err.splitlines()
    assert messages[0].startswith("fanout: connected to redis://default:***@127.0.0.1:")
    assert messages[1].startswith("fanout: lost Redis (")
    assert messages[2] == "fanout: reconnected"
