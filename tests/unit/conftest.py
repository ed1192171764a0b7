"""Fixtures of the unit tests: the ivfarm command itself, as a sysadmin runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

IVFARM = str(Path(sys.executable).with_name("ivfarm"))


@pytest.fixture
def ivfarm(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``ivfarm ARGS`` on a fresh state directory under tmp_path (vrouter backend none)."""
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"}}))
    env = {**os.environ, "IVFARM_CONFIG": str(config)}
    env.pop("IVFARM_DATABASE", None)
    # the command runs the code under test, wherever the virtualenv's editable install points
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=60)

    return invoke
