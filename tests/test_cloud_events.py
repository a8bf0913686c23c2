"""CloudEvents of entries: what the CloudEvents SDK reads back from the ``data`` field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import cloud_events, completion, events, samples

pytest.importorskip("cloudevents")
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

SOURCE = cloud_events.source("voucherify")
RECEIVED = datetime(2024, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)


def read(data: bytes) -> CloudEvent:
    event = JSONFormat().read(None, data)
    assert isinstance(event, CloudEvent)
    return event


def build(body: dict[str, Any], received_at: datetime = RECEIVED) -> tuple[bytes, bytes]:
    action = events.decode(msgspec.json.encode(body))
    event = completion.encode_event(completion.from_action(action, received_at))
    return cloud_events.for_action(SOURCE, action, event, received_at), event


def test_a_completion_reads_back_with_every_attribute() -> None:
    body = samples.sample("VOUCHERS.IMPORT", id_="aa_0a1b2c", request_id="v-0f0e0d")
    data, event = build(body)
    ce = read(data)
    assert ce.get_specversion() == "1.0"
    assert ce.get_source() == "/voucherify/voucherify"
    assert ce.get_type() == "io.voucherify.async_action.vouchers.import.completed"
    assert ce.get_subject() == "aa_0a1b2c"
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_time() == datetime.fromisoformat(body["updated_at"])
    assert ce.get_data() == msgspec.json.decode(event)
    assert len(ce.get_id()) == 32


def test_progress_has_its_own_type() -> None:
    body = samples.sample("CAMPAIGN.VOUCHERS_IMPORT_CSV", status="IN_PROGRESS", progress=40)
    ce = read(build(body)[0])
    assert ce.get_type() == "io.voucherify.async_action.campaign.vouchers_import_csv.progress"
    assert ce.get_data()["progress"] == 40  # type: ignore[index]


def test_the_id_is_stable_across_resends() -> None:
    # A resend after the dedup key expired makes a new entry: same CloudEvent id.
    body = samples.sample("ORDERS.IMPORT", id_="aa_1", request_id="v-1")
    first = read(build(body)[0])
    later = read(build(body, RECEIVED + timedelta(days=9))[0])
    assert later.get_id() == first.get_id()
    assert later.get_time() == first.get_time()  # the vendor's time, not the arrival


def test_the_id_differs_per_entry() -> None:
    base = {"id_": "aa_1", "request_id": "v-1"}
    bodies = [
        samples.sample("ORDERS.IMPORT", **base),
        samples.sample("ORDERS.IMPORT", id_="aa_1", request_id="v-2"),
        samples.sample("ORDERS.IMPORT", id_="aa_2", request_id="v-1"),
        samples.sample("VOUCHERS.IMPORT", **base),
        samples.sample("ORDERS.IMPORT", status="ENQUEUED", **base),
        samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=10, **base),
        samples.sample("ORDERS.IMPORT", status="IN_PROGRESS", progress=20, **base),
    ]
    ids = {read(build(body)[0]).get_id() for body in bodies}
    assert len(ids) == len(bodies)


def test_ids_do_not_collide_on_separators() -> None:
    # A joined key would read ("a:b", "c") and ("a", "b:c") alike; the JSON identity does not.
    assert cloud_events.event_id("completed", "T", "a:b", "c") != cloud_events.event_id(
        "completed", "T", "a", "b:c"
    )


def test_a_naive_or_missing_time_is_utc() -> None:
    body = samples.sample("SKUS.IMPORT_CSV")
    body["updated_at"] = "2024-11-28T10:00:00"  # no offset
    assert read(build(body)[0]).get_time() == datetime(2024, 11, 28, 10, tzinfo=UTC)
    body["updated_at"] = body["created_at"] = None
    assert read(build(body)[0]).get_time() == RECEIVED


def test_the_source_is_a_uri_reference_for_any_prefix() -> None:
    assert cloud_events.source("acme-prod") == "/voucherify/acme-prod"
    assert cloud_events.source("a/b%c") == "/voucherify/a%2Fb%25c"


@given(
    id_=st.text(min_size=1, max_size=40),
    request_id=st.one_of(st.none(), st.text(max_size=40)),
)
def test_any_ids_give_a_readable_cloud_event(id_: str, request_id: str | None) -> None:
    body = samples.sample("CUSTOMERS.IMPORT_CSV") | {"id": id_, "request_id": request_id}
    ce = read(build(body)[0])
    assert ce.get_subject() == id_
    assert ce.get_data()["request_id"] == request_id  # type: ignore[index]
