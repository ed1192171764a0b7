"""Run the ``ivfarm`` command on a test cloud's configuration, as the sysadmin would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from ivfarm.cloud import Cloud

IVFARM = str(Path(sys.executable).with_name("ivfarm"))


def ivfarm(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    """``ivfarm ARGS`` with the cloud's configuration written to a file; never raises on exit codes."""
    config = cloud.config.state_dir / "ivfarm.yaml"
    config.write_text(yaml.safe_dump(cloud.config.data))
    env = {**os.environ, "IVFARM_CONFIG": str(config)}
    env.pop("IVFARM_DATABASE", None)
    return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
