"""Unique, correctly signed async action bodies of all 22 types, one per line.

Each line is ``<signature>\\t<compact JSON body>``; wrk's Lua script reads them.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

from service.domain import actions, samples
from service.http import signature

SECRET = b"bench-secret"


def bodies(count: int, seed: int = 7) -> list[bytes]:
    """``count`` distinct bodies, cycling over the types, mostly completions."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        type_ = actions.TYPES[n % len(actions.TYPES)]
        status = rng.choices(["DONE", "FAILED", "IN_PROGRESS"], weights=[80, 15, 5])[0]
        action = samples.sample(type_, status=status, id_=f"aa_bench{n:012d}")
        out.append(msgspec.json.encode(action))
    return out


def write(path: Path, count: int) -> Path:
    with path.open("wb") as handle:
        for body in bodies(count):
            handle.write(signature.sign(body, SECRET).encode() + b"\t" + body + b"\n")
    return path
