"""Unique, correctly signed bodies, one per line: the mixed load of the benchmarks.

Each line is ``<signature>\\t<compact JSON body>``; wrk's Lua script and the paced
sender (``bench.paced``) read them. ``bodies`` are async actions of all 22 types;
``mixed`` interleaves them with webhook envelopes, two actions to one envelope,
the envelopes cycling over the 72 event types around the vendor's example data
(``domain.webhook_samples``), each with its own event id, so every line is a new
delivery.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

from service.domain import actions, samples, webhook_samples
from service.http import signature

SECRET = b"bench-secret"
#: One body in this many of the mixed load is a webhook envelope.
ENVELOPE_EVERY = 3


def bodies(count: int, seed: int = 7) -> list[bytes]:
    """``count`` distinct async action bodies, cycling over the types, mostly completions."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        type_ = actions.TYPES[n % len(actions.TYPES)]
        status = rng.choices(["DONE", "FAILED", "IN_PROGRESS"], weights=[80, 15, 5])[0]
        action = samples.sample(type_, status=status, id_=f"aa_bench{n:012d}")
        out.append(msgspec.json.encode(action))
    return out


def envelopes(count: int) -> list[bytes]:
    """``count`` distinct webhook envelopes, cycling over the 72 event types."""
    types = webhook_samples.TYPES
    return [
        msgspec.json.encode(
            webhook_samples.envelope(
                types[n % len(types)],
                sendout_id=f"whs_bench{n:012d}",
                event_id=f"evt_bench{n:012d}",
                group_id=f"v-bench{n:012d}",
            )
        )
        for n in range(count)
    ]


def mixed(count: int) -> list[bytes]:
    """``count`` bodies: two async actions, then one webhook envelope, and so on."""
    envelope_count = count // ENVELOPE_EVERY
    actions_, envelopes_ = iter(bodies(count - envelope_count)), iter(envelopes(envelope_count))
    return [
        next(envelopes_) if n % ENVELOPE_EVERY == ENVELOPE_EVERY - 1 else next(actions_)
        for n in range(envelope_count * ENVELOPE_EVERY)
    ] + list(actions_)


def write(path: Path, count: int, *, kind: str = "actions") -> Path:
    """Write ``count`` signed lines of ``kind`` (``mixed`` or ``actions``) to ``path``."""
    made = mixed(count) if kind == "mixed" else bodies(count)
    with path.open("wb") as handle:
        for body in made:
            handle.write(signature.sign(body, SECRET).encode() + b"\t" + body + b"\n")
    return path


def read(path: Path) -> list[tuple[bytes, bytes]]:
    """The ``(signature, body)`` pairs of a file ``write`` made."""
    with path.open("rb") as handle:
        return [tuple(line.rstrip(b"\n").split(b"\t", 1)) for line in handle]  # type: ignore[misc]
