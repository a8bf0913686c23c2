"""The one way times are written: RFC 3339 in UTC with milliseconds and a ``Z``.

Stream entries, dead letters, samples, the reconciler's mark and the operator
tables all show times like ``2026-11-01T08:00:00.123Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """``moment`` (timezone-aware) in UTC, to the millisecond, ending in ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> str:
    return iso(datetime.now(UTC))


def parse(value: str, default: datetime | None = None) -> datetime:
    """The time ``iso`` wrote (UTC assumed when no zone is given); ``default`` or now if invalid."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default or datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def of_entry_id(entry_id: bytes | str | None) -> str:
    """The time in a stream entry id (milliseconds since the epoch); empty for no id."""
    if not entry_id:
        return ""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    millis = int(text.split("-", 1)[0])
    return iso(datetime.fromtimestamp(millis / 1000, UTC))
