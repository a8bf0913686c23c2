"""Where the CPU went during a run: a process tree's CPU time, the machine's idle time,
the children's (wrk's), and Valkey's server time per script call."""

from __future__ import annotations

import collections
import os
import resource
from pathlib import Path

import redis


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's workers under ``--workers N``)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(_stat(int(entry.name))[1])].append(int(entry.name))
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _idle_seconds() -> float:
    """Idle and I/O-wait time of all the machine's cores so far (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def script_time(client: redis.Redis) -> tuple[int, int]:
    """Script calls and their server time (µs) since the last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        if name in stats:
            calls += int(stats[name]["calls"])
            usec += int(stats[name]["usec"])
    return calls, usec
