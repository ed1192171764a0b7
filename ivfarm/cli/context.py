"""``ivfarm context``: build and inspect cloud-init user-data archives (the INFN format)."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from contextualization.errors import ContextError
from contextualization.files import read_bytes
from contextualization.mime import Part
from contextualization.packer import pack, parse_part_spec, unpack
from ivfarm.cli.output import emit_rows, output_option

COLUMNS = ["index", "content_type", "filename", "size"]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn library and file errors into one-line click errors (exit code 1)."""
    try:
        yield
    except ContextError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from exc


@click.group()
def context() -> None:
    """cloud-init contextualization: user-data archives of configs and part-handlers."""


@context.command("pack")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--handler", "handlers", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A part-handler file to embed (repeatable); together they must claim every section.")
@click.option("--part", "parts", multiple=True, metavar="FILE[:TYPE]",
              help="An extra part (repeatable), e.g. setup.sh:text/x-shellscript; TYPE is inferred "
                   "from a '#cloud-config' or '#!' first line when omitted.")
@click.option("-o", "--out", "out", required=True, metavar="FILE",
              help="Where to write the user-data ('-' for standard output).")
@click.option("--boundary", help="MIME boundary [default: derived from the content, so output is "
                                 "reproducible].")
def pack_command(config: Path, handlers: tuple[Path, ...], parts: tuple[str, ...], out: str,
                 boundary: str | None) -> None:
    """Pack a #multiple-config CONFIG and its part-handlers into one MIME user-data file.

    The result is gzipped only when that is needed to fit EC2's 16 KB user-data limit.
    """
    with _user_errors():
        packed = pack(config, handlers, [parse_part_spec(spec) for spec in parts], boundary)
        if out == "-":
            sys.stdout.buffer.write(packed.data)
            sys.stdout.buffer.flush()
        else:
            Path(out).write_bytes(packed.data)
    form = f"gzip, {packed.plain_size} bytes plain" if packed.gzipped else "plain"
    click.echo(f"wrote {out}: {len(packed.parts)} parts, {len(packed.data)} bytes ({form})",
               err=out == "-")


def _safe_name(part: Part, index: int, taken: set[str]) -> str:
    name = Path(part.filename).name
    if not name or name in (".", "..") or name in taken:
        name = f"part-{index:03d}"
    taken.add(name)
    return name


def _extract(parts: list[Part], directory: Path, echo: Callable[[str], None]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for index, part in enumerate(parts):
        target = directory / _safe_name(part, index, taken)
        target.write_bytes(part.payload)
        echo(f"extracted {target}")


@context.command("unpack")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@output_option
@click.option("--extract", "extract_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write each part's content into this directory.")
def unpack_command(file: Path, output: str, extract_dir: Path | None) -> None:
    """List the parts of a user-data FILE (MIME multipart, plain or gzipped)."""
    with _user_errors():
        parts = unpack(read_bytes(file, "user-data"))
        if extract_dir is not None:
            _extract(parts, extract_dir, lambda line: click.echo(line, err=output == "json"))
    rows = [{"index": index, "content_type": part.content_type, "filename": part.filename,
             "size": len(part.payload)} for index, part in enumerate(parts)]
    emit_rows(rows, COLUMNS, output)
