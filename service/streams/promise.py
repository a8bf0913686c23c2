"""What a 2xx survives, in one statement: the start-up line, the log line, the gauges and
``/readyz`` are all made from one ``Survival``, so they cannot disagree.

The faults named are the ones measured (RELIABILITY.md, docs/contract.md):
- a failover to a replica: the 2xx waited for every replica online (``WAIT`` or
  ``WAITAOF 1 N``); a crash of the primary's host, failed over, is this case too;
- a kill -9 of Redis, restarted on its own files: the 2xx waited for the primary's
  append-only file (``WAITAOF 1 …``), or the server fsyncs before every reply
  (``appendonly yes`` with ``appendfsync always``);
- a crash of its host, restarted on its own files: ``appendfsync always`` (under
  ``everysec`` WAITAOF confirms before the fsync: 335 of 5,688 lost, LazyFS).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Durability
from .replication import HOLD

#: The faults a 2xx may survive, as the gauge labels them.
FAULTS = ("failover", "redis_kill", "host_crash")

_FIX = "(or set FANOUT_DURABILITY=none to accept this)"
_ALWAYS = "appendonly yes and appendfsync always"
AT_RISK = {
    "no_waitaof": "this Redis has no WAITAOF (Redis < 7.2), so a 2xx is sent before the "
    "delivery is on disk and a kill -9 of Redis can lose acknowledged deliveries; use "
    f"Redis >= 7.2 or Valkey with {_ALWAYS} {_FIX}",
    "aof_off": "Redis runs with appendonly no, so a restart of Redis loses what it holds, "
    "acknowledged deliveries included; set appendonly yes and appendfsync always on the "
    f"server {_FIX}",
    "no_fsync": "Redis runs with appendfsync no, so it never confirms that a delivery is "
    "on disk (a 2xx waiting for it would wait out every request) and a crash of its host "
    f"can lose acknowledged deliveries; set appendfsync always on the server {_FIX}",
    "noperm": "the Redis user may not run WAITAOF, so a 2xx cannot wait for the disk and a "
    f"kill -9 of Redis can lose acknowledged deliveries; grant it +waitaof {_FIX}",
}
#: Why the primary's own disk is not waited for, said inside a longer line.
_NO_LOCAL = {
    "no_waitaof": "this Redis has no WAITAOF (Redis < 7.2)",
    "aof_off": "Redis runs with appendonly no",
    "no_fsync": "Redis runs with appendfsync no",
    "noperm": "the Redis user may not run WAITAOF",
}


@dataclass(frozen=True, slots=True)
class Promise:
    """What a 2xx means from now on, as one start-up line."""

    #: In force: ``none``, ``aof`` or ``replicas:N`` (N: replicas waited for at start-up);
    #: ``auto`` while Redis has not answered.
    durability: Durability
    line: str
    #: A 2xx can be lost where a better configured server would keep it.
    at_risk: bool


@dataclass(frozen=True, slots=True)
class Survival:
    """What the server and the mode make of a 2xx."""

    #: The 2xx waits for every replica online (auto) or N of them (replicas:N).
    replicas: bool
    #: The 2xx waits for the primary's append-only file (WAITAOF 1 …).
    local: bool
    #: ``appendfsync`` of the server, None where CONFIG GET is not allowed.
    appendfsync: str | None
    #: ``appendonly yes`` (INFO persistence), None when not known.
    aof_enabled: bool | None

    @property
    def fsyncs_first(self) -> bool:
        """The server writes and fsyncs before every reply."""
        return self.appendfsync == "always" and self.aof_enabled is not False

    def faults(self) -> dict[str, bool]:
        """``FAULTS`` each with whether a 2xx survives it now (unknown counts as no)."""
        return {
            "failover": self.replicas,
            "redis_kill": self.local or self.fsyncs_first,
            "host_crash": self.fsyncs_first or self.replicas,
        }

    def names(self) -> list[str]:
        return [fault for fault, kept in self.faults().items() if kept]


def unconfirmed(appendfsync: str | None) -> str:
    """What a 2xx of ``FANOUT_DURABILITY=none`` survives, by the server's appendfsync."""
    sent = "a 2xx is sent once Redis applied the write"
    if appendfsync == "always":
        return (
            f"{sent}, and the server fsyncs before it replies (appendfsync always): it survives "
            "a kill -9 of Redis and a crash of its host"
        )
    return (
        f"{sent}: a kill -9 of Redis (while its disk is slow) or a crash of its host can lose "
        "acknowledged deliveries (measured under appendfsync everysec: 1,427 of 29,560 lost to "
        "host crashes); FANOUT_DURABILITY=auto waits for the disk where the server can"
    )


def without_wait(why: str, survival: Survival) -> tuple[str, bool]:
    """``auto`` on a server that cannot confirm its disk and has no replica: the line, and
    whether it warns. With appendonly yes and appendfsync always the server fsyncs
    before every reply, so there is nothing to warn of (Redis 7.0 so configured)."""
    if why in ("no_waitaof", "noperm") and survival.fsyncs_first and survival.aof_enabled:
        return (
            f"{_NO_LOCAL[why]}, but the server runs {_ALWAYS}, which writes and fsyncs "
            "before every reply: a 2xx, sent once Redis applied the write, survives a kill -9 "
            "of Redis and a crash of its host",
            False,
        )
    return AT_RISK[why], True


def aof_kept(appendfsync: str | None) -> str:
    """``WAITAOF 1 0``: what it is worth by the server's appendfsync."""
    waits = "a 2xx waits until Redis has the delivery in its append-only file (WAITAOF 1 0)"
    if appendfsync == "always":
        return (
            f"{waits} and the server fsyncs before it replies (appendfsync always): it "
            "survives a kill -9 of Redis and a crash of its host"
        )
    if appendfsync == "everysec":
        return (
            f"{waits}: it survives a kill -9 of Redis, NOT a crash of its host: under "
            "appendfsync everysec the server confirms before its fsync (measured: 335 of "
            "5,688 acknowledged lost to host crashes); set appendfsync always for both, "
            "and about 10x the speed (each 2xx now waits for the next fsync)"
        )
    return (
        f"{waits}: it survives a kill -9 of Redis; a crash of its host only if the server "
        "runs appendfsync always, which this Redis user may not read (CONFIG GET)"
    )


def every_replica(survival: Survival, waits: str, now: int, why_not_local: str | None) -> str:
    """``auto`` with replicas: a 2xx waits for every replica online (``waits``, ``now`` of
    them at start-up) and, where the server confirms it, the primary's own file."""
    disk = " and the primary's append-only file" if survival.local else ""
    text = (
        f"a 2xx waits until every replica online ({now} now, at least one){disk} has the "
        f"delivery ({waits}): it survives a failover to any replica (a crash of the "
        "primary's host included)"
    )
    if survival.local or survival.fsyncs_first:
        text += " and a kill -9 of Redis"
    else:
        reason = why_not_local or "the server's appendfsync is not always"
        text += (
            f"; NOT a kill -9 of a primary restarted without a failover ({reason}: its own "
            f"disk is not waited for; {_ALWAYS} closes that)"
        )
    return (
        f"{text}. A primary with no replica online answers 503 with Retry-After until one "
        f"attaches (the old primary of a failover is that case), and for {HOLD:g} s after one "
        "leaves; "
        "FANOUT_DURABILITY=aof answers without replicas"
    )


def replicas_kept(count: int) -> str:
    return (
        f"a 2xx waits until {count} replica(s) have the delivery (WAIT {count}), so it survives "
        "the loss of the primary (a failover to a replica that has it); a primary with fewer "
        "replicas online answers 503"
    )
