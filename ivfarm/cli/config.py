"""``ivfarm config``: the configuration in use, and a check of a file before it is deployed."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from ivfarm.cli.context_obj import AppContext
from ivfarm.cli.output import emit_rows, output_option
from ivfarm.config import load_config
from ivfarm.errors import ConfigError


def flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a configuration tree, in file order."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@click.group()
def config() -> None:
    """The configuration: show the values in use, check a file before deploying it."""


@config.command("show")
@output_option
@click.pass_obj
def show(app: AppContext, output: str) -> None:
    """Print the effective configuration: defaults, then the file, then $IVFARM_DATABASE.

    ``database`` is the store URL in use. Secrets are shown as ***: keys named like password,
    secret, token or ssh_key, the password of the database URL and of a fence command.
    """
    settings = app.config
    tree = settings.effective()
    if output == "json":
        click.echo(json.dumps(tree, indent=2))
        return
    origin = str(settings.source) if settings.source else "built-in defaults (no configuration file)"
    emit_rows([{"key": key, "value": _text(value)} for key, value in flatten(tree)], ["key", "value"], output,
              title=f"configuration: {origin}")


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate the configuration file FILE against the schema.

    Exits 0 and prints "FILE: valid", or exits 1 with one line per problem: the key, what it
    should be and what it is.
    """
    try:
        load_config(file)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(f"{file}: valid")
