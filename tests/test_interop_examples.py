"""The Dapr and Redpanda Connect examples name real streams and the fields that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from service.domain import actions, webhook_samples
from service.streams import cloud_events
from service.streams.keys import Keys

EXAMPLES = Path(__file__).parents[1] / "examples"
STREAMS = {
    *(
        getattr(Keys(), kind)(type_)
        for type_ in actions.TYPES
        for kind in ("completed", "progress")
    ),
    *(Keys().events(type_) for type_ in webhook_samples.TYPES),
}


def load(path: str) -> Any:
    return yaml.safe_load((EXAMPLES / path).read_text())


def test_dapr_component_and_subscription_fit_together() -> None:
    component = load("dapr/pubsub.yaml")
    subscription = load("dapr/subscription.yaml")
    assert component["spec"]["type"] == "pubsub.redis"
    spec = subscription["spec"]
    assert spec["pubsubname"] == component["metadata"]["name"]
    assert spec["topic"] in STREAMS
    type_ = spec["topic"].split("{", 1)[1].split("}", 1)[0]
    [rule] = spec["routes"]["rules"]
    assert rule["match"] == f'event.type == "{cloud_events.action_type(type_, "completed")}"'


def test_redpanda_connect_reads_real_streams_and_fields() -> None:
    config = load("redpanda-connect/voucherify.yaml")["input"]["redis_streams"]
    assert set(config["streams"]) <= STREAMS
    assert config["body_key"] in ("event", "data")
