"""The ``data`` of a Workflows webhook event (Loyalty v2 transactions and activities).

A Workflows "Webhook callout" step posts the envelope with ``source.object ==
"workflow"``; ``event.data`` of its ``WebhookEvent`` is the Struct of its type
(``WorkflowData`` is their base; a plain dict for an undocumented type), field
names as in Voucherify's JSON::

    from service.workflow_data import CardTransactionData, MemberActivityData

``BY_TYPE`` maps each of the 80 documented types (14 card transaction types, 66
activity types) to its Struct; ``workflow_data_type`` looks one up. Generated
from the vendor's Loyalty v2 document (``scripts/gen_workflow_types.py``), with
its ``__all__``.
"""

from .domain import workflow_data as _workflow_data
from .domain.workflow_data import *  # noqa: F403

__all__: list[str] = []
__all__ += _workflow_data.__all__
