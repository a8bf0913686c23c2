"""Tracing off costs no import; on, it is configured by the standard OTEL_* variables."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from redis.asyncio import Redis

from service.config import ConfigError, Settings, tracing_enabled
from service.domain import samples
from service.http.app import create_app
from service.http.receiver import Receiver
from service.streams.keys import Keys
from service.tracing import sdk
from tests.support.http import post
from tests.support.servers import running_uvicorn

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter (this one imported OpenTelemetry for the other tests): a delivery
# through the app over real uvicorn, with a traceparent header, and a Consumer handling
# an entry that has a traceparent field; then what it imported beyond what redis-py
# imports by itself (redis-py >= 8 imports OpenTelemetry's metrics API and SDK when they
# are installed, for its own observability, which stays off unless an application
# initialises it).
_OFF = textwrap.dedent(
    """
    import sys
    import redis.asyncio
    by_redis = {m for m in sys.modules if m.startswith("opentelemetry")}
    import asyncio, json
    import httpx
    from redis.asyncio import Redis
    from service.config import Secret, Settings
    from service.consumer import Consumer
    from service.domain import samples
    from service.http.app import create_app
    from tests.support.feed import running, until
    from tests.support.http import SECRET, post
    from tests.support.servers import running_uvicorn

    async def main(url, prefix):
        settings = Settings(redis_url=url, secrets=(Secret(SECRET),), stream_prefix=prefix)
        async with running_uvicorn(create_app(settings)) as base_url:
            async with httpx.AsyncClient(base_url=base_url) as http:
                parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                answer = await post(http, samples.sample("VOUCHERS.IMPORT"), traceparent=parent)
        redis = Redis.from_url(url)
        stream = f"{prefix}:{{VOUCHERS.IMPORT}}:completed"
        await redis.xadd(stream, {"traceparent": parent, "event": b"{}"})  # as if traced
        handled = []
        async def handle(event):
            handled.append(event)
        member = Consumer(redis, "g", types=["VOUCHERS.IMPORT"], prefix=prefix, block=0.1)
        async with running(member, handle):
            await until(lambda: handled or member.stats.poisoned)
        fields = [f for _, f in await redis.xrange(stream)][0]
        await redis.aclose()
        ours = ("opentelemetry", "service.tracing.", "service.http.tracing",
                "service.consumer.tracing")
        loaded = sorted(m for m in set(sys.modules) - by_redis if m.startswith(ours))
        print(json.dumps({"status": answer.status_code, "loaded": loaded,
                          "sdk_trace": "opentelemetry.sdk.trace" in sys.modules,
                          "fields": sorted(k.decode() for k in fields)}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.spawns
def test_tracing_off_imports_no_opentelemetry(redis_url: str, prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "OTEL_"))}
    ran = subprocess.run(
        [sys.executable, "-c", _OFF, redis_url, prefix],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout.splitlines()[-1])
    assert found["status"] == 202
    assert found["loaded"] == []  # installed (the [dev] extra has it), never imported by us
    assert found["sdk_trace"] is False  # the tracing SDK: nothing imports it
    assert found["fields"] == ["event", "id", "request_id", "status", "type"]  # no traceparent


def otel(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """This process's OTEL_* variables are ``environ`` alone (the SDK reads os.environ)."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


# A consumer application as documented: its own global provider, FANOUT_TRACING=1 in its
# environment, a Consumer given no tracing argument (a fresh interpreter: the global
# provider can be set once per process).
_GLOBAL = textwrap.dedent(
    """
    import asyncio, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from redis.asyncio import Redis
    from service.consumer import Consumer
    from tests.support.feed import running, until

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    async def main(url, prefix):
        redis = Redis.from_url(url)
        stream = f"{prefix}:{{VOUCHERS.IMPORT}}:completed"
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await redis.xadd(stream, {"type": "VOUCHERS.IMPORT", "traceparent": parent, "event": b"{}"})
        member = Consumer(redis, "g", types=["VOUCHERS.IMPORT"], prefix=prefix, block=0.1)
        async with running(member, lambda event: asyncio.sleep(0)):
            await until(lambda: member.stats.poisoned)  # "{}" is no event: poison
        await redis.delete(stream, f"{prefix}:{{dead}}:letters")
        await redis.aclose()
        spans = [(s.name, f"{s.context.trace_id:032x}", dict(s.attributes))
                 for s in exporter.get_finished_spans()]
        print(json.dumps(spans))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.spawns
def test_a_consumer_traces_into_the_applications_provider_with_fanout_tracing(
    redis_url: str, prefix: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "OTEL_"))}
    ran = subprocess.run(
        [sys.executable, "-c", _GLOBAL, redis_url, prefix],
        cwd=ROOT,
        env=env | {"FANOUT_TRACING": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    [(name, trace_id, attributes)] = json.loads(ran.stdout.splitlines()[-1])
    assert name == f"process {prefix}:{{VOUCHERS.IMPORT}}:completed"
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert attributes["fanout.outcome"] == "poison"


@pytest.mark.parametrize(
    ("environ", "made"),
    [
        ({}, [OTLPSpanExporter]),  # the specification's default: otlp over http/protobuf
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, [ConsoleSpanExporter, OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ],
)
def test_otel_traces_exporter_names_the_exporters(
    environ: dict[str, str], made: list[type], monkeypatch: pytest.MonkeyPatch
) -> None:
    otel(monkeypatch, environ)
    assert [type(e) for e in sdk.exporters()] == made


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),  # not installed
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ],
)
def test_an_exporter_that_is_not_there_names_its_variable(
    environ: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel(monkeypatch, environ)
    with pytest.raises(ConfigError) as raised:
        sdk.exporters()
    assert raised.value.variable == variable


def test_the_service_name_is_ours_unless_otel_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def name(environ: dict[str, str]) -> object:
        otel(monkeypatch, {"OTEL_TRACES_EXPORTER": "none", **environ})
        provider = sdk.provider_from_env()
        assert provider is not None
        return provider.resource.attributes["service.name"]

    assert name({}) == "voucherify-fanout"
    assert name({"OTEL_SERVICE_NAME": "webhooks-eu"}) == "webhooks-eu"
    assert name({"OTEL_RESOURCE_ATTRIBUTES": "service.name=hooks,team=crm"}) == "hooks"


async def test_otel_sdk_disabled_is_tracing_off(
    settings: Settings, redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = create_app(dataclasses.replace(settings, tracing=True))
    assert type(app.receiver) is Receiver
    async with running_uvicorn(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        assert (await post(http, samples.sample("VOUCHERS.IMPORT"))).status_code == 202
    [(_, fields)] = await redis.xrange(keys.completed("VOUCHERS.IMPORT"))
    assert b"traceparent" not in fields


def test_fanout_tracing_is_a_setting_that_a_consumer_reads_alone() -> None:
    assert Settings.from_env({"FANOUT_TRACING": "1"}).tracing is True
    assert Settings.from_env({}).tracing is False
    with pytest.raises(ConfigError, match="FANOUT_TRACING"):
        Settings.from_env({"FANOUT_TRACING": "on"})
    # A Consumer reads FANOUT_TRACING and nothing else: another bad variable is not its own.
    assert tracing_enabled({"FANOUT_TRACING": "1", "FANOUT_PORT": "not a port"}) is True
    assert tracing_enabled({}) is False
