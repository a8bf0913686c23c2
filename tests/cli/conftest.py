"""Fixtures of the command-line tests: ``fanout serve`` in a folder, the reconciler's world."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.streams.keys import Keys
from tests.support.cli import serve
from tests.support.fake_voucherify import FakeVoucherify, Reconciling, poll_env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """``fanout serve`` with nothing configured, in an empty folder."""
    with serve(tmp_path) as (base, process):
        yield base, tmp_path, process


@pytest.fixture
def reconciling(
    redis_url: str, prefix: str, redis: Redis, keys: Keys, fake: FakeVoucherify, api_url: str
) -> Reconciling:
    """The fake Voucherify API serving, and the environment of a command that reads it."""
    return Reconciling(poll_env(redis_url, prefix, api_url), redis, keys, fake, api_url)
