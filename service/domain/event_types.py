"""The webhook event types the service knows, each with its stream ``<P>:{<type>}:events``.

Three sources, one list (``KNOWN``), in this order:

- the 72 documented event types (``webhook_data.BY_TYPE``), data typed;
- the 17 the project-settings event list offers with no data schema in the
  vendor's document (``webhook_data.SCHEMALESS_TYPES``): data published untyped,
  ``schema_valid`` true (nothing documented to differ from), not drift;
- the 80 Workflows types (``workflow_data.BY_TYPE``: 14 card transaction types,
  66 Loyalty v2 activity types), sent with ``source.object == "workflow"``.

Streams, the dashboard, the gauges, ``fanout tail`` and ``Consumer(types=...)``
know these by name. Any other event type that arrives (drift: the "Send test
webhook" button, a type the vendor adds) still gets its stream; the gauges count
those streams together, in one bucket (``OTHER``).
"""

from __future__ import annotations

from .webhook_data import BY_TYPE as DOCUMENTED
from .webhook_data import SCHEMALESS_TYPES
from .workflow_data import BY_TYPE as WORKFLOW

#: Project-settings and distribution event types: documented, then schema-less.
WEBHOOK: tuple[str, ...] = (*DOCUMENTED, *SCHEMALESS_TYPES)
#: Every known event type: the webhook ones, then the Workflows ones.
KNOWN: tuple[str, ...] = (*WEBHOOK, *WORKFLOW)
SCHEMALESS: frozenset[str] = frozenset(SCHEMALESS_TYPES)
#: The label value that stands for the streams of every other event type.
OTHER = "other"

_KNOWN = frozenset(KNOWN)


def is_known(type_: str) -> bool:
    """Whether ``type_`` (canonical spelling) is one of ``KNOWN``."""
    return type_ in _KNOWN
