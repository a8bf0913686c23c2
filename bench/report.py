"""What ``bench.run`` prints: each run, the medians with their spread, then the ratios.

Ratios are taken round by round (the targets of one round ran one after another, so
the machine's drift over the whole run cancels), then given as median [min-max].
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from typing import Any

#: Issue 29's targets: the service against the Node reference and the ceiling.
GOALS = {
    ("service", "node", "rps"): ">= 1.0x",
    ("service", "node", "p99_ms"): "<= 1.0x",
    ("service", "ceiling", "cpu_us"): "<= 1.6x",
}


#: Targets of ``bench.run`` other than the service versions (``--base``) compared with it.
KNOWN = {"service", "ceiling", "node", "alternative", "service-w2", "replicated"}


def line(result: Any) -> str:
    """One run of one target."""
    return (
        f"{result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
        f"  cpu {result.cpu_us:5.0f} us/req  script {result.script_us:5.1f} us/call"
        f" ({result.cores:.2f} cores; valkey {result.valkey_cores:.2f},"
        f" wrk {result.wrk_cores:.2f}, idle {result.idle_cores:.2f})"
        f"  answers {result.statuses}" + ("  WRAPPED: bodies replayed" if result.wrapped else "")
    )


def _spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}-{fmt(max(values))}]"


def ratios(results: dict[str, list[Any]], a: str, b: str, attr: str) -> list[float]:
    """``a``'s ``attr`` over ``b``'s, round by round."""
    return [
        getattr(x, attr) / getattr(y, attr)
        for x, y in zip(results[a], results[b], strict=False)
        if getattr(y, attr)
    ]


def summary(
    args: argparse.Namespace, results: dict[str, list[Any]], fixed: dict[str, list[float]]
) -> None:
    def values(name: str, attr: str) -> list[float]:
        return [getattr(r, attr) for r in results[name]]

    print(
        f"\nmedians [min-max] of {args.runs} runs, {args.duration:.0f} s each, wrk"
        f" -t{args.threads} -c{args.connections}, {args.kind} load, fresh bodies,"
        f" appendfsync {args.appendfsync}:"
    )
    print(
        f"  {'target':<12} {'req/s':>22} {'p50 ms':>8} {'p99 ms':>20}"
        f" {'cpu us/req':>16} {'script us/call':>16}  cores: target valkey wrk idle"
        + ("  p99 ms @ fixed rate" if fixed else "")
    )
    for name in results:
        if not results[name]:
            continue
        wrapped = sum(r.wrapped for r in results[name])
        print(
            f"  {name:<12} {_spread(values(name, 'rps'), '{:,.0f}'.format):>22}"
            f" {statistics.median(values(name, 'p50_ms')):8.2f}"
            f" {_spread(values(name, 'p99_ms'), '{:.2f}'.format):>20}"
            f" {_spread(values(name, 'cpu_us'), '{:.0f}'.format):>16}"
            f" {statistics.median(values(name, 'script_us')):16.1f}"
            + "".join(
                f" {statistics.median(values(name, attr)):6.2f}"
                for attr in ("cores", "valkey_cores", "wrk_cores", "idle_cores")
            )
            + (f"  {statistics.median(fixed[name]):8.2f}" if name in fixed else "")
            + (f"  ({wrapped} runs replayed bodies)" if wrapped else "")
        )
    print("\nratios, round by round: median [min-max]")
    pairs = [
        (a, b)
        for a, b in (
            ("service", "node"),
            ("service", "ceiling"),
            ("node", "ceiling"),
            ("service", "alternative"),
            ("replicated", "service"),
            *(("service", name) for name in results if name not in KNOWN),
        )
        if results.get(a) and results.get(b)
    ]
    for a, b in pairs:
        for attr, label in (("rps", "throughput"), ("p99_ms", "p99"), ("cpu_us", "cpu/request")):
            found = ratios(results, a, b, attr)
            if not found:
                continue
            goal = GOALS.get((a, b, attr))
            print(
                f"  {a + ' / ' + b:<22} {label:<12} {_spread(found, '{:.2f}x'.format)}"
                + (f"   (goal {goal})" if goal else "")
            )
