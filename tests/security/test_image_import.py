"""Issue 13, item 8: ``ivfarm image add`` refuses qcow2 images that point at other host files.

A qcow2 with an external data file would let a VM read and write whatever file it names on the
host; one with a backing file would read it. Both are refused with a clear error, nothing is
registered and nothing is left in the repository.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

IVFARM = str(Path(sys.executable).with_name("ivfarm"))


def ivfarm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"}}))
    env = {k: v for k, v in os.environ.items() if k != "IVFARM_DATABASE"}
    env["IVFARM_CONFIG"] = str(config)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("option", ["data_file", "backing_file"])
def test_image_add_refuses_a_qcow2_pointing_at_a_host_file(tmp_path: Path, option: str) -> None:
    target = tmp_path / "host-file.raw"
    target.write_bytes(b"\0" * 1024 * 1024)
    evil = tmp_path / "evil.qcow2"
    opts = f"data_file={target}" if option == "data_file" else f"backing_file={target},backing_fmt=raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, str(evil), "1M"], check=True)
    if option == "data_file":
        target.write_bytes(b"\0" * 1024 * 1024)  # qemu-img create truncated it; the host file stays a file

    assert ivfarm(tmp_path, "init").returncode == 0
    added = ivfarm(tmp_path, "image", "add", "evil", "--file", str(evil), "--public")
    assert added.returncode != 0
    assert ("external data file" if option == "data_file" else "backing file") in added.stderr + added.stdout
    assert "Traceback" not in added.stderr
    listed = ivfarm(tmp_path, "image", "list", "--output", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    images = tmp_path / "state" / "images"
    assert not images.exists() or list(images.iterdir()) == []
