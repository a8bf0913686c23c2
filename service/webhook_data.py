"""The ``data`` of a webhook event: one Struct per documented event type.

``event.data`` of a ``WebhookEvent`` is the ``Event...Data`` Struct of its type
(``WebhookData`` is their base; a plain dict for an undocumented type), its
nested objects Structs of their own, field names as in Voucherify's JSON::

    from service.webhook_data import EventVoucherPublishedData

``BY_TYPE`` maps each event type to its Struct. Generated from the vendor's
OpenAPI document (``scripts/gen_webhook_types.py``), with its ``__all__``.
"""

from .domain import webhook_data as _webhook_data
from .domain.webhook_data import *  # noqa: F403

__all__: list[str] = []
__all__ += _webhook_data.__all__
