"""A private schema of the test PostgreSQL database, for a test that needs an empty store."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def scratch_schema(base_url: str, prefix: str) -> Iterator[str]:
    """Yields the URL of a new, empty schema of ``base_url``'s database; drops the schema afterwards.

    Each test gets its own schema, so tables left in the database's own schema (by an older checkout,
    another branch or a crashed run) never reach it.
    """
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
