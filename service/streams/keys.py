"""Every Redis key the service uses is built here and nowhere else.

``{...}`` is a Redis Cluster hash tag: all keys of one async action type (or
of one webhook event type) share one slot, so one script can check the dedup
key and append to the stream atomically. Dead letters and their dedup keys
share the ``{dead}`` slot.

The values a sender chooses (ids, request ids, statuses, progress steps) go
into a key through ``part()`` only: each is written with its length in front
(``<bytes>.<value>``), so the parts of a key can be read back one way only and
two different tuples can never make the same key (``aa:v-2`` + ``x`` and ``aa``
+ ``v-2:x`` used to). Types are not encoded: async action types come from a
fixed set, webhook event types are held to ``[A-Za-z0-9._-]``, so neither can
hold the ``}`` that ends the hash tag.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..domain.custom import CUSTOM_TYPE

# Completions and progress of async actions; events of webhook event types.
STREAM_KINDS = ("completed", "progress", "events")
#: The kinds of the dedup keys an older version kept, one per record, with a TTL
#: (``seen``, ``done``, ``pseen``, ``eseen``, ``cseen``): read while any is left.
LEGACY_KINDS = frozenset(("seen", "done", "pseen", "eseen", "cseen"))


def part(value: str) -> str:
    """One sender-chosen component of a key, length-prefixed: ``6.aa_col``, ``0.`` for ""."""
    return f"{len(value.encode())}.{value}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "voucherify"

    def completed(self, type_: str) -> str:
        return f"{self.prefix}:{{{type_}}}:completed"

    def progress(self, type_: str) -> str:
        return f"{self.prefix}:{{{type_}}}:progress"

    def seen(self, type_: str, id_: str, request_id: str) -> str:
        """Completion of one (id, request_id): holds the entry id and a content digest."""
        return f"{self.prefix}:{{{type_}}}:seen:{part(id_)}:{part(request_id)}"

    def done(self, type_: str, id_: str) -> str:
        """Set once any completion of the action is published; later progress is stale."""
        return f"{self.prefix}:{{{type_}}}:done:{part(id_)}"

    def progress_seen(
        self, type_: str, id_: str, request_id: str, status: str, progress: int | None
    ) -> str:
        step = "" if progress is None else str(progress)  # an integer is never ""
        parts = ":".join(part(value) for value in (id_, request_id, status, step))
        return f"{self.prefix}:{{{type_}}}:pseen:{parts}"

    def events(self, type_: str) -> str:
        """The stream of one webhook event type (canonical spelling)."""
        return f"{self.prefix}:{{{type_}}}:events"

    def event_seen(self, type_: str, id_: str, request_id: str) -> str:
        """One webhook event (event id, request id): holds the entry id and a content digest."""
        return f"{self.prefix}:{{{type_}}}:eseen:{part(id_)}:{part(request_id)}"

    def custom(self) -> str:
        """The stream of custom bodies (``domain.custom``): ``events`` of the type ``custom``."""
        return self.events(CUSTOM_TYPE)

    def custom_seen(self, digest: str) -> str:
        """One custom body's content (its digest): holds the entry id and the digest."""
        return f"{self.prefix}:{{{CUSTOM_TYPE}}}:cseen:{digest}"

    def dedup(self, tag: str, bucket: int) -> str:
        """The dedup records of one hash tag (a type, or ``dead``) written in one time
        bucket: a hash with no key TTL (``records.py``)."""
        return f"{self.prefix}:{{{tag}}}:dedup:{bucket}"

    def dead_letters(self) -> str:
        return f"{self.prefix}:{{dead}}:letters"

    def dead_seen(self, sha256: str) -> str:
        return f"{self.prefix}:{{dead}}:seen:{sha256}"

    def poison_seen(self, group: str, stream: str, entry_id: str) -> str:
        """Set once a consumer group dead-lettered one entry of one stream as poison."""
        identity = ":".join(part(value) for value in (group, stream, entry_id))
        digest = hashlib.sha256(identity.encode()).hexdigest()
        return f"{self.prefix}:{{dead}}:poison:{digest}"

    def all_pattern(self) -> str:
        """Matches every key of this prefix (streams and dedup keys), for SCAN."""
        return f"{self.prefix}:*"

    def dead_pattern(self) -> str:
        """Matches the dedup keys of dead letters (body digests and poison markers), for SCAN."""
        return f"{self.prefix}:{{dead}}:*"

    def parse_stream(self, key: str) -> tuple[str, str] | None:
        """``(type, "completed" | "progress" | "events")`` of a stream key of this prefix."""
        head = f"{self.prefix}:{{"
        if not key.startswith(head) or "}:" not in key:
            return None
        type_, _, kind = key[len(head) :].partition("}:")
        return (type_, kind) if kind in STREAM_KINDS and type_ != "dead" else None

    def is_legacy(self, key: str) -> bool:
        """Whether ``key`` is a dedup key of an older version (``LEGACY_KINDS``)."""
        head = f"{self.prefix}:{{"
        if not key.startswith(head) or "}:" not in key:
            return False
        kind = key[len(head) :].partition("}:")[2].partition(":")[0]
        return kind in LEGACY_KINDS

    def stream_pattern(self) -> str:
        """Matches every stream of this prefix, for SCAN."""
        return f"{self.prefix}:{{*}}:*"

    def other_types(self) -> str:
        """Event types outside ``domain.event_types.KNOWN`` that have a stream: a set, so the
        gauges find those streams without a SCAN (and count them in one bucket)."""
        return f"{self.prefix}:{{types}}:other"

    def refusals(self, minute: int) -> str:
        """Refused deliveries of one minute (since the epoch), by reason: a hash."""
        return f"{self.prefix}:{{refusals}}:{minute}"

    def refusals_latest(self) -> str:
        """The latest refused deliveries, one entry each: a stream capped by MAXLEN."""
        return f"{self.prefix}:{{refusals}}:latest"

    # The reconciler's keys share the ``{poll}`` slot, so the mark is written
    # only by the lease holder, in one script.

    def poll_lease(self) -> str:
        """Token of the one poller allowed to call the Voucherify API."""
        return f"{self.prefix}:{{poll}}:lease"

    def poll_mark(self) -> str:
        """High-water mark: actions created before it need no more polling."""
        return f"{self.prefix}:{{poll}}:mark"
