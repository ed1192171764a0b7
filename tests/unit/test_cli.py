"""The ivfarm command as a sysadmin runs it: help texts, JSON output, clear errors, exit codes."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ivfarm.cli.main import cli
from ivfarm.config import load_config
from ivfarm.errors import ConfigError
from tests.support.fake_hypervisors import fake_hypervisor


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


@pytest.mark.parametrize("path", [(), *walk(cli)], ids=lambda p: " ".join(p) or "ivfarm")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert summary and not summary.startswith("Options"), f"{path} has no description"


def assert_clean_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in result.stderr


def test_commands_refuse_to_run_before_init(ivfarm) -> None:  # type: ignore[no-untyped-def]
    assert_clean_error(ivfarm("host", "list"), "run 'ivfarm init'")


def test_a_session_of_a_sysadmin(ivfarm, tmp_path: Path, raw_disk: Path) -> None:  # type: ignore[no-untyped-def]
    uri = fake_hypervisor(tmp_path / "node.xml", cpus=4, memory_mb=4096)
    created = ivfarm("init")
    assert created.returncode == 0 and "schema created at " in created.stdout
    again = ivfarm("init")  # idempotent
    assert again.returncode == 0 and "schema up to date" in again.stdout
    added = ivfarm("host", "add", "wn-01", "--uri", uri, "--class", "worker")
    assert added.returncode == 0 and "4 vCPUs, 4096 MB" in added.stdout
    assert_clean_error(ivfarm("host", "add", "x", "--uri", "qemu+ssh://no-such-host.invalid/system", "--class", "worker"),
                       "cannot connect")
    assert_clean_error(ivfarm("host", "add", "y", "--uri", uri, "--class", "gpu"), "Invalid value")
    flavors = {f["name"]: f for f in json.loads(ivfarm("flavor", "list", "-o", "json").stdout)}
    assert (flavors["m1.small"]["vcpus"], flavors["m1.small"]["memory_mb"], flavors["m1.small"]["ephemeral_gb"]) == (1, 512, 0)
    assert (flavors["m1.medium"]["vcpus"], flavors["m1.medium"]["memory_mb"], flavors["m1.medium"]["ephemeral_gb"]) == (2, 2048, 20)
    assert (flavors["m1.large"]["vcpus"], flavors["m1.large"]["memory_mb"], flavors["m1.large"]["ephemeral_gb"]) == (4, 8192, 80)
    assert ivfarm("image", "add", "base", "--file", str(raw_disk), "--public").returncode == 0
    queued = ivfarm("vm", "run", "--image", "base", "--flavor", "m1.small", "--name", "early", "--no-wait")
    assert queued.returncode == 0 and queued.stdout.split()[1:3] == ["early", "pending"], queued.stdout
    launched = ivfarm("vm", "run", "--image", "base", "--flavor", "m1.small", "--name", "wn")
    assert launched.returncode == 0, launched.stderr
    assert "1/1 launched" in launched.stderr and " wn running" in launched.stdout
    rows = {r["name"]: r for r in json.loads(ivfarm("vm", "list", "--output", "json").stdout)}
    assert (rows["wn"]["host"], rows["wn"]["state"], rows["early"]["state"]) == ("wn-01", "running", "running")
    assert ivfarm("vm", "terminate", "early").returncode == 0
    assert_clean_error(ivfarm("vm", "run", "--image", "base", "--flavor", "m1.small", "--class", "service"),
                       "no enabled service host")
    assert_clean_error(ivfarm("image", "remove", "base"), "used by instance")
    assert_clean_error(ivfarm("vm", "stop", "i-00000000000000000"), "not found")
    assert ivfarm("vm", "terminate", "wn").returncode == 0
    assert json.loads(ivfarm("vm", "list", "-o", "json").stdout) == []
    assert ivfarm("image", "remove", "base").returncode == 0
    assert_clean_error(ivfarm("--config", str(tmp_path / "nope.yaml"), "host", "list"), "not found")


# ivfarm config: show the configuration in use, check a file (in process, no store needed).

SITE = """\
state_dir: /srv/ivfarm
database: postgresql+psycopg://ivfarm:s3cret@db/ivfarm
hypervisor: {domain_type: kvm, cpu_allocation_ratio: 4}
image_cache: {ssh_key: /root/.ssh/cache_key}
network:
  public: {netns: null, bridge: br-public}
"""


@pytest.fixture
def site_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IVFARM_DATABASE", raising=False)
    monkeypatch.delenv("IVFARM_CONFIG", raising=False)
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


def test_config_show_prints_the_effective_values_with_secrets_masked(site_config: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(site_config), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "cache_key" not in result.output
    assert "postgresql+psycopg://ivfarm:***@db/ivfarm" in result.output
    for key, value in [("hypervisor.domain_type", "kvm"), ("network.public.bridge", "br-public"),
                       ("image_cache.ssh_key", "***"), ("network.vlan_range", "[100, 4000]")]:
        assert any(key in line and value in line for line in result.output.splitlines()), (key, value)


def test_config_show_json_is_the_effective_tree(site_config: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(site_config), "config", "show", "--output", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    expected = load_config(site_config).data
    expected["database"] = "postgresql+psycopg://ivfarm:***@db/ivfarm"
    expected["image_cache"]["ssh_key"] = "***"
    assert shown == expected
    assert shown["hypervisor"]["cpu_allocation_ratio"] == 4 and shown["network"]["public"]["netns"] is None


def test_config_show_names_the_database_in_use(site_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVFARM_DATABASE", "postgresql+psycopg://other:pw@db2/ivfarm")
    result = CliRunner().invoke(cli, ["--config", str(site_config), "config", "show", "-o", "json"])
    assert json.loads(result.stdout)["database"] == "postgresql+psycopg://other:***@db2/ivfarm"
    site_config.write_text("state_dir: /srv/x\n")
    monkeypatch.delenv("IVFARM_DATABASE")
    result = CliRunner().invoke(cli, ["--config", str(site_config), "config", "show", "-o", "json"])
    assert json.loads(result.stdout)["database"] == "sqlite:////srv/x/ivfarm.db"


def test_config_show_refuses_an_invalid_file(site_config: Path) -> None:
    site_config.write_text("hypervisor: {disk_gb: lots}\n")
    result = CliRunner().invoke(cli, ["--config", str(site_config), "config", "show"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "hypervisor.disk_gb: expected an integer" in str(result.exception)


def test_config_check_accepts_a_good_file(site_config: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "check", str(site_config)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{site_config}: valid\n"


def test_config_check_lists_each_problem_of_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hypervisor: {disk_gb: '500', machin: pc}\nvrouter: {backend: vyos}\nextra: 1\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}: hypervisor.disk_gb: expected an integer, got string '500'",
        f"{bad}: hypervisor.machin: unknown key (did you mean machine?)",
        f"{bad}: vrouter.backend: expected one of netns, openwrt, none, got 'vyos'",
        f"{bad}: extra: unknown key (known keys here: state_dir, cloud_id, database, secret_key_file, hypervisor, scheduler, "
        "storage, image_cache, hosts, journal, provisioner, network, vrouter, quota_defaults, mjf, ec2, accounting)",
    ]


@pytest.mark.parametrize("text,fragment", [("a: [unclosed\n", "not valid YAML: line 2"), (None, "not found")])
def test_config_check_reports_unreadable_files(tmp_path: Path, text: str | None, fragment: str) -> None:
    path = tmp_path / "site.yaml"
    if text is not None:
        path.write_text(text)
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.output
