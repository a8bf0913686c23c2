"""Realistic async action objects of every type, for ``fanout send`` and the tests.

They follow what the sender really sends (arrays where the docs say object,
``null`` where a value is missing), not only what the docs say.
"""

from __future__ import annotations

import functools
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from . import actions, results
from .clock import iso

_NOUNS = {
    "CAMPAIGN": "voucher(s)",
    "CAMPAIGNS": "campaign(s)",
    "CUSTOMERS": "customer(s)",
    "PRODUCTS": "product(s)",
    "SKUS": "sku(s)",
    "VOUCHERS": "voucher(s)",
    "ORDERS": "order(s)",
}

_FAILURE_VALUES: dict[str, Any] = {
    "code": "SUMMER-0042",
    "row": 7,
    "source_id": "src_0042",
    "reason": "Duplicate resource key",
}


@functools.cache
def _field_type(cls: type[Any], name: str) -> Any:
    return next(f.type for f in msgspec.structs.fields(cls) if f.name == name)


def _member(optional: Any) -> Any:
    """``X`` of ``X | ... | None`` (or of ``list[X] | ... | None``)."""
    first = optional.__args__[0]
    return first.__args__[0] if getattr(first, "__origin__", None) is list else first


def _failures(record: type[results._Record], count: int) -> list[dict[str, Any]]:
    names = record.__struct_fields__
    out = []
    for n in range(count):
        item = {name: _FAILURE_VALUES[name] for name in names}
        if "row" in item:
            item["row"] = n + 2
        if "code" in item:
            item["code"] = f"SUMMER-{n:04d}"
        out.append(item)
    return out


def _result_class(type_: str) -> type[Any]:
    result_class: type[Any] = _member(_field_type(actions.BY_TYPE[type_], "result"))
    return result_class


def result_for(type_: str, *, done: int = 40, failed: int = 2) -> dict[str, Any]:
    """A result of ``type_`` with ``done`` processed and ``failed`` failed records."""
    cls: Any = _result_class(type_)
    noun = _NOUNS[type_.split(".", 1)[0]]
    if cls is results.CountResult:
        return {"message": f"{done} {noun} processed successfully.", "done_count": done}
    if issubclass(cls, results._ImportResult):
        record = _member(_field_type(cls, "failed"))
        return {
            "message": f"{done} {noun} imported successfully, {failed} failed.",
            "failed": _failures(record, failed),
            "done_count": done,
            "failed_count": failed,
        }
    error_cls = _member(_field_type(cls, "errors"))
    errors = []
    for n in range(failed):
        error = {
            "message": "Resource not found",
            "details": f"Cannot find resource with id item_{n}",
            "key": "not_found",
        }
        for extra in ("source_id", "code"):
            if extra in error_cls.__struct_fields__:
                error[extra] = _FAILURE_VALUES[extra]
        errors.append(error)
    till = datetime.now(UTC) + timedelta(days=7)
    return {
        "done_count": done,
        "failed_count": failed,
        "reports": [f"https://download.voucherify.io/v1/reports/rep_{secrets.token_hex(8)}.csv"],
        "reports_available_till": iso(till),
        "errors": errors,
    }


def sample(
    type_: str,
    *,
    status: str = "DONE",
    id_: str | None = None,
    request_id: str | None = None,
    progress: int | None = None,
) -> dict[str, Any]:
    """One async action object as the sender posts it."""
    if type_ not in actions.BY_TYPE:
        raise KeyError(f"unknown async action type {type_!r}; one of {', '.join(actions.TYPES)}")
    created = datetime.now(UTC) - timedelta(seconds=3)
    updated = datetime.now(UTC)
    completed = status in actions.COMPLETED_STATUSES
    body: dict[str, Any] = {
        "id": id_ or f"aa_{secrets.token_hex(9)}",
        "type": type_,
        "status": status,
        "operation_status": {"DONE": "SUCCESS", "FAILED": "FAILED"}.get(status, "UNKNOWN"),
        "created_at": iso(created),
        "updated_at": iso(updated),
        "request_id": request_id or f"v-{secrets.token_hex(9)}",
        "processing_time": 755 if completed else None,
        "progress": (100 if completed else 0) if progress is None else progress,
        "object": "async_action",
    }
    if completed:
        body["result"] = result_for(type_, done=40 if status == "DONE" else 0)
    return body
