"""Output of the operator commands: rich tables and JSON lines for events and dead letters.

rich is imported only when a table is drawn. Nothing a sender or another program
wrote reaches the terminal raw: table cells are plain text (never rich markup)
with control characters escaped, JSON lines escape what JSON itself leaves raw
(``domain.text``).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..domain import clock
from ..domain.entries import decode_event
from ..domain.text import escape, escape_json
from ..domain.webhooks import WebhookEvent
from ..streams import replies
from ..streams.dead_letters import DeadLetter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    entry_id: str
    fields: dict[bytes, bytes]

    @property
    def order(self) -> tuple[int, int]:
        return replies.order(self.entry_id)


def console(stderr: bool = False) -> Console:
    """A rich console; wide when not a terminal, so piped tables keep one row per line."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def cells(values: Iterable[str]) -> list[Text]:
    """Table cells that show ``values`` as they are: no markup, control characters escaped."""
    from rich.text import Text

    return [Text(escape(value)) for value in values]


def json_line(value: object) -> str:
    """One JSON text for stdout, safe on a terminal."""
    return escape_json(msgspec.json.encode(value).decode())


def printer(*, json: bool, dead: bool) -> Callable[[list[Entry], bool], None]:
    """Prints a batch of entries; the bool says whether it is the first (with the header)."""
    if json:
        return lambda entries, first: print_json(entries, dead=dead)
    out = console()
    return lambda entries, first: print_table(out, entries, dead=dead, header=first)


def dead_letter_object(entry: Entry) -> dict[str, Any]:
    return DeadLetter.from_fields(entry.fields).as_object(entry.entry_id)


def print_json(entries: list[Entry], *, dead: bool) -> None:
    for entry in entries:
        if dead:
            line = json_line(dead_letter_object(entry))
        else:
            line = escape_json(replies.text(entry.fields.get(b"event")))
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def event_table(header: bool = True) -> Table:
    from rich.table import Table

    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width in (
        ("time", 24),
        ("type", 27),
        ("status", 11),
        ("id", 24),
        ("request_id", 22),
        ("progress", 8),
        ("done", 6),
        ("failed", 6),
    ):
        justify: Any = "right" if name in ("progress", "done", "failed") else "left"
        table.add_column(name, width=width, min_width=width, no_wrap=True, justify=justify)
    return table


def dead_table(header: bool = True) -> Table:
    from rich.table import Table

    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width in (("entry_id", 16), ("time", 24), ("reason", 15), ("sha256", 12)):
        table.add_column(name, width=width, min_width=width, no_wrap=True)
    table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=80)
    return table


def event_row(entry: Entry) -> list[str]:
    fields = entry.fields
    row = [
        clock.of_entry_id(entry.entry_id),
        replies.text(fields.get(b"type")),
        replies.text(fields.get(b"status")),
        replies.text(fields.get(b"id")),
        replies.text(fields.get(b"request_id")),
        "",
        "",
        "",
    ]
    try:
        event = decode_event(fields)
    except (msgspec.DecodeError, msgspec.ValidationError):
        row[5] = "?"
        return row
    if isinstance(event, WebhookEvent):  # no status or counts: say whether the data fit
        row[2] = "valid" if event.schema_valid else "drift"
        return row
    row[5:] = [
        "" if value is None else str(value)
        for value in (event.progress, event.done_count, event.failed_count)
    ]
    return row


def dead_row(entry: Entry) -> list[str]:
    letter = DeadLetter.from_fields(entry.fields)
    return [
        entry.entry_id,
        letter.received_at or clock.of_entry_id(entry.entry_id),
        letter.reason,
        letter.sha256[:12],
        letter.detail.replace("\n", " "),
    ]


def print_table(out: Console, entries: list[Entry], *, dead: bool, header: bool) -> None:
    if not entries and not header:
        return
    table = dead_table(header) if dead else event_table(header)
    for entry in entries:
        table.add_row(*cells(dead_row(entry) if dead else event_row(entry)))
    out.print(table)
    if header and not entries:
        out.print("(no entries)")
    out.file.flush()
