"""The AsyncAPI document: one channel per stream, literal keys, payloads that fit the events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from service.config import Settings
from service.domain import (
    actions,
    completion,
    inbound,
    outbound,
    samples,
    webhook_data,
    webhook_samples,
    webhooks,
    workflow_data,
)
from service.domain.webhook_data import BY_TYPE
from service.http import asyncapi
from service.streams.dead_letters import DeadLetter
from service.streams.keys import Keys

CHECKED_IN = Path(__file__).parents[2] / "docs" / "asyncapi.json"
VENDOR = Path(__file__).parents[2] / "scripts" / "vendor"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.document("acme")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_one_channel_per_stream(doc: dict[str, Any]) -> None:
    keys = Keys("acme")
    expected = [k for t in actions.TYPES for k in (keys.completed(t), keys.progress(t))]
    expected += [keys.events(t) for t in webhook_samples.TYPES]
    expected += [keys.events(t) for t in webhook_data.SCHEMALESS_TYPES]
    expected += [keys.events(t) for t in workflow_data.BY_TYPE]
    expected += [None, keys.custom(), keys.dead_letters()]  # other types: a pattern, no key
    assert [c.get("x-redis-key") for c in doc["channels"].values()] == expected
    assert len(doc["channels"]) == 22 * 2 + 72 + 17 + 80 + 3
    other = doc["channels"]["other_webhook_types.events"]
    assert other["x-redis-key-pattern"] == "acme:{*}:events"


def test_braced_keys_are_not_addresses(doc: dict[str, Any]) -> None:
    # AsyncAPI reads {...} in an address as a parameter: the key is in x-redis-key only.
    for channel in doc["channels"].values():
        assert channel["address"] is None
        assert "parameters" not in channel
    template = doc["channels"]["VOUCHERS.IMPORT.completed"]["x-redis-key-template"]
    assert template == "<prefix>:{VOUCHERS.IMPORT}:completed"
    assert "x-redis-key" in doc["info"]["description"]


def test_every_operation_sends_its_channels_message(doc: dict[str, Any]) -> None:
    assert len(doc["operations"]) == len(doc["channels"])
    for name, operation in doc["operations"].items():
        assert operation["action"] == "send"
        channel = resolve(doc, operation["channel"]["$ref"])
        assert name == "send." + next(iter(channel["messages"]))
        for ref in operation["messages"]:
            assert resolve(doc, resolve(doc, ref["$ref"])["$ref"])["name"]


@pytest.mark.parametrize("type_", actions.TYPES)
@pytest.mark.parametrize("status", ["DONE", "FAILED", "IN_PROGRESS"])
def test_payload_and_headers_describe_a_real_entry(
    doc: dict[str, Any], type_: str, status: str
) -> None:
    action = actions.decode(msgspec.json.encode(samples.sample(type_, status=status)))
    event = msgspec.json.decode(
        completion.encode_event(completion.from_action(action, datetime.now(UTC)))
    )
    kind = "completed" if action.completed else "progress"
    message = resolve(
        doc, doc["channels"][f"{type_}.{kind}"]["messages"][f"{type_}.{kind}"]["$ref"]
    )
    assert message["x-redis-payload-field"] == "event"
    schema = resolve(doc, message["payload"]["$ref"])
    assert set(schema["required"]) <= set(event) <= set(schema["properties"])
    assert schema["properties"]["type"]["enum"] == [type_]
    result = schema["properties"]["result"]["anyOf"][0]
    assert set(event["result"] or {}) <= set(resolve(doc, result["$ref"])["properties"])
    headers = message["headers"]
    entry = {"type": type_, "status": status, "id": action.id, "request_id": action.request_id}
    assert set(headers["required"]) <= set(entry) <= set(headers["properties"])
    assert status in headers["properties"]["status"]["enum"]


@pytest.mark.parametrize("type_", webhook_samples.TYPES)
def test_every_webhook_event_type_has_a_channel_that_fits_its_entries(
    doc: dict[str, Any], type_: str
) -> None:
    delivery = webhooks.decode_envelope(msgspec.json.encode(webhook_samples.envelope(type_)))
    event = webhooks.encode_event(delivery.event(datetime.now(UTC)))
    message = doc["components"]["messages"][f"{type_}.events"]
    assert message["x-redis-payload-field"] == "event"
    schema = resolve(doc, message["payload"]["$ref"])
    assert schema["properties"]["type"] == {"enum": [type_]}
    data = resolve(doc, schema["properties"]["data"]["$ref"])
    assert data["title"] == BY_TYPE[type_].__name__
    # The Struct the schema is generated from decodes the published event, typed;
    # drift (one vendor example has a malformed time) is what the description warns of.
    struct = asyncapi._webhook_event_types()[type_]
    if delivery.schema_valid:
        assert msgspec.json.decode(event, type=struct).data == delivery.data
    else:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(event, type=struct)
        assert "schema_valid" in doc["channels"][f"{type_}.events"]["description"]
    headers = message["headers"]
    entry = {"type", "id", "request_id", "sendout_id"}
    assert set(headers["required"]) == entry
    assert headers["properties"]["type"]["const"] == type_


def test_workflow_and_schemaless_types_have_channels_that_fit_their_entries(
    doc: dict[str, Any],
) -> None:
    examples = json.loads((VENDOR / "workflow-webhook-examples.json").read_text())
    bodies = [*examples.values(), webhook_samples.envelope("customer.confirmed", {"x": 1})]
    for body in bodies:
        delivery = webhooks.decode_envelope(msgspec.json.encode(body))
        assert delivery.schema_valid
        event = webhooks.encode_event(delivery.event(datetime.now(UTC)))
        type_ = delivery.type
        channel = doc["channels"][f"{type_}.events"]
        schema = resolve(doc, doc["components"]["messages"][f"{type_}.events"]["payload"]["$ref"])
        struct = asyncapi._webhook_event_types()[type_]
        decoded = msgspec.json.decode(event, type=struct)
        if type_ in workflow_data.BY_TYPE:
            assert "Workflows" in channel["description"]
            data = resolve(doc, schema["properties"]["data"]["$ref"])
            assert data["title"] == workflow_data.BY_TYPE[type_].__name__
            assert decoded.data == delivery.data
        else:
            assert "no documented schema" in channel["description"]
            assert schema["properties"]["data"]["type"] == "object"
            assert decoded.data == {"x": 1}


def test_other_webhook_types_have_a_generic_channel(doc: dict[str, Any]) -> None:
    body = webhook_samples.envelope("voucher.published", distribution=True)
    body["event"]["type"] = "Spring-Sale.sent"  # a distribution's own name
    delivery = webhooks.decode_envelope(msgspec.json.encode(body))
    event = webhooks.encode_event(delivery.event(datetime.now(UTC)))
    message = doc["components"]["messages"]["other_webhook_types.events"]
    schema = resolve(doc, message["payload"]["$ref"])
    assert set(schema["required"]) <= set(msgspec.json.decode(event)) <= set(schema["properties"])
    assert schema["properties"]["data"]["type"] == "object"
    assert "Spring-Sale.sent" not in doc["channels"]


def test_custom_bodies_have_a_channel_that_fits_their_entries(doc: dict[str, Any]) -> None:
    body = inbound.decode(b'{"customer": "Ada", "tags": [1, 2]}')
    publication = outbound.publication(body, datetime.now(UTC))
    message = doc["components"]["messages"]["custom.events"]
    assert doc["channels"]["custom.events"]["x-redis-key"] == "acme:{custom}:events"
    assert message["x-redis-payload-field"] == "event"
    schema = resolve(doc, message["payload"]["$ref"])
    event = msgspec.json.decode(publication.json)
    assert set(schema["required"]) <= set(event) <= set(schema["properties"])
    assert schema["properties"]["type"]["enum"] == ["custom"]
    entry = dict(zip(publication.fields[::2], publication.fields[1::2], strict=True))
    headers = message["headers"]
    assert set(headers["required"]) == set(entry) - {"event"}
    assert headers["properties"]["type"]["const"] == entry["type"]


def test_dead_letter_headers_are_the_letters_fields(doc: dict[str, Any]) -> None:
    message = doc["components"]["messages"]["dead.letters"]
    assert message["x-redis-payload-field"] == "body"
    names = [name for name in DeadLetter.__struct_fields__ if name != "body"]
    assert list(message["headers"]["properties"]) == names
    assert message["headers"]["required"] == ["reason", "detail", "sha256", "received_at"]


def test_the_checked_in_document_is_current() -> None:
    # Regenerate with `make asyncapi` after changing a struct, a key or the version.
    current = asyncapi.render(asyncapi.document(Settings().stream_prefix))
    assert CHECKED_IN.read_bytes() == current, "docs/asyncapi.json is stale: run `make asyncapi`"


def test_render_is_stable() -> None:
    first = asyncapi.render(asyncapi.document())
    assert first == asyncapi.render(asyncapi.document())
    assert first.endswith(b"}\n")
    assert msgspec.json.decode(first)["asyncapi"] == "3.0.0"


async def test_served_with_the_configured_prefix(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert settings.redis_url is not None
    server = asyncapi.server_of(settings.redis_url, settings.redis_cluster, None)
    assert served == asyncapi.document(settings.stream_prefix, server)
    key = served["channels"]["ORDERS.IMPORT.completed"]["x-redis-key"]
    assert key == f"{settings.stream_prefix}:{{ORDERS.IMPORT}}:completed"


def test_the_server_in_use_is_named_without_its_password() -> None:
    server = asyncapi.server_of("rediss://app:pa55@cache.internal:6380/2", False, None)
    assert server["host"] == "cache.internal:6380"
    assert server["pathname"] == "/2"
    assert server["x-redis-url"] == "rediss://app@cache.internal:6380/2"
    assert server["x-redis-tls"] is True
    assert "FANOUT_REDIS_URL" in server["description"]
    assert "pa55" not in msgspec.json.encode(server).decode()
    doc = asyncapi.document("acme", server)
    assert doc["servers"] == {"redis": server}
    assert doc["components"]["securitySchemes"]["redisPassword"]["type"] == "userPassword"
    open_server = asyncapi.server_of("redis://10.0.0.5:6379/0", False, None)
    assert "security" not in open_server
    assert "securitySchemes" not in asyncapi.document("acme", open_server)["components"]
    embedded = asyncapi.server_of(
        "redis://default:pw@127.0.0.1:16379/0", False, "/d/redis-password"
    )
    assert embedded["x-redis-password-file"] == "/d/redis-password"
    assert "/d/redis-password" in embedded["description"]


def test_the_checked_in_copy_names_no_server_but_says_where_it_is() -> None:
    [server] = msgspec.json.decode(CHECKED_IN.read_bytes())["servers"].values()
    assert server["host"] == "{host}"
    assert "default" not in server["variables"]["host"], "no guessed host:port to connect to"
    assert "GET /asyncapi.json" in server["description"]
    assert "fanout url" in server["description"]
