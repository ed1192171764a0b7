"""Issue 13, item 2: local users cannot read farm credentials or user-data, and a database dump
reveals no credential.

``ivfarm init`` run under umask 000 leaves the state directory traversable only (0711), the
database with its -wal and -shm, the secret key file and run/ for the owner alone; it puts back
modes someone loosened. The database (file or dump) holds no farm's secret key, yet requests
signed with it still authenticate; migration 0005 seals the keys an older store holds in clear.
Before the fix the tree was 0755 / 0644 under the usual umask (0777 / 0666 under umask 000) and
``SELECT secret_key FROM farms`` printed every key.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from alembic import command
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.config import build_config, load_config
from ivfarm.ec2.app import Ec2App
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.store import migrations
from ivfarm.store.models import Farm
from tests.security.wsgi import call, signed

IVFARM = str(Path(sys.executable).with_name("ivfarm"))
SECRET = "S3cretKeyOfFarmAlpha-0123456789abcdefXYZ"


def init(config: Path) -> None:
    """``ivfarm init`` as the sysadmin runs it, under the most permissive umask."""
    env = {**os.environ, "IVFARM_CONFIG": str(config)}
    env.pop("IVFARM_DATABASE", None)
    result = subprocess.run(["sh", "-c", f"umask 000; exec {IVFARM} init"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_and_repairs_private_modes_and_no_dump_reveals_a_secret_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "vrouter": {"backend": "none"}}))
    init(config)
    cloud = Cloud(load_config(config))
    old_umask = os.umask(0)
    try:
        farm = create_farm(cloud, FarmRequest(name="alpha", access_key="AKIAIVFARMALPHA00000", secret_key=SECRET))
    finally:
        os.umask(old_umask)
    database, key_file = state / "ivfarm.db", state / "secret.key"
    private = [database, Path(f"{database}-wal"), Path(f"{database}-shm"), key_file]
    assert all(path.exists() for path in private)
    assert {path.name: mode(path) for path in private} == {path.name: 0o600 for path in private}
    assert mode(state) == 0o711 and mode(state / "run") == 0o700
    assert mode(state / "disks") == 0o755  # QEMU's user still reaches the disks

    # a local user's (or a backup's) view of the database: no secret key in it
    raw = b"".join(path.read_bytes() for path in private[:3])
    assert SECRET.encode() not in raw
    with sqlite3.connect(database) as dump:
        [(stored,)] = dump.execute("SELECT secret_key FROM farms").fetchall()
        assert SECRET not in stored and SECRET not in "\n".join(dump.iterdump())
    # while the farm's own signed requests still work
    status, body = call(Ec2App(cloud), signed(farm.access_key, SECRET, {"Action": "DescribeInstances"}))
    assert status == 200, body
    cloud.store.dispose()  # the last connection folds -wal back into the database

    loosened = [path for path in private if path.exists()]
    for path in [state, state / "run", *loosened]:
        os.chmod(path, 0o777 if path.is_dir() else 0o666)
    init(config)
    assert {mode(path) for path in loosened if path.exists()} == {0o600}
    assert database.exists() and key_file.exists()
    assert mode(state) == 0o711 and mode(state / "run") == 0o700


def test_migration_0005_seals_the_keys_an_older_store_holds_in_clear(tmp_path: Path) -> None:
    cloud = Cloud(build_config({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"}}))
    cloud.prepare_state_dir()
    cloud.store.upgrade_schema()
    create_farm(cloud, FarmRequest(name="alpha", access_key="AKIAIVFARMALPHA00000", secret_key=SECRET))
    with cloud.store.engine.connect() as conn:  # back to 0004: the keys in clear, as an older ivfarm left them
        conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        with conn.begin():
            command.downgrade(migrations.config(migrations.MIGRATIONS, conn), "0004")
        conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
    database = tmp_path / "state" / "ivfarm.db"
    with sqlite3.connect(database) as dump:
        assert dump.execute("SELECT secret_key FROM farms").fetchall() == [(SECRET,)]
    assert "from 0004 to" in cloud.store.upgrade_schema().describe()
    with sqlite3.connect(database) as dump:
        [(stored,)] = dump.execute("SELECT secret_key FROM farms").fetchall()
    assert SECRET not in stored
    with cloud.store.read() as session:
        assert session.execute(select(Farm.secret_key)).scalar_one() == SECRET
    cloud.store.dispose()



def test_seed_isos_holding_user_data_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """A seed carries the VM's user-data: 0600 also under umask 0 and over an older 0644 file."""
    cloud = Cloud(build_config({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"}}))
    cloud.prepare_state_dir()
    older = Path(cloud.seeds.path("i-0123456789abcdef0.iso"))
    older.write_bytes(b"old")
    older.chmod(0o644)
    previous = os.umask(0)
    try:
        written = Path(cloud.seeds.write("test:///default", older.name, b"#cloud-config\npassword: s3cret\n"))
    finally:
        os.umask(previous)
    assert written == older and stat.S_IMODE(written.stat().st_mode) == 0o600
    cloud.store.dispose()
