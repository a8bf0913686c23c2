"""Replicas per primary, as the background INFO sampler last saw them, and how many a 2xx
waits for.

With ``FANOUT_DURABILITY=auto`` on a deployment that has replicas, a 2xx waits for
every replica its primary has online (``WAITAOF 1 N`` or ``WAIT N``), at least one.
Waiting for fewer than all is not enough with two replicas: a write one replica
confirmed can be lost when Sentinel promotes the other (it picks by the offsets of
its last INFO, up to a second old) and the confirming one resyncs from the new
primary.

A replica that leaves makes N fall, and the moment one leaves is exactly the
moment a failover promotes it: for ``HOLD`` seconds after the count falls the
primary keeps needing the former N, so its deliveries get 503 at once (no wait
sent, no write made), and only then does N follow the count down. A primary
with no replica online at all gets 503 until one attaches: the old primary of a
planned failover is that case. A replica that attaches counts at once.

The hot path reads a dict; INFO runs in the memory sampler (``memory.py``), once a
second, never per delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: Seconds a primary whose online replicas fell keeps needing the former count.
#: Longer than Sentinel takes to name a promoted replica (its INFO period during a
#: failover is 1 s) and to point the other replicas at it.
HOLD = 5.0


def online_replicas(info: dict[str, Any]) -> int:
    """Replicas INFO replication lists in state ``online`` (a replica still in its first
    sync is listed, but it cannot confirm a write yet)."""
    count = 0
    for key, value in info.items():
        if key.startswith("slave") and key[5:].isdigit():
            state = value.get("state") if isinstance(value, dict) else _state(str(value))
            count += state == "online"
    return count


def _state(text: str) -> str | None:
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name == "state":
            return value
    return None


@dataclass(slots=True)
class _Primary:
    online: int
    required: int
    #: monotonic time the online count fell below ``required``, or None.
    fell: float | None = None


@dataclass(slots=True)
class Replication:
    """What each primary's 2xx waits for. Keys are the lane names: ``""`` for the one
    server (or Sentinel's master), ``host:port`` per cluster primary.

    ``expected`` turns on when any primary was seen with a replica (at start-up or
    since): from then on a primary without one is a 503, never a weaker 2xx.
    """

    expected: bool = False
    hold: float = HOLD
    _primaries: dict[str, _Primary] = field(default_factory=dict)

    def observe(self, name: str, info: dict[str, Any], now: float | None = None) -> None:
        """One sample of ``INFO replication`` of the primary ``name``."""
        if str(info.get("role", "master")) != "master":
            return  # a replica answers writes with READONLY; nothing to count
        self.update(name, online_replicas(info), now)

    def update(self, name: str, online: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if online:
            self.expected = True
        primary = self._primaries.get(name)
        if primary is None:
            self._primaries[name] = _Primary(online, max(1, online))
            return
        primary.online = online
        if online >= primary.required:
            primary.required, primary.fell = max(1, online), None
        elif primary.fell is None:
            primary.fell = now
        elif now - primary.fell >= self.hold:
            primary.required, primary.fell = max(1, online), None

    def forget(self, name: str) -> None:
        """A primary that left the topology (a cluster node demoted or gone)."""
        self._primaries.pop(name, None)

    def online(self, name: str) -> int | None:
        """Replicas of ``name`` online at the last sample; None before one."""
        primary = self._primaries.get(name)
        return None if primary is None else primary.online

    def required(self, name: str) -> int:
        """Replicas a 2xx from ``name`` waits for now (at least 1)."""
        primary = self._primaries.get(name)
        return 1 if primary is None else primary.required

    def missing(self, name: str) -> str | None:
        """Why ``name`` cannot confirm a write now (its deliveries get 503), or None."""
        primary = self._primaries.get(name)
        if not self.expected or primary is None or primary.online >= primary.required:
            return None
        where = f"the Redis primary {name}" if name else "the Redis primary"
        if primary.online == 0:
            return (
                f"{where} has no replica online, so a 2xx could not survive its loss; "
                "retry later (a replica attaching, or the failover naming a new primary, "
                "ends this; FANOUT_DURABILITY=aof answers without replicas)"
            )
        return (
            f"{where} has {primary.online} of its {primary.required} replicas online "
            "(one left: a failover may be promoting it); retry later"
        )

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """``{primary: (online, waited for)}``, for the gauges."""
        return {name: (p.online, p.required) for name, p in self._primaries.items()}
