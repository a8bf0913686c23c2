"""Fuzzing over HTTP: valid async actions and webhook events of every type, mutated, posted.

Whatever arrives, the answer is a 2xx or a 4xx, the process stays up, and every
authenticated body that is refused sits in the dead letters exactly once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.domain import actions, samples, webhook_samples
from service.http.app import WEBHOOK_PATH
from service.streams.keys import Keys
from tests.support.http import dead_lettered, fanout_on, signed
from tests.support.servers import FanoutProcess
from tests.support.strategies import json_value

PREFIX = f"fz{uuid.uuid4().hex[:10]}"
STATUSES = ("ENQUEUED", "IN_PROGRESS", "DONE", "FAILED")


class Letters:
    """The dead letters of the fuzz prefix, read as they come (XRANGE from the last one
    seen): how many letters each body's sha256 has, and the body kept."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._stream = Keys(PREFIX).dead_letters()
        self._after = "-"
        self.count: Counter[str] = Counter()
        self.body: dict[str, bytes] = {}

    def read(self) -> None:
        for entry_id, fields in self._redis.xrange(self._stream, self._after):
            sha = fields[b"sha256"].decode()
            self.count[sha] += 1
            self.body[sha] = fields[b"body"]
            self._after = "(" + entry_id.decode()


@dataclass
class Receiver:
    fanout: FanoutProcess
    http: httpx.Client
    letters: Letters


@pytest.fixture(scope="module")
def receiver(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """``fanout serve`` for the whole fuzz run; at its end, its log must hold no traceback
    (nothing was a 500), checked here so it holds whatever the order of the tests."""
    fanout = fanout_on(tmp_path_factory.mktemp("fuzz"), redis_url, PREFIX)
    fanout.start()
    client = Redis.from_url(redis_url)
    try:
        with httpx.Client(base_url=fanout.base_url, timeout=10) as http:
            yield Receiver(fanout, http, Letters(client))
    finally:
        fanout.stop()
        try:
            for key in client.scan_iter(match=f"{PREFIX}:*", count=1000):
                client.delete(key)
        finally:
            client.close()
    assert "Traceback" not in Path(fanout.log_path).read_text()


@st.composite
def action(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(actions.TYPES))
    status = draw(st.sampled_from(STATUSES))
    return samples.sample(
        type_,
        status=status,
        id_="aa_" + draw(st.text("0123456789abcdef", min_size=6, max_size=18)),
        request_id=draw(st.none() | st.text(min_size=1, max_size=12)),
        progress=draw(st.none() | st.integers(0, 100)),
    )


@st.composite
def webhook_event(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(webhook_samples.TYPES))
    return webhook_samples.envelope(
        type_,
        sendout_id="whs_" + draw(st.text("0123456789abcdef", min_size=6, max_size=18)),
        distribution=draw(st.none() | st.booleans()),
    )


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = value.copy()
    copy[head] = _replace(value[head], tuple(rest), new)
    return copy


@st.composite
def mutated_body(draw: st.DrawFn) -> bytes:
    obj = draw(action() | webhook_event())
    kind = draw(
        st.sampled_from(
            ["none", "replace", "delete", "deep", "huge_int", "bad_utf8", "truncate", "type"]
        )
    )
    paths = [p for p in _paths(obj) if p]
    if kind == "replace":
        obj = _replace(obj, draw(st.sampled_from(paths)), draw(json_value))
    elif kind == "delete":
        path = draw(st.sampled_from(paths))
        parent = _replace(obj, (), obj)
        holder = parent
        for step in path[:-1]:
            holder[step] = holder[step].copy()
            holder = holder[step]
        del holder[path[-1]]
        obj = parent
    elif kind == "type":
        obj["type"] = draw(st.sampled_from([*actions.TYPES, "", "VOUCHERS", "vouchers.import"]))
    body = msgspec.json.encode(obj)
    # Byte-level mutations add a member at the end (a repeated key's last value wins).
    key = draw(st.sampled_from([b"result", b"progress", b"processing_time", b"object", b"zz"]))
    if kind == "deep":
        depth = draw(st.sampled_from([64, 1_000, 100_000]))
        opener, leaf, closer = draw(st.sampled_from([(b"[", b"", b"]"), (b'{"a":', b"1", b"}")]))
        body = body[:-1] + b',"' + key + b'":' + opener * depth + leaf + closer * depth + b"}"
    elif kind == "huge_int":
        digits = b"9" * draw(st.integers(20, 5000))
        body = body[:-1] + b',"' + key + b'":' + draw(st.sampled_from([b"", b"-"])) + digits + b"}"
    elif kind == "bad_utf8":
        at = draw(
            st.sampled_from(
                [b'"status":"', b'"id":"aa_', b'"object":"', b'"message":"', b'"id":"whs_']
            )
        )
        body = body.replace(at, at + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])), 1)
    elif kind == "truncate":
        body = body[: draw(st.integers(0, len(body) - 1))]
    return body


@pytest.mark.spawns
@pytest.mark.slow
@pytest.mark.timeout(120)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=mutated_body())
def test_mutated_signed_bodies_get_2xx_and_dead_lettered_ones_are_kept_once(
    receiver: Receiver, body: bytes
) -> None:
    answer = receiver.http.post(WEBHOOK_PATH, content=body, headers=signed(body))
    process = receiver.fanout.process
    assert process is not None and process.poll() is None, "died"
    # Signed, so never refused (issue 25): published, a duplicate, or a dead letter.
    assert answer.status_code in (200, 202), (answer.status_code, answer.text)
    if answer.json()["status"] == "dead_lettered":
        again = receiver.http.post(WEBHOOK_PATH, content=body, headers=signed(body))
        assert again.json() == answer.json()
        sha = hashlib.sha256(body).hexdigest()
        receiver.letters.read()
        assert receiver.letters.count[sha] == 1
        assert receiver.letters.body[sha] == body


@pytest.mark.spawns
def test_the_fuzz_receiver_answers_and_logs_no_traceback(receiver: Receiver) -> None:
    # The fixture checks the log once the module is done; here, that it is kept at all.
    assert receiver.http.get("/healthz").status_code == 200
    assert "Traceback" not in Path(receiver.fanout.log_path).read_text()


DEEP = b'{"id":"aa_deep","type":"VOUCHERS.IMPORT","status":"DONE","zz":' + b"[" * 100_000
DEEP += b"]" * 100_000 + b"}"
BAD_UTF8 = b'{"id":"aa_utf8","type":"VOUCHERS.IMPORT","status":"DO\xffNE"}'


@pytest.mark.parametrize("body", [DEEP, BAD_UTF8], ids=["100000 deep", "invalid UTF-8"])
async def test_undecodable_but_signed_is_dead_lettered(
    http: httpx.AsyncClient, redis: AsyncRedis, keys: Keys, body: bytes
) -> None:
    answer = await http.post(WEBHOOK_PATH, content=body, headers=signed(body))
    await dead_lettered(answer, redis, keys, body, "malformed_json")


@pytest.mark.parametrize("body", [DEEP, BAD_UTF8], ids=["100000 deep", "invalid UTF-8"])
async def test_undecodable_and_badly_signed_is_401(
    http: httpx.AsyncClient, redis: AsyncRedis, keys: Keys, body: bytes
) -> None:
    headers = {**signed(body), "x-voucherify-signature": "0" * 64}
    answer = await http.post(WEBHOOK_PATH, content=body, headers=headers)
    assert answer.status_code == 401
    assert await redis.xlen(keys.dead_letters()) == 0


@pytest.mark.parametrize("field", ["progress", "processing_time"])
async def test_integer_beyond_64_bits_is_dead_lettered(
    http: httpx.AsyncClient, redis: AsyncRedis, keys: Keys, field: str
) -> None:
    # The receiver's digest and event encoders hold 64-bit integers at most.
    body = msgspec.json.encode({**samples.sample("ORDERS.IMPORT"), field: 10**20})
    answer = await http.post(WEBHOOK_PATH, content=body, headers=signed(body))
    await dead_lettered(answer, redis, keys, body, "invalid_payload")
    assert f"$.{field}" in answer.json()["detail"]
