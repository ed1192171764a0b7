"""Engine and sessions: SQLite (WAL, writers serialised with BEGIN IMMEDIATE) or PostgreSQL."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ivfarm.errors import SchemaMismatch, StoreNotInitialised
from ivfarm.store import migrations, sealing
from ivfarm.store.models import Farm
from ivfarm.store.sealing import Sealer


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal and -shm the same mode
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is emitted below, so IMMEDIATE can be chosen
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("ivfarm_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Store:
    """Sessions on the configured database; ``write()`` serialises writers that must not race."""

    def __init__(self, url: str, sealer: Sealer | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
        sealing.attach(self.engine.dialect, sealer)  # farm secret keys are sealed with it
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(ivfarm_write=True), expire_on_commit=False)
        self.migrations = migrations.MIGRATIONS  # the scripts ``upgrade_schema`` runs and the revision it requires

    def upgrade_schema(self) -> migrations.SchemaChange:
        """Create the schema at the newest revision, or upgrade it there (one process at a time)."""
        with self.engine.execution_options(ivfarm_write=True).connect() as conn:
            raw = conn.connection.driver_connection if self.is_sqlite else None
            if raw is not None:  # SQLite copies tables to alter them: foreign keys are checked once, at the end
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    if raw is None:
                        conn.execute(text("SELECT pg_advisory_xact_lock(7306)"))  # concurrent inits take turns
                    dangling = self._dangling_references(conn)
                    change = migrations.upgrade(conn, self.migrations, f"the state store at {self.url}")
                    if self._dangling_references(conn) > dangling:
                        raise SchemaMismatch(f"upgrading the state store at {self.url} would break foreign keys")
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")
        return change

    def _dangling_references(self, conn: Connection) -> int:
        """Rows whose foreign keys point nowhere (SQLite, where migrations run with them unenforced)."""
        return len(conn.exec_driver_sql("PRAGMA foreign_key_check").all()) if self.is_sqlite else 0

    def is_initialised(self) -> bool:
        """True when the schema exists."""
        try:
            return inspect(self.engine).has_table(Farm.__tablename__)
        except OperationalError:
            return False

    def require_initialised(self) -> None:
        """Raise ``StoreNotInitialised`` unless ``ivfarm init`` has brought the schema to this version's revision."""
        try:
            with self.engine.connect() as conn:
                revision = migrations.current_revision(conn)
                exists = revision is not None or migrations.has_tables(conn, self.migrations)
        except OperationalError:
            revision, exists = None, False
        if not exists:
            raise StoreNotInitialised(f"the state store at {self.url} is not initialised: run 'ivfarm init'")
        head = migrations.head(self.migrations)
        if revision == head:
            return
        if revision is None or migrations.is_known(revision, self.migrations):
            at = f"schema {revision}" if revision else "schema from before migrations"
            raise StoreNotInitialised(f"the state store at {self.url} is from an older ivfarm ({at}, this ivfarm "
                                      f"needs {head}): run 'ivfarm init' to upgrade it")
        raise SchemaMismatch(f"the state store at {self.url} is at schema revision {revision}, which this ivfarm "
                             f"does not know (its newest is {head}): it was made by a newer ivfarm")

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (and writes that cannot race)."""
        with self._read() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction excludes other writers (quota and pool allocations)."""
        with self._write() as session, session.begin():
            yield session

    def lock_farm(self, session: Session, farm_id: int) -> Farm:
        """Lock a farm row for the rest of the transaction (SQLite: already exclusive)."""
        stmt = select(Farm).where(Farm.id == farm_id)
        if not self.is_sqlite:
            stmt = stmt.with_for_update()
        return session.execute(stmt).scalar_one()

    def lock_scheduler(self, session: Session) -> None:
        """Serialise placements across farms for the rest of the transaction (SQLite: already)."""
        if not self.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(7305)"))

    def dispose(self) -> None:
        self.engine.dispose()
