"""The result part of an async action: counts, failed records, update errors.

One Struct per shape the vendor's ``result`` takes; ``actions`` names which
result each async action type carries. ``_VoucherImportResultAsSent`` and
``_OrderImportResultAsSent`` are the wire structs of the two results whose
``failed`` arrives in more than one shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeAlias

import msgspec

#: The public names, re-exported by ``service.results``.
__all__ = [
    "CampaignVoucherImportResult",
    "CountResult",
    "CustomerBulkUpdateResult",
    "CustomerCsvImportFailure",
    "CustomerCsvImportResult",
    "CustomerUpdateError",
    "MetadataUpdateResult",
    "OrderImportFailure",
    "OrderImportResult",
    "ProductBulkUpdateResult",
    "ProductCsvImportFailure",
    "ProductCsvImportResult",
    "ProductUpdateError",
    "Result",
    "SkuCsvImportFailure",
    "SkuCsvImportResult",
    "UpdateError",
    "VoucherBulkUpdateResult",
    "VoucherCsvImportFailure",
    "VoucherCsvImportResult",
    "VoucherImportFailure",
    "VoucherImportResult",
    "VoucherUpdateError",
]

# Integers are held to 64 bits: a 20-digit "progress" is invalid input (422, dead
# letter), not a number that breaks an encoder further on (found by fuzzing).
Int64: TypeAlias = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Record(msgspec.Struct, omit_defaults=True):
    """Base of result parts: absent fields stay absent when re-encoded."""


# --- failed records of imports ---------------------------------------------


class VoucherImportFailure(_Record):
    code: str | None = None
    reason: str | None = None


class VoucherCsvImportFailure(_Record):
    code: str | None = None
    row: Int64 | None = None
    reason: str | None = None


class CustomerCsvImportFailure(_Record):
    source_id: str | None = None
    row: Int64 | None = None
    reason: str | None = None


class ProductCsvImportFailure(_Record):
    row: Int64 | None = None
    source_id: str | None = None
    reason: str | None = None


class SkuCsvImportFailure(_Record):
    row: Int64 | None = None
    reason: str | None = None


class OrderImportFailure(_Record):
    source_id: str | None = None
    reason: str | None = None


# --- errors of bulk and metadata updates -----------------------------------


class UpdateError(_Record):
    message: str | None = None
    details: str | None = None
    key: str | None = None


class CustomerUpdateError(UpdateError):
    source_id: str | None = None


class ProductUpdateError(UpdateError):
    source_id: str | None = None


class VoucherUpdateError(UpdateError):
    code: str | None = None


# --- results ----------------------------------------------------------------


class CountResult(_Record):
    """Result of updates, deletes, generation and metadata key purges."""

    message: str | None = None
    done_count: Int64 | None = None


class _ImportResult(_Record):
    message: str | None = None
    done_count: Int64 | None = None
    failed_count: Int64 | None = None


class CampaignVoucherImportResult(_ImportResult):
    failed: list[VoucherImportFailure] | None = None


class VoucherCsvImportResult(_ImportResult):
    failed: list[VoucherCsvImportFailure] | None = None


class CustomerCsvImportResult(_ImportResult):
    failed: list[CustomerCsvImportFailure] | None = None


class ProductCsvImportResult(_ImportResult):
    failed: list[ProductCsvImportFailure] | None = None


class SkuCsvImportResult(_ImportResult):
    failed: list[SkuCsvImportFailure] | None = None


class VoucherImportResult(_ImportResult):
    failed: list[VoucherImportFailure] | None = None


class OrderImportResult(_ImportResult):
    failed: list[OrderImportFailure] | None = None


# The two results whose ``failed`` the vendor documents as an object and sends as an
# array of objects. They are decoded as sent, into these private wire structs that
# accept both, and the action replaces them at once by the public classes above,
# whose ``failed`` is always a list (or None), as published.


class _VoucherImportResultAsSent(_ImportResult):
    failed: list[VoucherImportFailure] | VoucherImportFailure | None = None

    def public(self) -> VoucherImportResult:
        failed = [self.failed] if isinstance(self.failed, VoucherImportFailure) else self.failed
        return VoucherImportResult(self.message, self.done_count, self.failed_count, failed)


class _OrderImportResultAsSent(_ImportResult):
    failed: list[OrderImportFailure] | OrderImportFailure | None = None

    def public(self) -> OrderImportResult:
        failed = [self.failed] if isinstance(self.failed, OrderImportFailure) else self.failed
        return OrderImportResult(self.message, self.done_count, self.failed_count, failed)


class _UpdateResult(_Record):
    """Bulk and metadata updates: counts, downloadable reports and errors."""

    done_count: Int64 | None = None
    failed_count: Int64 | None = None
    reports: list[str] | None = None
    reports_available_till: datetime | None = None
    operation_status: str | None = None


class MetadataUpdateResult(_UpdateResult):
    errors: list[UpdateError] | None = None


class CustomerBulkUpdateResult(_UpdateResult):
    errors: list[CustomerUpdateError] | None = None


class ProductBulkUpdateResult(_UpdateResult):
    errors: list[ProductUpdateError] | None = None


class VoucherBulkUpdateResult(_UpdateResult):
    errors: list[VoucherUpdateError] | None = None


Result: TypeAlias = (
    CountResult
    | CampaignVoucherImportResult
    | VoucherCsvImportResult
    | CustomerCsvImportResult
    | ProductCsvImportResult
    | SkuCsvImportResult
    | VoucherImportResult
    | OrderImportResult
    | MetadataUpdateResult
    | CustomerBulkUpdateResult
    | ProductBulkUpdateResult
    | VoucherBulkUpdateResult
)
