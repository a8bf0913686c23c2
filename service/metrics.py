"""Prometheus metrics of the receiver."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "fanout_deliveries",
    "Webhook deliveries by async action type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)

_deliveries: dict[tuple[str, str], Counter] = {}


def delivery(type_: str, outcome: str) -> None:
    """Count one delivery; the labelled child is looked up once per pair."""
    child = _deliveries.get((type_, outcome))
    if child is None:
        child = _deliveries[(type_, outcome)] = DELIVERIES.labels(type_, outcome)
    child.inc()
