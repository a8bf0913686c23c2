"""What Sentinel says, parsed: its events and its ``SENTINEL MASTER`` answer (``follow.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Address = tuple[str, int]


def to_address(host: bytes | str, port: bytes | str | int) -> Address:
    return (host.decode() if isinstance(host, bytes) else str(host)), int(port)


def parse_event(channel: str, data: str) -> tuple[str, Address | None, Address | None]:
    """``(name, the master it is about, the new address it names)`` of one Sentinel event.

    ``master <name> <ip> <port>`` or ``slave <ip>:<port> <ip> <port> @ <name> <mip> <mport>``;
    ``+switch-master`` is ``<name> <oldip> <oldport> <newip> <newport>``. The name is ""
    for a message of another shape."""
    words = data.split()
    if channel == "+switch-master" and len(words) == 5:
        return words[0], to_address(words[1], words[2]), to_address(words[3], words[4])
    if len(words) >= 4 and words[0] == "master":
        return words[1], to_address(words[2], words[3]), None
    if len(words) >= 8 and words[4] == "@":
        named = to_address(words[2], words[3])
        return words[5], to_address(words[6], words[7]), named
    return "", None, None


@dataclass(frozen=True, slots=True)
class SentinelMaster:
    """What ``SENTINEL MASTER`` says: flags, the address it watches (the old one during a
    failover), configuration epoch, failover-timeout (seconds)."""

    flags: frozenset[str] = frozenset()
    address: Address | None = None
    epoch: int = -1
    failover_timeout: float | None = None


def master_state(reply: Any) -> SentinelMaster:
    if isinstance(reply, dict):
        fields = {text(k): v for k, v in reply.items()}
    elif isinstance(reply, list):
        fields = {text(k): v for k, v in zip(reply[::2], reply[1::2], strict=False)}
    else:
        return SentinelMaster()
    flags = fields.get("flags", "")
    if isinstance(flags, (list, tuple, set)):
        names = frozenset(text(flag) for flag in flags)
    else:
        names = frozenset(text(flags).split(","))
    try:
        epoch = int(fields.get("config-epoch", -1))
    except ValueError:
        epoch = -1
    try:
        failover_timeout: float | None = int(fields["failover-timeout"]) / 1000
    except (KeyError, ValueError):
        failover_timeout = None
    try:
        address: Address | None = to_address(fields["ip"], fields["port"])
    except (KeyError, ValueError):
        address = None
    return SentinelMaster(names, address, epoch, failover_timeout)


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, tuple):
        return f"{value[0]}:{value[1]}"
    return str(value)
