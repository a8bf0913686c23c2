"""Fixtures: a real Redis (FANOUT_TEST_REDIS_URL) or an embedded Valkey, a key prefix per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from service import signature
from service.app import WEBHOOK_PATH, create_app
from service.config import Secret, Settings
from service.keys import Keys
from tests.cluster import ValkeyCluster
from tests.servers import ValkeyProcess, running_uvicorn

SECRET = "test-secret-1"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("FANOUT_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = ValkeyProcess(tmp_path_factory.mktemp("valkey"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster: FANOUT_TEST_REDIS_CLUSTER_URL if set, else one started here."""
    url = os.environ.get("FANOUT_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    with ValkeyCluster(tmp_path_factory.mktemp("cluster"), masters=3) as cluster:
        yield cluster.url


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
async def redis(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
        await client.aclose()


@pytest.fixture
def settings(redis_url: str, prefix: str) -> Settings:
    return Settings(redis_url=redis_url, secrets=(Secret(SECRET),), stream_prefix=prefix)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A real uvicorn serving the app, and an HTTP client pointed at it."""
    async with (
        running_uvicorn(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield client


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as client:
        yield client


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        signature.HEADER: signature.sign(body, secret.encode()),
    }


async def post(
    client: httpx.AsyncClient, payload: Any, *, secret: str = SECRET, **headers: str
) -> httpx.Response:
    """Sign and post like the sender: ``payload`` is bytes as-is, or an object to encode."""
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return await client.post(
        WEBHOOK_PATH, content=body, headers={**signed(body, secret), **headers}
    )
