"""Schema upgrades: new tables are created, new nullable columns and indexes added; nothing is dropped."""
from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateColumn

from ivfarm.store.models import Base


def missing_columns(engine: Engine) -> list[tuple[str, str]]:
    """(table, column) pairs the models have and the database lacks."""
    inspector = inspect(engine)
    missing: list[tuple[str, str]] = []
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing.extend((table.name, column.name) for column in table.columns if column.name not in present)
    return missing


def upgrade(engine: Engine) -> list[str]:
    """Create absent tables and add absent columns; returns what was added."""
    Base.metadata.create_all(engine)
    added = []
    with engine.begin() as conn:
        for table_name, column_name in missing_columns(engine):
            column = Base.metadata.tables[table_name].columns[column_name]
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(text(f'ALTER TABLE "{table_name}" ADD COLUMN {ddl}'))
            added.append(f"{table_name}.{column_name}")
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(engine)
                added.append(f"index {index.name}")
    return added
