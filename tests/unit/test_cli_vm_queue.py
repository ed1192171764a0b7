"""``ivfarm vm stop|start|reboot|terminate`` queue their job like the EC2 API: by default the command
carries it out while it waits (progress on stderr), ``--no-wait`` returns with the instance in flight.

In process (click's runner), on ``test:///default``: one test-driver instance shared by every
command of the process, so the domains one command makes are there for the next (the test holds
a connection: libvirt frees that instance when its last connection closes).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest
import yaml
from click.testing import CliRunner, Result

from ivfarm.cli.main import cli

Invoke = Callable[..., Result]


@pytest.fixture
def ivfarm(tmp_path: Path) -> Iterator[Invoke]:
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "vrouter": {"backend": "none"},
                                      "provisioner": {"poll_s": 0.05}}))

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args])

    hold = libvirt.open("test:///default")
    yield invoke
    hold.close()


def state(ivfarm: Invoke, name: str) -> str:
    return str(json.loads(ivfarm("vm", "show", name, "-o", "json").stdout)["state"])


def test_lifecycle_commands_go_through_the_queue(ivfarm: Invoke, raw_disk: Path) -> None:
    assert ivfarm("init").exit_code == 0
    assert ivfarm("host", "add", "shared", "--uri", "test:///default", "--class", "worker").exit_code == 0
    assert ivfarm("image", "add", "base", "--file", str(raw_disk), "--public").exit_code == 0
    assert ivfarm("vm", "run", "--image", "base", "--flavor", "m1.tiny", "--name", "q1").exit_code == 0
    for command, shown in (("stop", "stopped"), ("start", "running"), ("reboot", "rebooting")):
        done = ivfarm("vm", command, "q1")
        assert done.exit_code == 0, done.output
        assert done.stdout.split()[1:] == [shown]
        assert " s)" in done.stderr  # the progress line while it waited
    assert state(ivfarm, "q1") == "running"

    queued = ivfarm("vm", "stop", "q1", "--no-wait")
    assert queued.exit_code == 0 and queued.stdout.split()[1:] == ["stopping"]
    assert state(ivfarm, "q1") == "stopping"  # nobody carried it out yet
    refused = ivfarm("vm", "reboot", "q1")  # (the ivfarm command prints the error as one line)
    assert refused.exit_code != 0 and "only running instances reboot" in str(refused.exception)
    refused = ivfarm("vm", "start", "q1")
    assert refused.exit_code != 0 and "only stopped instances start" in str(refused.exception)
    ran = ivfarm("vm", "terminate", "q1", "--no-wait")
    assert ran.exit_code == 0 and ran.stdout.split()[1:] == ["shutting-down"]
    gone = ivfarm("vm", "terminate", "q1")  # already terminating: waits for its job
    assert gone.exit_code == 0, gone.output
    assert gone.stdout.split()[1:] == ["terminated"]
    assert json.loads(ivfarm("vm", "list", "-o", "json").stdout) == []
