"""The ``result`` of a completion event: one Struct per shape the vendor sends.

``event.result`` of a ``CompletionEvent`` is the Struct of its async action
type (``VoucherImportResult`` for ``VOUCHERS.IMPORT``, ``CountResult`` for the
purges, ...), with its failed records and update errors typed::

    from service.results import OrderImportResult, VoucherImportResult

``__all__`` is ``service.domain.results``'s, where they are defined.
"""

from .domain import results as _results
from .domain.results import *  # noqa: F403

__all__: list[str] = []
__all__ += _results.__all__
