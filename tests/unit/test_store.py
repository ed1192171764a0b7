"""The state store on SQLite and PostgreSQL: initialisation and additive schema upgrades."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from ivfarm.cloud import Cloud
from ivfarm.errors import StoreNotInitialised
from ivfarm.services.compute import hosts
from ivfarm.store.models import UsageRecord


def test_an_older_schema_is_refused_until_init_upgrades_it(db_cloud: Cloud, fake_host) -> None:  # type: ignore[no-untyped-def]
    hosts.add_host(db_cloud, "w", fake_host("w"), "worker")
    with db_cloud.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE hosts DROP COLUMN cpu_ratio"))
    with pytest.raises(StoreNotInitialised, match="older ivfarm"):
        db_cloud.store.require_initialised()
    assert db_cloud.store.create_all() == ["hosts.cpu_ratio"]
    db_cloud.store.require_initialised()
    assert [h.name for h in hosts.list_hosts(db_cloud)] == ["w"]  # rows survive the upgrade
    assert db_cloud.store.create_all() == []


def test_a_fresh_database_is_not_initialised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ivfarm.store import Store

    store = Store(f"sqlite:///{tmp_path}/empty.db")
    assert not store.is_initialised()
    with pytest.raises(StoreNotInitialised, match="ivfarm init"):
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
