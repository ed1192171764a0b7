"""The state store on SQLite and PostgreSQL: initialisation and schema migrations."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ivfarm.cloud import Cloud
from ivfarm.errors import SchemaMismatch, StoreNotInitialised
from ivfarm.services.compute import hosts
from ivfarm.store import Store, migrations
from ivfarm.store.models import Base, Instance, Tag, UsageRecord
from tests.support.postgres import scratch_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TABLE_ROWS = {"farms": 2, "hosts": 2, "flavors": 2, "images": 2, "instances": 3, "addresses": 3, "keypairs": 2,
              "tags": 4, "port_forwards": 1, "operations": 1, "usage_records": 2}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a new SQLite file, or a new schema of the test PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    with scratch_schema(os.environ["IVFARM_TEST_POSTGRES_URL"], "ivfarm_mig") as url:
        yield url


@pytest.fixture
def store(empty_url: str) -> Iterator[Store]:
    made = Store(empty_url)
    yield made
    made.dispose()


def run_sql(engine: Engine, path: Path) -> None:
    """Run the statements of a fixture file (``;`` ends a line that ends a statement)."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
        for statement in "\n".join(lines).split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement.strip().removesuffix(";"))


def load_store_made_before_migrations(store: Store) -> None:
    """What ivfarm made before migrations: ``create_all``'s tables (no alembic_version) and some rows."""
    run_sql(store.engine, FIXTURES / f"schema_0001_ddl_{store.engine.dialect.name}.sql")
    run_sql(store.engine, FIXTURES / "schema_0001.sql")


def model_differences(engine: Engine) -> list[object]:
    """What ``alembic check`` would report: the models against the database."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def with_one_more_revision(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the migration scripts with one more revision after head, adding a column to hosts (rebuilt)."""
    location = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    head = migrations.head()
    following = f"{int(head[:4]) + 1:04d}"
    (location / "versions" / f"{following}_host_test_note.py").write_text(textwrap.dedent(f'''\
        import sqlalchemy as sa
        from alembic import op

        revision = "{following}"
        down_revision = "{head}"


        def upgrade() -> None:
            sqlite = op.get_bind().dialect.name == "sqlite"
            with op.batch_alter_table("hosts", recreate="always" if sqlite else "auto") as batch_op:  # SQLite: copied
                batch_op.add_column(sa.Column("test_note", sa.String(64), nullable=True))
        '''))
    return location, following


def test_the_migrations_at_head_make_exactly_the_models(store: Store) -> None:
    assert store.upgrade_schema().describe() == f"schema created at {migrations.head()}"
    assert model_differences(store.engine) == []  # a model changed without a migration fails here
    store.require_initialised()
    assert store.upgrade_schema().describe() == f"schema up to date ({migrations.head()})"


def test_the_first_revision_is_the_baseline() -> None:
    assert migrations.BASELINE == "0001"
    script = migrations._script(migrations.MIGRATIONS)
    base = script.get_revision("0001")
    assert base is not None and base.down_revision is None and base.path.endswith("0001_baseline.py")
    assert script.get_bases() == ["0001"]


def test_a_store_made_before_migrations_is_adopted_and_keeps_its_data(store: Store) -> None:
    load_store_made_before_migrations(store)
    with pytest.raises(StoreNotInitialised, match="older ivfarm .*run 'ivfarm init'"):
        store.require_initialised()
    head = migrations.head()
    done = "schema up to date (0001)" if head == "0001" else f"schema upgraded from 0001 to {head}"
    assert store.upgrade_schema().describe() == f"existing schema recognised as 0001 and stamped; {done}"
    store.require_initialised()
    assert model_differences(store.engine) == []
    with store.engine.connect() as conn:
        counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in TABLE_ROWS}
        assert migrations.current_revision(conn) == head
    assert counts == TABLE_ROWS
    with store.read() as session:
        web = session.get(Instance, "i-0123456789abcdef0")
        assert web is not None and web.farm is not None and web.host is not None
        assert (web.farm.name, web.host.name, web.image.name, web.restart_policy) == ("alpha", "worker-1", "debian-12", "always")
        assert web.launched_at is not None and web.launched_at.replace(tzinfo=None).isoformat() == "2024-05-01T13:01:30"
        tags = session.execute(select(Tag.key, Tag.value).where(Tag.resource_id == web.id).order_by(Tag.key)).all()
        assert [tuple(t) for t in tags] == [("Name", "web server"), ("env", "prod")]
        assert session.execute(text("SELECT description FROM images WHERE id = 'ami-0000000000000002'")).scalar() == "alpha's own image"
    assert store.upgrade_schema().describe() == f"schema up to date ({head})"


def test_a_store_made_before_migrations_is_upgraded_past_0001(store: Store, tmp_path: Path) -> None:
    load_store_made_before_migrations(store)
    store.migrations, following = with_one_more_revision(tmp_path)
    assert store.upgrade_schema().describe() == (f"existing schema recognised as 0001 and stamped; "
                                                 f"schema upgraded from 0001 to {following}")
    store.require_initialised()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instances WHERE host_id IS NOT NULL")).scalar() == 3
        assert conn.execute(text("SELECT name, test_note FROM hosts ORDER BY id")).all() == [("worker-1", None), ("service-1", None)]
        if store.is_sqlite:  # hosts was copied with foreign keys unenforced; they are enforced again
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(IntegrityError):
                conn.execute(text("DELETE FROM hosts"))


def test_tables_that_are_not_schema_0001_are_refused(store: Store) -> None:
    load_store_made_before_migrations(store)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE hosts DROP COLUMN cpu_ratio"))
        conn.execute(text("DROP INDEX ix_instances_state"))
    with pytest.raises(SchemaMismatch, match=r"not schema 0001: column hosts.cpu_ratio is missing; index ix_instances_state is missing"):
        store.upgrade_schema()
    with store.engine.connect() as conn:
        assert migrations.current_revision(conn) is None  # nothing stamped


def test_an_older_schema_is_refused_until_init_upgrades_it(db_cloud: Cloud, fake_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(db_cloud, "w", fake_host("w"), "worker")
    head = migrations.head()
    db_cloud.store.migrations, following = with_one_more_revision(tmp_path)  # this ivfarm is a revision ahead
    with pytest.raises(StoreNotInitialised, match=rf"older ivfarm \(schema {head}, this ivfarm needs {following}\): run 'ivfarm init'"):
        db_cloud.store.require_initialised()
    assert db_cloud.store.upgrade_schema().describe() == f"schema upgraded from {head} to {following}"
    db_cloud.store.require_initialised()
    assert [h.name for h in hosts.list_hosts(db_cloud)] == ["w"]  # rows survive the upgrade
    with db_cloud.store.engine.connect() as conn:
        assert conn.execute(text("SELECT test_note FROM hosts")).all() == [(None,)]
    assert db_cloud.store.upgrade_schema().describe() == f"schema up to date ({following})"


def test_a_store_of_a_newer_ivfarm_is_refused(store: Store) -> None:
    store.upgrade_schema()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="revision 9999, which this ivfarm does not know .* newer ivfarm"):
        store.require_initialised()
    with pytest.raises(SchemaMismatch, match="newer ivfarm"):
        store.upgrade_schema()


def test_a_fresh_database_is_not_initialised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    assert not store.is_initialised()
    with pytest.raises(StoreNotInitialised, match="not initialised: run 'ivfarm init'"):
        store.require_initialised()


def test_datetimes_are_stored_in_utc_and_read_back_aware_utc(db_cloud: Cloud) -> None:
    start = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with db_cloud.store.write() as session:
        session.add(UsageRecord(farm_name="f", resource_id="i-1", kind="instance", start=start,
                                end=start + dt.timedelta(hours=1)))
    with db_cloud.store.read() as session:
        if not db_cloud.store.is_sqlite:
            session.execute(text("SET TIME ZONE 'Asia/Tokyo'"))  # PostgreSQL answers in the session's zone
        record = session.scalars(select(UsageRecord)).one()
        before = session.scalars(select(UsageRecord.id).where(
            UsageRecord.start < dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC))).all()
    assert record.start == start and record.start.tzinfo is dt.UTC
    assert record.end.utcoffset() == dt.timedelta(0)
    assert before == [record.id]  # compared in UTC, whatever zone the bound value had
