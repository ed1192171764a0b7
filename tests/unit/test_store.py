"""The state store on SQLite and PostgreSQL: initialisation and additive schema upgrades."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from ivfarm.cloud import Cloud
from ivfarm.errors import StoreNotInitialised
from ivfarm.services.compute import hosts


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
