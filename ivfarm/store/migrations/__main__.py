"""Developer commands for the migration scripts (``make migration MSG=...`` runs ``revision``).

``python -m ivfarm.store.migrations revision "add hosts.note"`` writes ``versions/<next>_add_hosts_note.py``
from the difference between the models and the schema at head; ``check`` reports that difference.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from ivfarm.store import migrations
from ivfarm.store.models import Base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivfarm.store.migrations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    revision = sub.add_parser("revision", help="write the next migration script from the models")
    revision.add_argument("message")
    sub.add_parser("check", help="list what the models have that the migrations do not make")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite:///{Path(directory) / 'head.db'}")
        try:
            with engine.connect() as conn, conn.begin():
                migrations.upgrade(conn)
                if args.action == "check":
                    context = MigrationContext.configure(conn, opts={"compare_type": True})
                    differences = compare_metadata(context, Base.metadata)
                    for difference in differences:
                        print(difference)
                    return 1 if differences else 0
                rev_id = f"{int(migrations.head()) + 1:04d}"
                command.revision(migrations.config(connection=conn), message=args.message, autogenerate=True,
                                 rev_id=rev_id)
                print("review it (autogenerate misses renames and data moves), then run the tests")
                return 0
        finally:
            engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
