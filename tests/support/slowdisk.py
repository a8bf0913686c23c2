"""A slow disk for one process: strace delays each of its fsync and fdatasync calls.

Nothing else of the process is changed: writes land in the page cache as fast
as ever, only the calls that make them durable wait. Attaching follows every
thread (``-f``), so the background thread a Redis server fsyncs its AOF from
(``appendfsync everysec``) is slowed as well as the main thread (``always``).

    with SlowDisk(server.pid, delay=2.5) as disk:
        ...               # every fsync now takes 2.5 s more
    disk.delayed          # how many calls were delayed

Needs ``strace`` and the right to ptrace the process (root, or the same user
with ``kernel.yama.ptrace_scope`` 0). Tests marked ``requires_strace`` skip
without it, unless ``FANOUT_REQUIRE_STRACE=1`` (CI, which installs strace:
``.ci/run``), which makes a missing strace an error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

SYSCALLS = "fsync,fdatasync"
_CALL = re.compile(r"\b(?:fsync|fdatasync)\(")  # one per call entered, resumed or not


class SlowDisk:
    def __init__(self, pid: int, delay: float = 2.5, *, log: Path | None = None) -> None:
        self.pid = pid
        self.delay = delay
        self.log = log
        self._out: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._counted = 0

    @staticmethod
    def available() -> bool:
        if shutil.which("strace") is None:
            return False
        if os.geteuid() == 0:
            return True
        try:
            return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() == "0"
        except OSError:
            return True

    def start(self, timeout: float = 10.0) -> None:
        """Attach; returns once every thread of the process is traced."""
        if shutil.which("strace") is None:
            raise FileNotFoundError("strace is not installed (apt-get install strace)")
        micros = max(1, int(self.delay * 1_000_000))
        self._out = self.log or Path(f"/tmp/slowdisk-{self.pid}-{time.monotonic_ns()}.log")
        self.process = subprocess.Popen(
            [
                "strace",
                "-f",
                "-qq",
                "-p",
                str(self.pid),
                "-e",
                f"trace={SYSCALLS}",
                "-e",
                f"inject={SYSCALLS}:delay_enter={micros}",
                "-o",
                str(self._out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"strace exited: {error}")
            if self._all_traced():
                return
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"strace did not attach to every thread of {self.pid}")

    def _all_traced(self) -> bool:
        assert self.process is not None
        tracer = f"TracerPid:\t{self.process.pid}"
        try:
            tasks = list(Path(f"/proc/{self.pid}/task").iterdir())
            return bool(tasks) and all(tracer in (task / "status").read_text() for task in tasks)
        except OSError:  # a thread ended meanwhile
            return False

    def stop(self) -> None:
        """Detach (strace detaches on SIGTERM; a call being delayed finishes its delay)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(self.delay + 10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
            self._counted = self._count()

    @property
    def delayed(self) -> int:
        """fsync/fdatasync calls delayed so far (entered, not necessarily returned)."""
        return self._count() if self.process is not None else self._counted

    def _count(self) -> int:
        if self._out is None or not self._out.exists():
            return 0
        return len(_CALL.findall(self._out.read_text(errors="replace")))

    def __enter__(self) -> SlowDisk:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self.log is None and self._out is not None:
            self._out.unlink(missing_ok=True)


if not SlowDisk.available() and os.environ.get("FANOUT_REQUIRE_STRACE") == "1":
    raise RuntimeError("FANOUT_REQUIRE_STRACE=1 but strace is missing or cannot ptrace here")

#: Mark a test that needs a slow disk.
requires_strace = pytest.mark.skipif(
    not SlowDisk.available(), reason="needs strace and ptrace (apt-get install strace)"
)
