"""The servers ``bench.run`` measures, started as users start them, each on its own port,
and what every answer of theirs must be (a 2xx: ``check_statuses``, for ``bench.paced`` too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tests.support.servers import free_port

HERE = Path(__file__).parent
UVICORN = [
    sys.executable,
    "-m",
    "uvicorn",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--workers",
    "1",
    "--no-access-log",
    "--log-level",
    "warning",
    "--host",
    "127.0.0.1",
]


def _drain(stream: IO[bytes], tail: bytearray) -> None:
    """Read a server's log output as a collector would, keeping only its last 4 KiB."""
    while chunk := stream.read(1 << 16):
        tail += chunk
        del tail[: -(1 << 12)]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def commands(service_log_level: str | None, bases: dict[str, Path]) -> dict[str, list[str]]:
    fanout = [sys.executable, "-m", "service.cli", "serve"]
    if service_log_level:
        fanout += ["--log-level", service_log_level]
    node = shutil.which("node") or "node"
    return {
        "ceiling": [*UVICORN, "bench.ceiling:app"],
        "node": [node, str(HERE / "node" / "server.mjs")],
        "alternative": [*UVICORN, "bench.alternative:app"],
        "service": fanout,
        "service-w2": [*fanout, "--workers", "2"],
        "replicated": fanout,
    } | dict.fromkeys(bases, fanout)


def start_targets(
    redis_url: str,
    secret: str,
    names: list[str],
    service_log_level: str | None = None,
    bases: dict[str, Path] | None = None,
    env_extra: dict[str, str] | None = None,
    urls: dict[str, str] | None = None,
) -> dict[str, tuple[str, subprocess.Popen[bytes]]]:
    # The service's own defaults: only where Redis is and the secret are given.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "PROMETHEUS_"))} | {
        "FANOUT_REDIS_URL": redis_url,
        "FANOUT_SECRETS": secret,
        **(env_extra or {}),
    }
    bases = bases or {}
    commands_ = commands(service_log_level, bases)
    targets: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    for name in names:
        port = free_port()
        where = bases.get(name, HERE.parent)
        process = subprocess.Popen(
            [*commands_[name], "--port", str(port)],
            env=env
            | {"FANOUT_PORT": str(port), "FANOUT_DATA_DIR": tempfile.mkdtemp()}
            | ({"FANOUT_REDIS_URL": urls[name]} if urls and name in urls else {})
            | ({"PYTHONPATH": str(where)} if name in bases else {}),
            cwd=where,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        tail = bytearray()
        drain = threading.Thread(target=_drain, args=(process.stderr, tail), daemon=True)
        drain.start()
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/webhooks/voucherify", process)
        except (RuntimeError, TimeoutError) as exc:
            drain.join(1)
            output = tail.decode(errors="replace")
            raise RuntimeError(f"{name}: {exc}; its last output:\n{output}") from None
        targets[name] = (url, process)
    return targets


class BadAnswers(RuntimeError):
    """A target answered something other than 2xx."""


def check_statuses(url: str, statuses: Mapping[int, int], socket_errors: int = 0) -> None:
    bad = {status: n for status, n in statuses.items() if not 200 <= status < 300}
    if bad or socket_errors:
        raise BadAnswers(
            f"{url}: non-2xx answers {bad or 'none'}, socket errors {socket_errors}"
            f" (all answers: {dict(statuses)})"
        )
