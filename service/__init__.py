"""voucherify-fanout: Voucherify webhooks (async actions and webhook events) to typed streams.

The downstream API: read the streams with ``Consumer`` (or decode an entry you
read yourself with ``decode_event``) and ``match`` on the typed events: a
``CompletionEvent`` (one subclass per async action type, ``EVENT_BY_TYPE``)
whose ``result`` is a Struct of ``service.results``, a ``WebhookEvent``
whose ``data`` is a Struct of ``service.webhook_data``, or a ``CustomEvent``
(a custom body: ``body`` its JSON values). Importing it loads neither
starlette, uvicorn, prometheus_client nor rich.

The root holds what a consumer uses every day; families of types have their
own namespace, each with its ``__all__``:

- ``service.results``: the result Structs of the 22 async action types;
- ``service.webhook_data``: the ``Event...Data`` Structs of the 72 webhook
  event types and their nested Structs;
- ``service.domain.actions``: the inbound async action Structs (what
  Voucherify posts), for code that decodes bodies itself;
- ``service.errors``: ``FanoutError`` and the map of every exception.
"""

from . import results as results
from . import webhook_data as webhook_data
from .consumer import Consumer, Handler, NoRedis, open_redis
from .domain.actions import TYPES, Status
from .domain.completion import EVENT_BY_TYPE, SCHEMA_VERSION, AnyEvent, CompletionEvent
from .domain.custom import CustomEvent
from .domain.entries import StreamEvent, decode_event
from .domain.webhook_data import BY_TYPE as WEBHOOK_BY_TYPE
from .domain.webhook_data import WebhookData
from .domain.webhooks import Source as WebhookSource
from .domain.webhooks import WebhookEvent
from .errors import FanoutError

__version__ = "0.1.0"

__all__ = [
    "EVENT_BY_TYPE",
    "SCHEMA_VERSION",
    "TYPES",
    "WEBHOOK_BY_TYPE",
    "AnyEvent",
    "CompletionEvent",
    "Consumer",
    "CustomEvent",
    "FanoutError",
    "Handler",
    "NoRedis",
    "Status",
    "StreamEvent",
    "WebhookData",
    "WebhookEvent",
    "WebhookSource",
    "__version__",
    "decode_event",
    "open_redis",
]
