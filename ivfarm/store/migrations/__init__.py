"""Schema migrations: the Alembic scripts under ``versions/``, configured here (no alembic.ini).

Revisions are numbered ``0001``, ``0002``...; ``0001`` is the schema ivfarm had when migrations
were introduced. A store made before then (tables, no ``alembic_version``) is checked against
``0001`` and stamped with it, then upgraded like any other.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection

from ivfarm.errors import SchemaMismatch

MIGRATIONS = Path(__file__).resolve().parent
BASELINE = "0001"
VERSION_TABLE = "alembic_version"


@dataclasses.dataclass(frozen=True)
class SchemaChange:
    """What bringing a store to head did: revisions before and after, and whether an older store was adopted."""

    before: str | None
    after: str
    adopted: bool = False

    def describe(self) -> str:
        if self.before is None:
            return f"schema created at {self.after}"
        done = (f"schema upgraded from {self.before} to {self.after}" if self.before != self.after
                else f"schema up to date ({self.after})")
        return f"existing schema recognised as {BASELINE} and stamped; {done}" if self.adopted else done


def config(location: Path = MIGRATIONS, connection: Connection | None = None) -> Config:
    """An Alembic configuration for the scripts at ``location``, running on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script(location: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(config(location))


def head(location: Path = MIGRATIONS) -> str:
    """The newest revision of the scripts."""
    revision = _script(location).get_current_head()
    assert revision is not None, f"no migration scripts in {location}"
    return revision


def is_known(revision: str, location: Path = MIGRATIONS) -> bool:
    """True when ``revision`` is one of the scripts (a store at an unknown one was made by a newer ivfarm)."""
    try:
        return _script(location).get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(conn: Connection) -> str | None:
    """The store's revision; None when it has no ``alembic_version`` (empty, or made before migrations)."""
    return MigrationContext.configure(conn).get_current_revision()


def _shape(conn: Connection, tables: set[str]) -> dict[str, tuple[set[str], set[str]]]:
    """(column names, index names) of each of ``tables`` present in the database."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names()) & tables
    return {
        name: ({column["name"] for column in inspector.get_columns(name)},
               {str(index["name"]) for index in inspector.get_indexes(name) if "duplicates_constraint" not in index})
        for name in present
    }


@functools.cache
def _baseline_shape(location: Path) -> dict[str, tuple[set[str], set[str]]]:
    """The tables, columns and indexes revision ``0001`` creates (built in a scratch in-memory database)."""
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(config(location, conn), BASELINE)
            tables = set(inspect(conn).get_table_names()) - {VERSION_TABLE}
            return _shape(conn, tables)
    finally:
        engine.dispose()


def has_tables(conn: Connection, location: Path = MIGRATIONS) -> bool:
    """True when any table of the baseline schema exists."""
    return bool(_shape(conn, set(_baseline_shape(location))))


def _baseline_differences(conn: Connection, location: Path) -> list[str]:
    expected = _baseline_shape(location)
    found = _shape(conn, set(expected))
    problems = []
    for table, (columns, indexes) in sorted(expected.items()):
        if table not in found:
            problems.append(f"table {table} is missing")
            continue
        have_columns, have_indexes = found[table]
        problems.extend(f"column {table}.{name} is missing" for name in sorted(columns - have_columns))
        problems.extend(f"column {table}.{name} is unexpected" for name in sorted(have_columns - columns))
        problems.extend(f"index {name} is missing" for name in sorted(indexes - have_indexes))
    return problems


def upgrade(conn: Connection, location: Path = MIGRATIONS, name: str = "the database") -> SchemaChange:
    """Bring the store on ``conn`` (in a transaction the caller commits) to head: create, adopt or upgrade it.

    ``name`` is how errors call the store.
    """
    assert conn.in_transaction(), "migrations run in the caller's transaction"
    before = current_revision(conn)
    adopted = False
    if before is None and has_tables(conn, location):
        problems = _baseline_differences(conn, location)
        if problems:
            raise SchemaMismatch(
                f"{name} has ivfarm tables but no schema revision, and they are not schema {BASELINE}: "
                + "; ".join(problems)
                + f". Repair them to match revision {BASELINE} (or restore a backup), then run 'ivfarm init' again")
        command.stamp(config(location, conn), BASELINE)
        before, adopted = BASELINE, True
    if before is not None and not is_known(before, location):
        raise SchemaMismatch(f"{name} is at schema revision {before}, which this ivfarm does not know "
                             f"(its newest is {head(location)}): it was made by a newer ivfarm")
    command.upgrade(config(location, conn), "head")
    after = current_revision(conn)
    assert after is not None
    return SchemaChange(before, after, adopted)
