"""What the CLI prints: rich tables for people, ``--json`` for scripts (protobuf's JSON
mapping with the proto field names, every field present, so keys are stable)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from askvault.common.v1 import common_pb2
from askvault_cli.failures import CliError
from runtime import currency

# Rows and tables go to stdout; notes and errors to stderr, so a script's stdout is data.
_console = Console(highlight=False, soft_wrap=False)
_notes = Console(stderr=True, highlight=False)


def as_dict(message: Message) -> dict[str, Any]:
    """A message in the JSON mapping, proto field names, defaults included."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def emit_json(data: Message | Mapping[str, Any] | Sequence[Any]) -> None:
    """Prints one JSON document on stdout."""
    value = as_dict(data) if isinstance(data, Message) else data
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if isinstance(value, Message):
        return as_dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def show(
    json_output: bool, data: Message | Mapping[str, Any] | Sequence[Any], render: Callable[[], None]
) -> None:
    """``data`` as JSON with --json, else what ``render`` prints."""
    if json_output:
        emit_json(data)
    else:
        render()


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    wrap: Collection[str] = (),
) -> None:
    """A table of rows (every cell shown as text). Only the ``wrap`` columns (free text) wrap
    at spaces; the others (ids, times, amounts) are kept whole as long as the width allows."""
    grid = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        grid.add_column(column, overflow="fold", no_wrap=column not in wrap)
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    _console.print(grid)


def pairs(title: str, values: Iterable[tuple[str, object]]) -> None:
    """One object as a two-column table of field and value."""
    table(title, ("field", "value"), values, wrap=("value",))


def line(text: str) -> None:
    _console.print(text, markup=False)


def note(text: str) -> None:
    """A remark for the person (stderr, so it never mixes with --json output)."""
    _notes.print(text, markup=False)


def error(failure: CliError, json_output: bool) -> None:
    """The one-line error on stderr (a JSON object with --json)."""
    if json_output:
        sys.stderr.write(json.dumps(failure.as_dict(), sort_keys=True) + "\n")
    else:
        sys.stderr.write(f"askvault: error: {failure.message}\n")


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """A timestamp as UTC text, empty when unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return ""
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def span(duration: duration_pb2.Duration) -> str:
    """A duration in days, hours or seconds, whichever reads best."""
    seconds = duration.seconds
    if seconds and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds}s"


def money(amount: common_pb2.Money) -> str:
    """Money in major units with its currency ("50.00 USD"), empty when unset."""
    if not amount.currency:
        return ""
    major = currency.to_major(amount.amount_minor, amount.currency)
    return f"{major} {amount.currency.upper()}"


def enum_name(value: str, prefix: str) -> str:
    """An enum value's name without its prefix, lower-case ("ESCALATION_STATE_OPEN" -> "open")."""
    return value.removeprefix(prefix).lower()
