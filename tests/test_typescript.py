"""The TypeScript consumer (examples/typescript, ioredis) against the embedded server.

Real Node.js: ``npm ci`` from the example's lockfile (skipped while node_modules
was installed from the same lockfile), one ``tsc --strict`` run that compiles the
example and a file of the entries a real ``fanout serve`` wrote, typed as the
generated declarations say, then the compiled consumer reads those entries from
the URL ``fanout url --password`` prints, as docs/interop.md tells a Node.js user.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from service.domain import actions, samples, webhook_samples
from service.http import asyncapi, signature
from tests.support.cli import ROOT, LocalServe, clean_env, run

EXAMPLE = ROOT / "examples" / "typescript"
DECLARATIONS = EXAMPLE / "src" / "fanout.d.ts"
NODE, NPM = shutil.which("node"), shutil.which("npm")
#: The sender's trace context, sent with every delivery.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

if NODE is None and os.environ.get("FANOUT_REQUIRE_NODE") == "1":
    raise RuntimeError("FANOUT_REQUIRE_NODE=1 but no node on PATH")
pytestmark = [
    pytest.mark.skipif(
        NODE is None or NPM is None, reason="needs Node.js 20+ and npm (CI has them)"
    ),
    pytest.mark.spawns,
    # npm ci (up to its own 300 s) runs in the first test's setup, after any other
    # worker's run of it: not the suite's 60 s per test.
    pytest.mark.timeout(420),
]


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The example's packages, installed by ``npm ci`` unless already from this lockfile.

    One ``npm ci`` at a time: each pytest-xdist worker that runs a test of this module
    makes this fixture, and two ``npm ci`` in one folder at once break each other (each
    deletes node_modules first); the second finds the first one's stamp."""
    lock = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXAMPLE / "node_modules" / ".installed-from-lock"
    guard = (
        Path(tempfile.gettempdir())
        / f"fanout-npm-ci-{hashlib.sha256(bytes(EXAMPLE)).hexdigest()[:16]}"
    )
    with open(guard, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        if not stamp.exists() or stamp.read_text() != lock:
            assert NPM is not None
            subprocess.run(
                [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=EXAMPLE,
                check=True,
                timeout=300,
            )
            stamp.write_text(lock)
    return EXAMPLE / "node_modules"


def test_the_declarations_are_current(node_modules: Path) -> None:
    # Generated from what scripts/asyncapi.py writes (the msgspec types); `make typescript`.
    document = asyncapi.render(asyncapi.document())
    assert NODE is not None
    made = subprocess.run(
        [NODE, "scripts/types.mjs", "-", "-"],
        cwd=EXAMPLE,
        input=document,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert made.stdout == DECLARATIONS.read_bytes(), "fanout.d.ts is stale: run `make typescript`"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServe]:
    # Traced: every entry has its traceparent field (spans exported nowhere).
    env = clean_env(OTEL_TRACES_EXPORTER="none")
    server = LocalServe(tmp_path_factory.mktemp("ts"), "--tracing", "1", env=env).start()
    try:
        yield server
    finally:
        server.stop()


def _deliver(server: LocalServe) -> None:
    """One completion of each async action type and one event of each documented type."""
    secret = (server.folder / ".fanout" / "webhook-secret").read_text().strip().encode()
    bodies = [msgspec.json.encode(samples.sample(t)) for t in actions.TYPES]
    bodies.append(msgspec.json.encode(samples.sample("ORDERS.IMPORT", status="FAILED")))
    bodies += [msgspec.json.encode(webhook_samples.envelope(t)) for t in webhook_samples.TYPES]
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for body in bodies:
            headers = {"content-type": "application/json", "traceparent": TRACEPARENT}
            headers[signature.HEADER] = signature.sign(signature.compact(body) or body, secret)
            answer = client.post("/webhooks/voucherify", content=body, headers=headers)
            assert answer.status_code == 202, answer.text


def _entries(url: str) -> dict[tuple[str, str], dict[str, str]]:
    found = {}
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for stream in client.scan_iter(match="voucherify:{*}:*", _type="stream"):
            if stream.endswith((":completed", ":events")):
                for entry_id, fields in client.xrange(stream):
                    found[stream, entry_id] = fields
    return found


def _checks(entries: dict[tuple[str, str], dict[str, str]]) -> str:
    """TypeScript that compiles only if every entry fits the declarations."""
    lines = [
        "import type { CompletionEntryFields, CompletionEvents, WebhookEventEntryFields,"
        ' WebhookEvents } from "./fanout.js";',
    ]
    for n, ((stream, _), fields) in enumerate(sorted(entries.items())):
        event = json.loads(fields.pop("event"))
        if stream.endswith(":completed"):
            lines.append(f"export const f{n}: CompletionEntryFields = {json.dumps(fields)};")
            lines.append(f"export const e{n}: CompletionEvents[{json.dumps(event['type'])}] = ")
        else:
            lines.append(f"export const f{n}: WebhookEventEntryFields = {json.dumps(fields)};")
            if not event["schema_valid"]:
                continue  # drift: its data is as received, not as documented
            lines.append(f"export const e{n}: WebhookEvents[{json.dumps(event['type'])}] = ")
        lines[-1] += json.dumps(event) + ";"
    # The check can fail: a count as a string must not compile.
    lines.append("// @ts-expect-error: done_count is a number")
    lines.append('export const wrong: CompletionEvents["VOUCHERS.IMPORT"]["done_count"] = "40";')
    return "\n".join(lines) + "\n"


def test_the_typescript_consumer_reads_what_the_embedded_server_holds(
    node_modules: Path, served: LocalServe, tmp_path: Path
) -> None:
    _deliver(served)
    url = run("url", "--password", cwd=served.folder).stdout.strip()
    entries = _entries(url)
    assert len(entries) == len(actions.TYPES) + 1 + len(webhook_samples.TYPES)

    # One strict compile: the example, and the real entries typed by the declarations.
    build = tmp_path / "build"
    (build / "src").mkdir(parents=True)
    for name in ("consume.ts", "fanout.d.ts"):
        shutil.copy(EXAMPLE / "src" / name, build / "src" / name)
    (build / "src" / "entries.ts").write_text(_checks({k: dict(v) for k, v in entries.items()}))
    (build / "node_modules").symlink_to(node_modules)
    config: dict[str, Any] = json.loads((EXAMPLE / "tsconfig.json").read_text())
    (build / "tsconfig.json").write_text(json.dumps(config))
    compiled = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), "-p", "."],
        cwd=build,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert compiled.returncode == 0, compiled.stdout[-4000:]

    types = ",".join((*actions.TYPES, *webhook_samples.TYPES))
    assert NODE is not None
    consumed = subprocess.run(
        [
            NODE,
            "dist/consume.js",
            "--types",
            types,
            "--count",
            str(len(entries)),
            "--json",
            "--trace",
        ],
        cwd=build,
        env={"PATH": os.environ["PATH"], "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert "not as documented" not in consumed.stderr
    port = (served.folder / ".fanout" / "redis-port").read_text().strip()
    assert f"of 127.0.0.1:{port} as group typescript-example" in consumed.stderr
    printed = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(printed) == len(entries)
    for line in printed:
        fields = entries[line["stream"], line["entry_id"]]
        assert json.loads(fields["event"]) == line["event"]
        assert {k: v for k, v in fields.items() if k != "event"} == line["fields"]
        # The handling's span continues the trace: the child of the span that published it.
        _, trace_id, publish_span, _ = fields["traceparent"].split("-")
        assert trace_id == TRACE_ID
        assert line["trace"]["trace_id"] == TRACE_ID
        assert line["trace"]["parent_span_id"] == publish_span
        assert line["trace"]["span_id"] not in (publish_span, "0" * 16)
    failed = next(p for p in printed if p["fields"].get("status") == "FAILED")
    assert failed["reasons"] and failed["event"]["type"] == "ORDERS.IMPORT"
