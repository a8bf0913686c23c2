"""``fanout serve --workers 2 --tracing 1``: each worker exports its own spans over
OTLP/HTTP, to a collector of this test (a real HTTP server decoding the protobuf)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.types import Receive, Scope, Send

from service.domain import samples
from service.http.app import WEBHOOK_PATH
from tests.support.feed import until
from tests.support.http import SECRET, signed
from tests.support.load import Connection
from tests.support.servers import FanoutProcess, running_uvicorn

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Collector:
    """POST /v1/traces as an OpenTelemetry collector takes it: the spans it was sent."""

    def __init__(self) -> None:
        #: (process.pid of the span's resource, span name, its attributes)
        self.spans: list[tuple[int, str, dict[str, Any]]] = []

    async def holds(self, count: int) -> None:
        """Wait until ``count`` spans came (exported in batches every 100 ms here)."""
        await until(lambda: len(self.spans) >= count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert scope["path"] == "/v1/traces", scope["path"]
        request = ExportTraceServiceRequest.FromString(body)
        for batch in request.resource_spans:
            resource = {a.key: _value(a.value) for a in batch.resource.attributes}
            for scoped in batch.scope_spans:
                for span in scoped.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append((resource["process.pid"], span.name, attributes))
        answer = ExportTraceServiceResponse().SerializeToString()
        headers = [(b"content-type", b"application/x-protobuf")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


@pytest.mark.slow
@pytest.mark.spawns
async def test_each_worker_exports_its_own_spans(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    collector = Collector()
    async with running_uvicorn(collector) as endpoint:
        fanout = FanoutProcess(
            tmp_path / "fanout.log",
            "--workers=2",
            "--tracing=1",
            f"--redis-url={redis_url}",
            f"--secrets={SECRET}",
            f"--stream-prefix={prefix}",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        fanout.start()
        answers = []
        try:
            workers = set(fanout.workers())
            assert len(workers) == 2
            # Deliveries on many connections at once, until both workers have answered
            # some (the kernel hands each connection to one of them).
            for _ in range(10):
                bodies = [msgspec.json.encode(samples.sample("ORDERS.IMPORT")) for _ in range(32)]
                connections = [Connection("127.0.0.1", fanout.port) for _ in bodies]
                try:
                    answers += await asyncio.gather(
                        *(
                            c.post(WEBHOOK_PATH, b, signed(b) | {"traceparent": TRACEPARENT})
                            for c, b in zip(connections, bodies, strict=True)
                        )
                    )
                finally:
                    await asyncio.gather(*(c.close() for c in connections))
                await collector.holds(len(answers))
                if {pid for pid, _, _ in collector.spans} == workers:
                    break
        finally:
            fanout.stop()  # each worker flushes what its batch processor still holds
        assert {a.status_code for a in answers} == {202}
        # Every delivery's span arrived, each from the worker that answered it.
        per_worker = collections.Counter(pid for pid, _, _ in collector.spans)
        assert set(per_worker) == workers, per_worker
        assert sum(per_worker.values()) == len(answers)
        assert {name for _, name, _ in collector.spans} == {"POST /webhooks/voucherify"}
        assert {a["fanout.outcome"] for _, _, a in collector.spans} == {"accepted"}
