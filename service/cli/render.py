"""Output of the operator commands: rich tables and JSON lines for events and dead letters.

rich is imported only when a table is drawn. Nothing a sender or another program
wrote reaches the terminal raw: table cells are plain text (never rich markup)
with control characters escaped, JSON lines escape what JSON itself leaves raw
(``domain.text``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..domain import clock
from ..domain.custom import CustomEvent
from ..domain.entries import decode_event
from ..domain.text import escape, escape_json
from ..domain.webhooks import WebhookEvent
from ..streams import replies
from ..streams.dead_letters import DeadLetter
from ..streams.refusals import Refusal

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
    """A rich console as wide as the terminal or ``COLUMNS``; 160 columns when piped.

    Tables choose their columns to fit that width (``fit``), one row per line.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else None if stream.isatty() else 160
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def cells(values: Iterable[str]) -> list[Text]:
    """Table cells that show ``values`` as they are: no markup, control characters escaped."""
    from rich.text import Text

    return [Text(escape(value)) for value in values]


def json_line(value: object) -> str:
    """One JSON text for stdout, safe on a terminal."""
    return escape_json(msgspec.json.encode(value).decode())


# --- tables that fit the width ------------------------------------------------

_GAP = 2  # between two columns (rich's padding, no box)
_SHORT_TIME = 14  # "11-29 02:55:27": the time when the full one does not fit


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    width: int
    #: Lower is kept first when not every column fits.
    keep: int
    justify: Literal["left", "right"] = "left"
    #: Takes the width left over, from ``min_width`` up to ``width``; cropped with "…".
    flex: bool = False
    min_width: int = 0


@dataclass(frozen=True, slots=True)
class Layout:
    """The columns that fit, in display order, and which value of a row each shows."""

    columns: tuple[Column, ...]
    indexes: tuple[int, ...]

    def width_of(self, name: str) -> int | None:
        return next((c.width for c in self.columns if c.name == name), None)

    def table(self, header: bool = True) -> Table:
        from rich.table import Table

        table = Table(show_header=header, box=None, pad_edge=False)
        for column in self.columns:
            table.add_column(
                column.name,
                width=column.width,
                min_width=column.width,
                max_width=column.width,
                no_wrap=True,
                overflow="ellipsis",
                justify=column.justify,
            )
        return table

    def row(self, values: Sequence[str]) -> list[str]:
        out = []
        for column, index in zip(self.columns, self.indexes, strict=True):
            value = values[index]
            if column.name in ("time", "first entry", "last entry") and column.width < 24:
                value = f"{value[5:10]} {value[11:19]}" if len(value) >= 19 else value
            out.append(value)
        return out


def fit(columns: Sequence[Column], width: int) -> Layout:
    """The columns of ``columns`` that fit in ``width``, the ones with the lowest ``keep`` first.

    When not all fit at their widths, times are shortened to ``MM-DD HH:MM:SS``
    and the flexible column starts from its ``min_width``; it then gets what is
    left, up to its ``width``.
    """
    full = sum(c.width for c in columns) + _GAP * (len(columns) - 1)
    if full <= width:
        return Layout(tuple(columns), tuple(range(len(columns))))
    narrow = [
        replace(c, width=_SHORT_TIME)
        if c.name in ("time", "first entry", "last entry")
        else replace(c, width=c.min_width or c.width)
        if c.flex
        else c
        for c in columns
    ]
    chosen: set[int] = set()
    used = 0
    for index in sorted(range(len(narrow)), key=lambda i: narrow[i].keep):
        need = narrow[index].width + (_GAP if chosen else 0)
        if used + need <= width:
            chosen.add(index)
            used += need
    order = sorted(chosen)
    picked = [narrow[i] for i in order]
    left = width - used
    for n, column in enumerate(picked):
        if column.flex and left > 0:
            grown = min(columns[order[n]].width, column.width + left)
            left -= grown - column.width
            picked[n] = replace(column, width=grown)
    return Layout(tuple(picked), tuple(order))


def printer(
    *, json: bool, dead: bool, refused: bool = False
) -> Callable[[list[Entry], bool], None]:
    """Prints a batch of entries; the bool says whether it is the first (with the header).

    ``refused``: entries of ``<P>:{refusals}:latest`` (``streams.refusals.Refusal``).
    """
    if refused:
        if json:
            return lambda entries, first: _print_lines(
                json_line(Refusal.from_fields(e.fields).fields() | {"entry_id": e.entry_id})
                for e in entries
            )
        out = console()
        layout = fit(REFUSED_COLUMNS, out.width)
        return lambda entries, first: _print_rows(out, layout, map(refused_row, entries), first)
    if json:
        return lambda entries, first: print_json(entries, dead=dead)
    out = console()
    layout = fit(DEAD_COLUMNS if dead else EVENT_COLUMNS, out.width)
    return lambda entries, first: print_table(out, layout, entries, dead=dead, header=first)


def _print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _print_rows(out: Console, layout: Layout, rows: Iterable[list[str]], header: bool) -> None:
    rows = list(rows)
    if not rows and not header:
        return
    table = layout.table(header)
    for row in rows:
        table.add_row(*cells(layout.row(row)))
    out.print(table)
    if header and not rows:
        out.print("(no entries)")
    out.file.flush()


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


EVENT_COLUMNS = (
    Column("time", 24, keep=0),
    Column("type", 28, keep=1, flex=True, min_width=16),
    Column("status", 11, keep=2),
    Column("id", 24, keep=3),
    Column("request_id", 22, keep=7),
    Column("progress", 8, keep=6, justify="right"),
    Column("done", 6, keep=5, justify="right"),
    Column("failed", 6, keep=4, justify="right"),
)
REFUSED_COLUMNS = (
    Column("time", 24, keep=0),
    Column("status", 6, keep=1, justify="right"),
    Column("reason", 22, keep=2),
    Column("peer", 15, keep=4),
    Column("detail", 60, keep=3, flex=True, min_width=24),
    Column("headers", 40, keep=5, flex=True, min_width=16),
)
DEAD_COLUMNS = (
    Column("entry_id", 15, keep=0),
    Column("time", 24, keep=1),
    Column("reason", 15, keep=2),
    Column("sha256", 12, keep=4),
    Column("detail", 80, keep=3, flex=True, min_width=24),
)


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
    if isinstance(event, CustomEvent):  # a body of the user's own design
        return row
    row[5:] = [
        "" if value is None else str(value)
        for value in (event.progress, event.done_count, event.failed_count)
    ]
    return row


def refused_row(entry: Entry) -> list[str]:
    refusal = Refusal.from_fields(entry.fields)
    detail = refusal.detail.replace("\n", " ")
    return [
        refusal.at,
        str(refusal.status),
        refusal.reason,
        refusal.peer,
        detail,
        refusal.headers.replace(",", ", "),
    ]


def dead_row(entry: Entry) -> list[str]:
    letter = DeadLetter.from_fields(entry.fields)
    return [
        entry.entry_id,
        letter.received_at or clock.of_entry_id(entry.entry_id),
        letter.reason,
        letter.sha256[:12],
        letter.detail.replace("\n", " "),
    ]


def print_table(
    out: Console, layout: Layout, entries: list[Entry], *, dead: bool, header: bool
) -> None:
    if not entries and not header:
        return
    table = layout.table(header)
    for entry in entries:
        table.add_row(*cells(layout.row(dead_row(entry) if dead else event_row(entry))))
    out.print(table)
    if header and not entries:
        out.print("(no entries)")
    out.file.flush()
