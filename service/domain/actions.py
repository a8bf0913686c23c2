"""Inbound model: the Voucherify async action object, one tagged Struct per type.

The shapes follow the vendor's documentation of the async action object, widened
where real payloads differ from it (each widening has a test in
``tests/domain/test_actions.py``). Every field other than ``id``, ``type`` and ``status``
is optional: list responses and ENQUEUED/IN_PROGRESS updates carry no ``result``,
and the vendor adds fields over time (unknown fields are ignored).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, get_args

import msgspec

from .ids import (  # noqa: F401 (importable from here as before)
    ID_PATTERN,
    ID_TEXT_PATTERN,
    MAX_ID_LENGTH,
    Id,
    IdText,
    refuse_unprintable,
)
from .results import (
    CampaignVoucherImportResult,
    CountResult,
    CustomerBulkUpdateResult,
    CustomerCsvImportResult,
    Int64,
    MetadataUpdateResult,
    OrderImportResult,
    ProductBulkUpdateResult,
    ProductCsvImportResult,
    Result,
    SkuCsvImportResult,
    VoucherBulkUpdateResult,
    VoucherCsvImportResult,
    VoucherImportResult,
    _OrderImportResultAsSent,
    _VoucherImportResultAsSent,
)

Status: TypeAlias = Literal["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"]
COMPLETED_STATUSES = frozenset({"DONE", "FAILED"})


# --- the async action -------------------------------------------------------


class AsyncAction(msgspec.Struct, tag_field="type", kw_only=True):
    """Fields shared by every async action type."""

    id: Id
    status: Status
    operation_status: str | None = None
    request_id: IdText | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    processing_time: Int64 | None = None
    progress: Int64 | None = None
    object: str = "async_action"
    #: An async action names no project (an envelope does: ``WebhookDelivery.project_id``).
    project_id: ClassVar[None] = None
    result: Result | None = None

    @property
    def type(self) -> str:
        tag = type(self).__struct_config__.tag
        assert isinstance(tag, str)
        return tag

    @property
    def completed(self) -> bool:
        return self.status in COMPLETED_STATUSES


class CampaignVouchersImport(AsyncAction, tag="CAMPAIGN.VOUCHERS_IMPORT"):
    result: CampaignVoucherImportResult | None = None


class CampaignVouchersImportCsv(AsyncAction, tag="CAMPAIGN.VOUCHERS_IMPORT_CSV"):
    result: VoucherCsvImportResult | None = None


class CampaignVouchersUpdate(AsyncAction, tag="CAMPAIGN.VOUCHERS_UPDATE"):
    result: CountResult | None = None


class CampaignVouchersDelete(AsyncAction, tag="CAMPAIGN.VOUCHERS_DELETE"):
    result: CountResult | None = None


class CampaignVouchersGenerate(AsyncAction, tag="CAMPAIGN.VOUCHERS_GENERATE"):
    result: CountResult | None = None


class CampaignsMetadataKeyPurge(AsyncAction, tag="CAMPAIGNS.METADATA_KEY_PURGE"):
    result: CountResult | None = None


class CustomersImportCsv(AsyncAction, tag="CUSTOMERS.IMPORT_CSV"):
    result: CustomerCsvImportResult | None = None


class CustomersBulkUpdate(AsyncAction, tag="CUSTOMERS.BULK_UPDATE"):
    result: CustomerBulkUpdateResult | None = None


class CustomersMetadataUpdate(AsyncAction, tag="CUSTOMERS.METADATA_UPDATE"):
    result: MetadataUpdateResult | None = None


class CustomersMetadataKeyPurge(AsyncAction, tag="CUSTOMERS.METADATA_KEY_PURGE"):
    result: CountResult | None = None


class ProductsBulkUpdate(AsyncAction, tag="PRODUCTS.BULK_UPDATE"):
    result: ProductBulkUpdateResult | None = None


class ProductsMetadataUpdate(AsyncAction, tag="PRODUCTS.METADATA_UPDATE"):
    result: MetadataUpdateResult | None = None


class ProductsMetadataKeyPurge(AsyncAction, tag="PRODUCTS.METADATA_KEY_PURGE"):
    result: CountResult | None = None


class ProductsImportCsv(AsyncAction, tag="PRODUCTS.IMPORT_CSV"):
    result: ProductCsvImportResult | None = None


class SkusImportCsv(AsyncAction, tag="SKUS.IMPORT_CSV"):
    result: SkuCsvImportResult | None = None


class VouchersImport(AsyncAction, tag="VOUCHERS.IMPORT"):
    # msgspec decodes the wire struct; once decoded the result is the public class.
    if TYPE_CHECKING:
        result: VoucherImportResult | None = None
    else:
        result: _VoucherImportResultAsSent | None = None

    def __post_init__(self) -> None:
        if isinstance(self.result, _VoucherImportResultAsSent):
            self.result = self.result.public()


class VouchersImportCsv(AsyncAction, tag="VOUCHERS.IMPORT_CSV"):
    result: VoucherCsvImportResult | None = None


class VouchersBulkUpdate(AsyncAction, tag="VOUCHERS.BULK_UPDATE"):
    result: VoucherBulkUpdateResult | None = None


class VouchersMetadataUpdate(AsyncAction, tag="VOUCHERS.METADATA_UPDATE"):
    result: MetadataUpdateResult | None = None


class VouchersMetadataKeyPurge(AsyncAction, tag="VOUCHERS.METADATA_KEY_PURGE"):
    result: CountResult | None = None


class OrdersImport(AsyncAction, tag="ORDERS.IMPORT"):
    if TYPE_CHECKING:
        result: OrderImportResult | None = None
    else:
        result: _OrderImportResultAsSent | None = None

    def __post_init__(self) -> None:
        if isinstance(self.result, _OrderImportResultAsSent):
            self.result = self.result.public()


class OrdersMetadataKeyPurge(AsyncAction, tag="ORDERS.METADATA_KEY_PURGE"):
    result: CountResult | None = None


#: Every async action type, in the vendor's documented order: the one list of them
#: (``ACTION_TYPES``, ``TYPES``, ``BY_TYPE``, the event classes are derived from it).
AnyAction: TypeAlias = (
    CampaignVouchersImport
    | CampaignVouchersImportCsv
    | CampaignVouchersUpdate
    | CampaignVouchersDelete
    | CampaignVouchersGenerate
    | CampaignsMetadataKeyPurge
    | CustomersImportCsv
    | CustomersBulkUpdate
    | CustomersMetadataUpdate
    | CustomersMetadataKeyPurge
    | ProductsBulkUpdate
    | ProductsMetadataUpdate
    | ProductsMetadataKeyPurge
    | ProductsImportCsv
    | SkusImportCsv
    | VouchersImport
    | VouchersImportCsv
    | VouchersBulkUpdate
    | VouchersMetadataUpdate
    | VouchersMetadataKeyPurge
    | OrdersImport
    | OrdersMetadataKeyPurge
)

#: The result class events carry, where the action decodes a wire struct (``_...AsSent``).
PUBLISHED_RESULT: dict[type[AsyncAction], Any] = {
    VouchersImport: VoucherImportResult | None,
    OrdersImport: OrderImportResult | None,
}

ACTION_TYPES: tuple[type[AsyncAction], ...] = get_args(AnyAction)
#: Every type name, in the vendor's documented order.
TYPES: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in ACTION_TYPES)
BY_TYPE: dict[str, type[AsyncAction]] = dict(zip(TYPES, ACTION_TYPES, strict=True))

_decoder: msgspec.json.Decoder[AnyAction] = msgspec.json.Decoder(AnyAction)
_encoder = msgspec.json.Encoder()


def decode(body: bytes) -> AnyAction:
    """Decode one async action.

    Raises ``msgspec.ValidationError`` for JSON that is not a valid async action
    (the message names the path) and ``msgspec.DecodeError`` for bytes that are
    not JSON at all, or JSON that cannot be decoded safely: msgspec reports
    invalid UTF-8 inside some strings as ``UnicodeDecodeError`` and nesting
    deeper than the interpreter's recursion limit as ``RecursionError``; both
    are turned into ``DecodeError`` here so that they are dead-lettered, not a 500.
    """
    try:
        action = _decoder.decode(body)
    except UnicodeDecodeError as exc:
        raise msgspec.DecodeError(f"invalid UTF-8 in a string ({exc.reason})") from None
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply to decode") from None
    request_id = action.request_id
    # ``str.isprintable`` inline: nearly every id passes it (see ``text.printable``).
    if not action.id.isprintable() or (request_id and not request_id.isprintable()):
        refuse_unprintable(action.id, "$.id", ID_PATTERN)
        refuse_unprintable(request_id, "$.request_id")
    return action


def failure_reason(error: msgspec.DecodeError) -> str:
    """Dead-letter reason of a body ``decode`` refused: not JSON, unknown type, or invalid."""
    if not isinstance(error, msgspec.ValidationError):
        return "malformed_json"
    message = str(error)
    if message.endswith("at `$.type`") or "required field `type`" in message:
        return "unknown_type"
    return "invalid_payload"


class _TypeOnly(msgspec.Struct):
    type: str | None = None


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def type_label(body: bytes) -> str | None:
    """The metrics label of a body that did not decode: its type when it is one of
    ``TYPES``, ``"other"`` for a type this service does not know, None without one.
    (Bounded: a sender's own type names never become label values.)"""
    try:
        found = _type_decoder.decode(body).type
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if found is None:
        return None
    return found if found in BY_TYPE else "other"


def encode(action: AsyncAction) -> bytes:
    """Canonical JSON of a decoded action: what was understood, in field order."""
    return _encoder.encode(action)
