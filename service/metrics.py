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
