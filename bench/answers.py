"""What every load generator here checks: each answer a 2xx, no socket errors.

Apart from ``bench.run`` and ``bench.paced`` so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping


class BadAnswers(RuntimeError):
    """A target answered something other than 2xx."""


def check_statuses(url: str, statuses: Mapping[int, int], socket_errors: int = 0) -> None:
    bad = {status: n for status, n in statuses.items() if not 200 <= status < 300}
    if bad or socket_errors:
        raise BadAnswers(
            f"{url}: non-2xx answers {bad or 'none'}, socket errors {socket_errors}"
            f" (all answers: {dict(statuses)})"
        )
