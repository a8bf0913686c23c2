"""Fixtures: a real Redis (FANOUT_TEST_REDIS_URL) or an embedded Valkey, a key prefix per test."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from service.config import Secret, Settings
from service.streams.keys import Keys
from tests.support import spawns
from tests.support.browser import chromium
from tests.support.cluster import ValkeyCluster
from tests.support.fake_voucherify import FakeVoucherify
from tests.support.http import SECRET, serving
from tests.support.servers import ValkeyProcess, running_uvicorn

_SPAWNED_BEFORE = pytest.StashKey[int]()
#: Fixtures that started a process when set up (a test using one needs the mark too).
_SPAWNING: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    spawns.install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_SPAWNED_BEFORE] = len(spawns.started)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> Iterator[object]:
    before = len(spawns.started)
    try:
        return (yield)
    finally:
        if any(spawns.started[before:]):
            _SPAWNING.add(fixturedef.argname)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that started a process, or uses a fixture that did (a module's server, the
    session's cluster), must be marked ``spawns``."""
    result = yield
    if item.get_closest_marker("spawns") is None:
        own = [command for command in spawns.started[item.stash[_SPAWNED_BEFORE] :] if command]
        shared = sorted(_SPAWNING.intersection(getattr(item, "fixturenames", ())))
        if own or shared:
            what = f"({own[0][:120]})" if own else f"(through its fixture {shared[0]!r})"
            pytest.fail(
                f"started a process {what} without @pytest.mark.spawns: mark the test (or "
                "its module: pytestmark = pytest.mark.spawns); `make test-fast` leaves it out",
                pytrace=False,
            )
    return result


@pytest.fixture(scope="session", autouse=True)
def no_terminal_width() -> Iterator[None]:
    """No COLUMNS or LINES for the commands tests run (their tables are as when piped).

    pytest-xdist's workers get COLUMNS=80 and LINES=24, the controller's terminal; the
    CLI's tables read COLUMNS, so a `fanout tail` run by a test was cut to 80 columns in a
    worker and not in a serial run. A test that wants a width gives it to its command
    (``clean_env(COLUMNS="80")``).
    """
    saved = {name: os.environ.pop(name) for name in ("COLUMNS", "LINES") if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def interruptible_children() -> Iterator[None]:
    """Children started by tests take Ctrl-C (SIGINT), as from a terminal.

    A shell starts a background job (`make test &`, a CI step run that way) with SIGINT
    ignored, and an ignored signal stays ignored across fork and exec: every `fanout
    tail --follow` or `fanout serve` a test then stops with SIGINT ran on (seen: both
    follow tests timed out in runs started in the background). A handled signal is
    reset to the default in the child, so this process handles it again.
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("FANOUT_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = ValkeyProcess(tmp_path_factory.mktemp("valkey"))
    with spawns.allowed():  # the suite's shared server, not a test's own
        server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fanout_redis_url(redis_url: str) -> str:
    """The server of service.testing's plugin (its ``fanout`` fixture) is the suite's own:
    one server per worker, not two (the plugin would start an embedded Valkey)."""
    return redis_url


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


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as client:
        yield client


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Headless Chromium; mark the test ``requires_chromium`` (tests.support.browser)."""
    async with chromium() as launched:
        yield launched


@pytest.fixture
def fake() -> FakeVoucherify:
    """A fake Voucherify async-actions API, for the reconciler."""
    return FakeVoucherify()


@pytest.fixture
async def api_url(fake: FakeVoucherify) -> AsyncIterator[str]:
    async with running_uvicorn(fake.app) as base_url:
        yield base_url
