"""Decode time per message: the service's msgspec decoder against a pydantic v2 union.

    python -m bench.decode [--messages 20000] [--repeat 5]

Both decode the same corpus of signed-sample bodies of all 22 types into typed
objects; the best of several passes is reported. Then the receiver's own decode
(``inbound.decode``: one body, classified and decoded by kind) on those
async actions and on envelopes of the 72 webhook event types (the vendor's
example data; data parsed, typed and digested), against pydantic v2 on the same
shapes: the envelope (``bench.alternative.Envelope``, data a dict), then the
data validated into the model of its event type (``bench.shapes``: the same
fields as the service's Structs). pydantic computes no digest, so the envelopes
are also decoded without the dedup digest (``webhooks.content_digest``:
re-encoding the parsed data and hashing it), which the ratio then leaves out.
"""

from __future__ import annotations

import argparse
import time

import msgspec

from bench import corpus, shapes
from bench.alternative import ADAPTER, ENVELOPE
from service.domain import actions, inbound, webhook_data, webhook_samples, webhooks

MODELS = {type_: shapes.model(struct) for type_, struct in webhook_data.BY_TYPE.items()}


def pydantic_envelope(body: bytes) -> object:
    """What ``inbound.decode`` does to an envelope, in pydantic: envelope, then typed data."""
    envelope = ENVELOPE.validate_json(body)
    distribution = envelope.source is not None and envelope.source.object == "distribution"
    event_type = envelope.event.type if distribution and envelope.event else envelope.type
    model = MODELS.get(webhooks.canonical_type(event_type or ""))
    if model is None:
        return None
    try:
        return model.model_validate(envelope.data)
    except ValueError:  # drift: the envelope is still accepted
        return None


def without_digest(bodies: list[bytes], repeat: int) -> float:
    """``best`` for ``inbound.decode`` with the dedup digest left out (a constant)."""
    digest = webhooks.content_digest
    webhooks.content_digest = lambda type_, id_, data: ""
    try:
        return best(inbound.decode, bodies, repeat)
    finally:
        webhooks.content_digest = digest


def best(fn: object, bodies: list[bytes], repeat: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for body in bodies:
            fn(body)
        times.append(time.perf_counter() - start)
    return min(times) / len(bodies) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bodies = corpus.bodies(args.messages)
    for body in bodies[:100]:  # same answer from both
        assert actions.decode(body).id == ADAPTER.validate_json(body).id
    service = best(actions.decode, bodies, args.repeat)
    pydantic = best(ADAPTER.validate_json, bodies, args.repeat)
    size = sum(map(len, bodies)) / len(bodies)
    print(f"{len(bodies)} messages of {len(actions.TYPES)} types, {size:.0f} bytes on average")
    print(f"  msgspec (service)  {service:6.2f} us/message")
    print(f"  pydantic v2 union  {pydantic:6.2f} us/message")
    print(f"  service is {pydantic / service:.1f}x faster (target >= 3x)")

    envelopes = [
        msgspec.json.encode(webhook_samples.envelope(t))
        for t in webhook_samples.TYPES * (args.messages // len(webhook_samples.TYPES))
    ]
    for body in envelopes[: len(webhook_samples.TYPES)]:  # same verdict from both
        delivery = inbound.decode(body)
        assert isinstance(delivery, webhooks.WebhookDelivery)
        assert delivery.schema_valid == (pydantic_envelope(body) is not None)
    as_action = best(inbound.decode, bodies, args.repeat)
    as_envelope = best(inbound.decode, envelopes, args.repeat)
    no_digest = without_digest(envelopes, args.repeat)
    envelope_pydantic = best(pydantic_envelope, envelopes, args.repeat)
    envelope_size = sum(map(len, envelopes)) / len(envelopes)
    print("receiver decode (inbound.decode), async action or envelope:")
    print(f"  async action         {as_action:6.2f} us/message ({size:.0f} bytes on average)")
    print(
        f"  webhook envelope     {as_envelope:6.2f} us/message "
        f"({envelope_size:.0f} bytes on average, {len(webhook_samples.TYPES)} types)"
    )
    print(f"  same envelopes without the dedup digest {no_digest:6.2f} us/message")
    print(f"  same envelopes, pydantic v2 {envelope_pydantic:6.2f} us/message")
    print(
        f"  envelope decode is {envelope_pydantic / as_envelope:.1f}x faster than pydantic"
        f" (target >= 3x), {envelope_pydantic / no_digest:.1f}x without the digest"
        " (pydantic computes none)"
    )


if __name__ == "__main__":
    main()
