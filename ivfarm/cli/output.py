"""Rendering of read commands: ``--output table`` (rich) or ``--output json``."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])


def output_option(func: F) -> F:
    """Add ``--output table|json`` to a read command."""
    return click.option(
        "--output", "-o", "output", type=click.Choice(["table", "json"]), default="table", show_default=True,
        help="Output format.",
    )(func)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def emit_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], output: str, title: str | None = None) -> None:
    """Print a list of records as a table or a JSON array."""
    if output == "json":
        click.echo(json.dumps([{k: _plain(row.get(k)) for k in columns} for row in rows], indent=2))
        return
    table = Table(title=title, header_style="bold")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(_plain(row.get(c))) for c in columns))
    Console(width=200).print(table)


def emit_record(record: dict[str, Any], output: str) -> None:
    """Print one record as a two-column table or a JSON object."""
    if output == "json":
        click.echo(json.dumps({k: _plain(v) for k, v in record.items()}, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in record.items():
        table.add_row(key.replace("_", " "), "" if value is None else str(_plain(value)))
    Console(width=200).print(table)
