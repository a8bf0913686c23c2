"""Test consumer handlers: typed sample events, a handler run in process, a pytest plugin.

- ``sample("VOUCHERS.IMPORT", status="FAILED")``: the typed event a handler
  receives for a sample of any type (the samples of ``fanout send --sample``);
  ``from_body(body)`` the same for a body of your own (a captured delivery);
- ``await deliver(handler, *events)``: the handler run on them as
  ``Consumer.run`` would (the entry fields the publisher writes, the consumer's
  own decoding and ack / retry / poison rules), without Redis; the answer says
  what was acknowledged, retried and poisoned;
- the pytest plugin ``service.testing.plugin`` (registered by the package's
  ``pytest11`` entry point: installing the package is all it takes) gives the
  ``fanout`` fixture, a real Redis (an embedded Valkey) with a publisher, to run
  a real ``Consumer`` in an integration test.

docs/consumers.md ("Testing a handler") shows a whole test file.
"""

import typing

from .delivery import Delivered, Failure, Poisoned, RawEntry, deliver
from .samples import SAMPLE_TYPES, ActionType, SampleRefused, entry_fields, from_body, sample

if typing.TYPE_CHECKING:
    from .live import Fanout


def __getattr__(name: str) -> typing.Any:
    # Fanout drives the receiver's publisher (and its metrics): loaded when first named, so
    # samples and deliver() need only the consumer library's dependencies.
    if name == "Fanout":
        from .live import Fanout

        return Fanout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SAMPLE_TYPES",
    "ActionType",
    "Delivered",
    "Failure",
    "Fanout",
    "Poisoned",
    "RawEntry",
    "SampleRefused",
    "deliver",
    "entry_fields",
    "from_body",
    "sample",
]
