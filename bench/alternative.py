"""The usual alternative: FastAPI, a pydantic v2 discriminated union, SET NX then XADD.

What a team would write in an afternoon: verify the HMAC of the raw body, parse
into one of 22 models (else a webhook envelope, its data a plain dict),
remember the (id, request_id) with SET NX, append to the type's stream. Two
round trips, not atomic, no conflict detection, no durability wait.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model

TYPES = [
    "CAMPAIGN.VOUCHERS_IMPORT",
    "CAMPAIGN.VOUCHERS_IMPORT_CSV",
    "CAMPAIGN.VOUCHERS_UPDATE",
    "CAMPAIGN.VOUCHERS_DELETE",
    "CAMPAIGN.VOUCHERS_GENERATE",
    "CAMPAIGNS.METADATA_KEY_PURGE",
    "CUSTOMERS.IMPORT_CSV",
    "CUSTOMERS.BULK_UPDATE",
    "CUSTOMERS.METADATA_UPDATE",
    "CUSTOMERS.METADATA_KEY_PURGE",
    "PRODUCTS.BULK_UPDATE",
    "PRODUCTS.METADATA_UPDATE",
    "PRODUCTS.METADATA_KEY_PURGE",
    "PRODUCTS.IMPORT_CSV",
    "SKUS.IMPORT_CSV",
    "VOUCHERS.IMPORT",
    "VOUCHERS.IMPORT_CSV",
    "VOUCHERS.BULK_UPDATE",
    "VOUCHERS.METADATA_UPDATE",
    "VOUCHERS.METADATA_KEY_PURGE",
    "ORDERS.IMPORT",
    "ORDERS.METADATA_KEY_PURGE",
]


class Failure(BaseModel):
    code: str | None = None
    row: int | None = None
    source_id: str | None = None
    reason: str | None = None


class UpdateError(BaseModel):
    message: str | None = None
    details: str | None = None
    key: str | None = None
    source_id: str | None = None
    code: str | None = None


class Result(BaseModel):
    message: str | None = None
    done_count: int | None = None
    failed_count: int | None = None
    failed: list[Failure] | Failure | None = None
    errors: list[UpdateError] | None = None
    reports: list[str] | None = None
    reports_available_till: datetime | None = None


class Base(BaseModel):
    id: str
    status: Literal["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"]
    operation_status: str | None = None
    request_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    processing_time: int | None = None
    progress: int | None = None
    result: Result | None = None


MODELS: list[Any] = [
    create_model(t.replace(".", "_"), __base__=Base, type=(Literal[t], ...)) for t in TYPES
]
Action = Annotated[Union[tuple(MODELS)], Field(discriminator="type")]  # noqa: UP007
ADAPTER: TypeAdapter[Any] = TypeAdapter(Action)


class Source(BaseModel):
    id: str | None = None
    object: str | None = None
    target_url: str | None = None


class EventInfo(BaseModel):
    id: str | None = None
    type: str | None = None
    created_at: str | None = None
    entity_id: str | None = None
    group_id: str | None = None
    event_source: dict[str, Any] | None = None


class Envelope(BaseModel):
    id: str
    project_id: str | None = None
    created_at: str | None = None
    type: str
    data: dict[str, Any]
    source: Source | None = None
    event: EventInfo | None = None


ENVELOPE: TypeAdapter[Envelope] = TypeAdapter(Envelope)

SECRET = os.environ.get("FANOUT_SECRETS", "bench-secret").encode()
app = FastAPI()
redis = aioredis.Redis.from_url(os.environ.get("FANOUT_REDIS_URL", "redis://127.0.0.1:6379"))


@app.post("/webhooks/voucherify", status_code=202)
async def receive(request: Request, response: Response) -> dict[str, Any]:
    body = await request.body()
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-voucherify-signature", "")):
        raise HTTPException(401, "invalid signature")
    try:
        action = ADAPTER.validate_json(body)
    except ValidationError:
        return await receive_envelope(ENVELOPE.validate_json(body), response)
    key = f"alt:seen:{action.id}:{action.request_id or ''}"
    if not await redis.set(key, "1", nx=True, ex=604800):
        response.status_code = 200
        return {"status": "duplicate", "id": action.id}
    stream = f"alt:{{{action.type}}}:completed"
    entry_id = await redis.xadd(
        stream,
        {
            "type": action.type,
            "status": action.status,
            "id": action.id,
            "request_id": action.request_id or "",
            "event": action.model_dump_json(),
        },
        maxlen=1_000_000,
        approximate=True,
    )
    return {"status": "accepted", "id": action.id, "entry_id": entry_id.decode()}


async def receive_envelope(envelope: Envelope, response: Response) -> dict[str, Any]:
    event = envelope.event or EventInfo()
    distribution = envelope.source is not None and envelope.source.object == "distribution"
    type_ = (event.type if distribution else envelope.type) or envelope.type
    id_ = event.id or envelope.id
    key = f"alt:eseen:{type_}:{id_}:{event.group_id or ''}"
    if not await redis.set(key, "1", nx=True, ex=604800):
        response.status_code = 200
        return {"status": "duplicate", "id": id_}
    entry_id = await redis.xadd(
        f"alt:{{{type_}}}:events",
        {
            "type": type_,
            "id": id_,
            "request_id": event.group_id or "",
            "sendout_id": envelope.id,
            "event": envelope.model_dump_json(),
        },
        maxlen=1_000_000,
        approximate=True,
    )
    return {"status": "accepted", "id": id_, "entry_id": entry_id.decode()}
