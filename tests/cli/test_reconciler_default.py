"""``fanout serve`` reads async actions from the API by default once it has the keys."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.support.cli import FANOUT
from tests.support.fake_voucherify import Reconciling, completed_ids, mixed
from tests.support.servers import free_port

pytestmark = pytest.mark.spawns


async def serve(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """``fanout serve`` with ``env``, once it answers (its background tasks have started)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        FANOUT,
        "serve",
        "--port",
        str(port),
        "--secrets",
        "s-1",
        "--log-level",
        "warning",
        *args,
        env=env | {"FANOUT_POLL_INTERVAL": "0.2"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(600):
            assert process.returncode is None, await stop(process)
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError(await stop(process))


async def stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), 20)
    return output.decode()


@pytest.mark.slow
async def test_serve_with_the_api_keys_reconciles_without_a_flag_and_no_poll_stops_it(
    reconciling: Reconciling, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fake, api_url = reconciling.fake, reconciling.api_url
    actions = fake.populate(12, status_of=mixed)
    env = dict(reconciling.env)
    env["FANOUT_DATA_DIR"] = str(tmp_path_factory.mktemp("serve"))
    process = await serve(env)
    try:
        for _ in range(300):
            if set(await reconciling.published()) == completed_ids(actions):
                break
            assert process.returncode is None
            await asyncio.sleep(0.05)
    finally:
        output = await stop(process)
    assert set(await reconciling.published()) == completed_ids(actions), output
    assert f"reconciler: on, reading async actions from {api_url}" in output

    calls = fake.calls["list"]
    env["FANOUT_DATA_DIR"] = str(tmp_path_factory.mktemp("serve-no-poll"))
    process = await serve(env, "--no-poll")
    await asyncio.sleep(1)  # five intervals since it started: it would have listed by now
    output = await stop(process)
    assert "reconciler: off (--no-poll or FANOUT_POLL=0)" in output
    assert fake.calls["list"] == calls
