"""The Redis ACL rules of the receiver's user, shared by the ACL tests."""

from __future__ import annotations


def service_acl(prefix: str, password: str, *, cluster: bool = False) -> list[str]:
    """ACL SETUSER arguments for the receiver's user (documented in RELIABILITY.md)."""
    rules = [
        "on",
        f">{password}",
        "resetkeys",
        f"~{prefix}:*",
        "resetchannels",
        "-@all",
        # the three scripts, and loading them again after a restart or SCRIPT FLUSH
        "+evalsha",
        "+script|load",
        # what the scripts call; the reads decide what the length cap may remove
        "+get",
        "+set",
        "+xadd",
        "+xlen",
        "+xrange",
        "+xinfo|groups",
        "+xpending",
        # dedup records: bucket hashes, and deleting the buckets that left the window
        "+hget",
        "+hmget",
        "+hset",
        "+hexists",
        "+exists",
        "+unlink",
        # the dashboard's refusal counters
        "+hincrby",
        # start-up and the memory sampler read the server (memory, persistence, ...)
        "+info",
        # looking for an older version's dedup keys, until none is left (streams/legacy.py)
        "+scan",
        # /readyz, the client's health check, and FANOUT_DURABILITY=aof|replicas:N
        "+ping",
        "+waitaof",
        "+wait",
        # redis-py names itself on connect (it ignores a refusal, but stay quiet)
        "+client|setinfo",
    ]
    if cluster:
        # the cluster client learns the slot map and how to find keys in a command
        rules += ["+cluster|slots", "+command"]
    return rules
