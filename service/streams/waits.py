"""What a batch waits for after its scripts, on its own connection: ``Wait``.

The group commit (``group_commit.py``) sends a lane's ``Wait`` after each batch
and checks its replies; ``durability.py`` decides which one a lane needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FanoutError
from .wire import pack


class NotConfirmed(FanoutError, TimeoutError):
    """WAITAOF or WAIT returned before enough copies confirmed the batch."""


@dataclass(frozen=True, slots=True)
class Wait:
    """What is sent after a batch on its connection, and what its replies must confirm:
    ``WAITAOF 1 0`` (the primary's append-only file) when ``local``, then ``WAIT N`` when
    ``replicas``.

    Not ``WAITAOF 1 N``: that counts replicas that fsynced their own append-only
    file, so it never confirms a replica with AOF off and waits up to a second for
    one at ``appendfsync everysec`` (measured, Valkey 9: 0.95-1.0 s a batch, 1.56 s
    = the whole timeout with AOF off; ``WAITAOF 1 0`` + ``WAIT 1`` 1-10 ms). A
    failover promotes what the replica holds in memory, which ``WAIT`` confirms.
    """

    local: bool
    replicas: int
    timeout_ms: int
    command: bytes = b""
    #: Replies the command gets: one per WAITAOF / WAIT sent.
    replies: int = 0

    @classmethod
    def of(cls, local: bool, replicas: int, timeout_ms: int) -> Wait:
        command = pack(("WAITAOF", 1, 0, timeout_ms)) if local else b""
        if replicas:
            command += pack(("WAIT", replicas, timeout_ms))
        return cls(local, replicas, timeout_ms, command, int(local) + (replicas > 0))

    def __str__(self) -> str:
        parts = (["WAITAOF 1 0"] if self.local else []) + (
            [f"WAIT {self.replicas}"] if self.replicas else []
        )
        return " + ".join(parts)

    def check(self, replies: list[Any], refused: Callable[[Exception], bool] | None) -> None:
        """``NotConfirmed`` unless ``replies`` confirm every copy asked for. An error
        reply is raised, unless ``refused`` takes it (True: go on without that copy)."""
        local, replicas = False, 0
        for reply in replies:
            if isinstance(reply, Exception):
                if refused is None or not refused(reply):
                    raise reply
                local = True  # accepted without the disk from now on (durability auto)
            elif isinstance(reply, list):
                local = int(reply[0]) >= 1
            else:
                replicas = int(reply)
        if local < self.local or replicas < self.replicas:
            raise NotConfirmed(
                f"{self}: the primary's file {'confirmed' if local else 'NOT confirmed'}, "
                f"{replicas} of {self.replicas} replica(s) in time"
            )
