"""The inbound model: every documented shape, and each quirk of real payloads."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain import actions, results, samples


def decode(payload: dict[str, Any]) -> actions.AsyncAction:
    return actions.decode(msgspec.json.encode(payload))


def test_there_are_22_types_each_with_its_own_struct() -> None:
    assert len(actions.TYPES) == 22
    assert len(set(actions.ACTION_TYPES)) == 22


@pytest.mark.parametrize("type_", actions.TYPES)
def test_every_type_decodes_into_its_struct(type_: str) -> None:
    action = decode(samples.sample(type_))
    assert type(action) is actions.BY_TYPE[type_]
    assert action.type == type_
    assert action.result is not None
    assert action.completed


@pytest.mark.parametrize("type_", ["VOUCHERS.IMPORT", "ORDERS.IMPORT"])
def test_failed_as_array_or_object(type_: str) -> None:
    # Documented as an object, sent as an array of objects: both decode to a list.
    action = samples.sample(type_, status="FAILED")
    as_array = decode(action)
    one = action["result"]["failed"][0]
    as_object = decode(action | {"result": action["result"] | {"failed": one}})
    assert isinstance(as_array.result, actions.VoucherImportResult | actions.OrderImportResult)
    assert isinstance(as_array.result.failed, list)
    assert len(as_array.result.failed) == 2
    assert isinstance(as_object.result, actions.VoucherImportResult | actions.OrderImportResult)
    assert as_object.result.failed == [as_array.result.failed[0]]


@pytest.mark.parametrize("source_id", [None, ""])
def test_source_id_null_or_empty(source_id: str | None) -> None:
    # Seen in CUSTOMERS.IMPORT_CSV failures for rows without an id column.
    action = samples.sample("CUSTOMERS.IMPORT_CSV", status="FAILED")
    action["result"]["failed"][0]["source_id"] = source_id
    decoded = decode(action)
    assert isinstance(decoded.result, actions.CustomerCsvImportResult)
    assert decoded.result.failed is not None
    assert decoded.result.failed[0].source_id == source_id


@pytest.mark.parametrize("request_id", ["v-0b45cee140c3c9b5ca", "w-0e2b0a8b04d4c4f1d3"])
def test_request_id_prefixes(request_id: str) -> None:
    # v- for API requests, w- for those started from the web dashboard.
    assert decode(samples.sample("VOUCHERS.IMPORT", request_id=request_id)).request_id == request_id


@pytest.mark.parametrize("status", ["ENQUEUED", "IN_PROGRESS"])
def test_progress_updates_carry_no_result(status: str) -> None:
    action = samples.sample("PRODUCTS.IMPORT_CSV", status=status)
    assert "result" not in action
    decoded = decode(action)
    assert decoded.result is None
    assert not decoded.completed


def test_done_from_a_list_response_has_no_result() -> None:
    # GET /v1/async-actions lists DONE actions without their result.
    action = samples.sample("VOUCHERS.IMPORT_CSV")
    del action["result"]
    decoded = decode(action)
    assert decoded.completed
    assert decoded.result is None


@pytest.mark.parametrize(
    "type_",
    [
        "CUSTOMERS.BULK_UPDATE",
        "PRODUCTS.BULK_UPDATE",
        "VOUCHERS.BULK_UPDATE",
        "CUSTOMERS.METADATA_UPDATE",
        "PRODUCTS.METADATA_UPDATE",
        "VOUCHERS.METADATA_UPDATE",
    ],
)
def test_update_results_carry_errors_reports_and_operation_status(type_: str) -> None:
    action = samples.sample(type_, status="FAILED")
    action["result"]["operation_status"] = "FAILED"
    decoded = decode(action)
    result = decoded.result
    assert isinstance(result, results._UpdateResult)
    assert result.errors and result.errors[0].key == "not_found"
    assert result.reports and result.reports[0].startswith("https://")
    assert result.reports_available_till is not None
    assert result.operation_status == "FAILED"
    assert decoded.operation_status == "FAILED"


def test_bulk_update_errors_name_the_record() -> None:
    vouchers = decode(samples.sample("VOUCHERS.BULK_UPDATE", status="FAILED"))
    customers = decode(samples.sample("CUSTOMERS.BULK_UPDATE", status="FAILED"))
    assert isinstance(vouchers.result, actions.VoucherBulkUpdateResult)
    assert isinstance(customers.result, actions.CustomerBulkUpdateResult)
    assert vouchers.result.errors and vouchers.result.errors[0].code == "SUMMER-0042"
    assert customers.result.errors and customers.result.errors[0].source_id == "src_0042"


def test_unknown_fields_are_ignored() -> None:
    action = samples.sample("ORDERS.IMPORT") | {"added_by_vendor": [1, {"x": None}]}
    action["result"]["also_new"] = True
    decoded = decode(action)
    assert decoded.id == action["id"]
    assert "added_by_vendor" not in actions.encode(decoded).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "NOT.A_TYPE"}, "Invalid value 'NOT.A_TYPE' - at `$.type`"),
        ({"status": "CANCELLED"}, "at `$.status`"),
        ({"progress": "half"}, "Expected `int | null`, got `str` - at `$.progress`"),
        ({"id": None}, "Expected `str`, got `null` - at `$.id`"),
        ({"created_at": "yesterday"}, "at `$.created_at`"),
    ],
)
def test_invalid_fields_name_their_path(change: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        decode(samples.sample("VOUCHERS.IMPORT") | change)
    assert message in str(error.value)


def test_nested_wrong_type_names_the_nested_path() -> None:
    action = samples.sample("VOUCHERS.IMPORT_CSV", status="FAILED")
    action["result"]["failed"][1]["row"] = "seven"
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.result\.failed\[1\]\.row`"):
        decode(action)


@settings(max_examples=200, deadline=None)
@given(
    type_=st.sampled_from(actions.TYPES),
    status=st.sampled_from(["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"]),
    progress=st.none() | st.integers(0, 100),
    processing_time=st.none() | st.integers(0, 2**53),
)
def test_any_valid_action_round_trips(
    type_: str, status: str, progress: int | None, processing_time: int | None
) -> None:
    payload = samples.sample(type_, status=status)
    payload["processing_time"] = processing_time
    payload["progress"] = progress
    decoded = decode(payload)
    again = actions.decode(actions.encode(decoded))
    assert again == decoded
    assert again.type == type_
    assert again.progress == progress


@settings(max_examples=200, deadline=None)
@given(
    junk=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_either_decodes_or_raises_validation_error(junk: Any) -> None:
    payload = samples.sample("VOUCHERS.IMPORT")
    payload["result"] = junk
    try:
        decode(payload)
    except msgspec.ValidationError as error:
        assert "$.result" in str(error)


# --- ids: printable, checked after the decode (issue 15) ---------------------------------


class _PatternIds(msgspec.Struct):
    """The ids as checked until issue 15: msgspec's ``Meta(pattern=...)``."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=actions.ID_PATTERN)]
    request_id: (
        Annotated[str, msgspec.Meta(max_length=256, pattern=actions.ID_TEXT_PATTERN)] | None
    ) = None


_TRICKY_IDS = [
    "",
    "a",
    "a\n",
    "\n",
    "a\r\n",
    "a\x7f",
    "\x85b",
    "a\u2028",
    "\u202e",
    "a\u00a0b",
    "zażółć_日本",
    "a" * 256,
    "a" * 257,
    "\x00" * 257,
    "\U0010ffff",
    "a\u2069",
]
_IDS = st.sampled_from(_TRICKY_IDS) | st.text(max_size=8) | st.text(min_size=250, max_size=260)


def _refusal(body: bytes, decode: Any) -> str | None:
    try:
        decode(body)
    except msgspec.ValidationError as error:
        return str(error)
    return None


@settings(max_examples=300, deadline=None)
@given(value=_IDS, field=st.sampled_from(["id", "request_id"]))
def test_ids_are_refused_as_the_pattern_refused_them(value: str, field: str) -> None:
    # Same decision and message as before, whichever of the two ids it is.
    body = msgspec.json.encode(samples.sample("VOUCHERS.IMPORT") | {field: value})
    reference = msgspec.json.Decoder(_PatternIds).decode
    assert _refusal(body, actions.decode) == _refusal(body, reference)
