"""Run a handler on events in process, as ``Consumer.run`` would, without Redis.

Each event becomes the entry fields the publisher writes (``samples.entry_fields``)
and goes through the consumer's own handling (``consumer.handling.attempt``:
decode the ``event`` field, run the handler within ``handler_timeout``, decide
ack, retry or poison). So the handler sees what it will see in production, and
an entry is acknowledged, left pending or dead-lettered by the same rules.

What differs from a running consumer, on purpose: one handler at a time, in the
order given, and no wait for ``min_idle`` before a retry. A retry comes in
rounds, as claims do: every event is delivered once, then each entry left
pending is delivered again, in order, until it is acknowledged or poisoned.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..consumer.handling import ConsumerStats, Handler, attempt
from ..consumer.poison import Poison
from ..domain import actions
from ..domain.entries import StreamEvent
from ..streams.keys import Keys
from .samples import fields_of, publication

#: A stream entry's fields given as they are (str or bytes): to try an entry no event
#: makes, one whose ``event`` does not decode, say.
RawEntry = Mapping[str, str | bytes] | Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Failure:
    """One delivery whose handler raised or timed out: the entry stayed pending."""

    event: StreamEvent
    entry_id: str
    delivery: int
    error: str


@dataclass(frozen=True, slots=True)
class Poisoned:
    """An entry given up on: dead-lettered with reason ``poison``, then acknowledged.

    ``event`` is None when the entry's ``event`` field did not decode. ``letter``
    holds the dead letter's fields as ``<prefix>:{dead}:letters`` would (``reason``,
    ``detail``, ``group``, ``consumer``, ``stream``, ``entry_id``, ``deliveries``,
    ``error``, the event JSON as ``body``, ...), as text.
    """

    event: StreamEvent | None
    entry_id: str
    deliveries: int
    error: str
    letter: dict[str, str]


@dataclass(slots=True)
class Delivered:
    """What ``deliver`` did: what was acknowledged, retried and poisoned.

    ``acked`` are the events as the handler received them, in the order their
    handlers returned. ``retried`` has one ``Failure`` per delivery that left an
    entry pending (to be delivered again). ``stats`` counts as
    ``Consumer.stats`` does.
    """

    acked: list[StreamEvent] = field(default_factory=list)
    retried: list[Failure] = field(default_factory=list)
    poisoned: list[Poisoned] = field(default_factory=list)
    stats: ConsumerStats = field(default_factory=ConsumerStats)


@dataclass(slots=True)
class _Pending:
    stream: str
    entry_id: str
    fields: dict[bytes, bytes]


async def deliver(
    handler: Handler,
    *events: StreamEvent | RawEntry,
    max_deliveries: int = 5,
    handler_timeout: float = 30.0,
    group: str = "tests",
    consumer: str = "deliver",
    prefix: str = "voucherify",
) -> Delivered:
    """Deliver ``events`` to ``handler`` as a consumer of ``group`` would, without Redis.

    A handler that returns acknowledges its entry. One that raises, or runs past
    ``handler_timeout``, leaves it pending: it is delivered again, and on its
    ``max_deliveries``-th failure (5, the ``Consumer`` default) it is poisoned.
    An entry whose ``event`` does not decode is poisoned without a run. Nothing
    the handler raises escapes: read the answer (``Delivered``).
    """
    if max_deliveries < 1:
        raise ValueError("max_deliveries must be at least 1")
    keys = Keys(prefix)
    base = int(time.time() * 1000)
    pending = [_entry(keys, item, f"{base}-{n}") for n, item in enumerate(events)]
    done = Delivered()
    delivery = 1
    while pending:
        still: list[_Pending] = []
        for entry in pending:
            outcome = await attempt(
                entry.fields,
                delivery,
                handler,
                handler_timeout=handler_timeout,
                max_deliveries=max_deliveries,
            )
            if outcome.handler_failed:
                done.stats.failed += 1
            match outcome.verdict:
                case "ack":
                    assert outcome.event is not None
                    done.stats.handled += 1
                    done.acked.append(outcome.event)
                case "retry":
                    assert outcome.event is not None
                    done.retried.append(
                        Failure(outcome.event, entry.entry_id, delivery, outcome.error)
                    )
                    still.append(entry)
                case "poison":
                    poison = Poison(
                        group=group,
                        consumer=consumer,
                        stream=entry.stream,
                        entry_id=entry.entry_id,
                        deliveries=delivery,
                        max_deliveries=max_deliveries,
                        body=outcome.body,
                        error=outcome.error,
                    )
                    done.stats.poisoned += 1
                    done.poisoned.append(
                        Poisoned(
                            outcome.event, entry.entry_id, delivery, outcome.error, _letter(poison)
                        )
                    )
        pending = still
        delivery += 1
    return done


def _entry(keys: Keys, item: StreamEvent | RawEntry, entry_id: str) -> _Pending:
    if isinstance(item, Mapping):
        fields = {_bytes(k): _bytes(v) for k, v in item.items()}
        type_ = fields.get(b"type", b"").decode(errors="replace") or "unknown"
        stream = keys.completed(type_) if type_ in actions.BY_TYPE else keys.events(type_)
        return _Pending(stream, entry_id, fields)
    published = publication(item)
    match published.kind:
        case "completed":
            stream = keys.completed(published.type)
        case "progress":
            stream = keys.progress(published.type)
        case "events":
            stream = keys.events(published.type)
        case "custom":
            stream = keys.custom()
    return _Pending(stream, entry_id, fields_of(published))


def _letter(poison: Poison) -> dict[str, str]:
    """The fields of the letter ``PoisonLetters`` files for ``poison``, as text."""
    fields = poison.letter(datetime.now(UTC)).fields().items()
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in fields}


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
