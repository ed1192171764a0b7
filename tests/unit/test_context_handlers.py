"""Guest-side part-handlers: their plans, dry runs, logs and the summary of failures."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from contextualization.handlers import cvmfs, localfs
from contextualization.handlers.runtime import (
    AppendLines,
    Command,
    Facts,
    PartHandler,
    PlanError,
    WriteFile,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "contextualization" / "examples" / "infn-worker.yaml").read_text())
VG_MIB = 100 * 1024
EXTENT = 4


def _vgs(*groups: tuple[str, int, int]) -> Facts:
    text = "".join(f"  {name}   {size}.00m   {free}.00m\n" for name, size, free in groups)
    return Facts({"vgs": text})


def _commands(steps) -> list[list[str]]:
    return [step.argv for step in steps if isinstance(step, Command)]


def _lv_sizes(steps) -> dict[str, int]:
    return {argv[argv.index("--name") + 1]: int(argv[argv.index("--size") + 1].rstrip("m"))
            for argv in _commands(steps) if argv[0] == "lvcreate"}


def _fstab(steps) -> list[str]:
    return [line for step in steps if isinstance(step, AppendLines) and step.path == "/etc/fstab"
            for line in step.lines]


# -- localfs ------------------------------------------------------------------------------------

def test_localfs_sizes_follow_the_infn_percentages() -> None:
    parts = EXAMPLE["localfs"]["parts"]
    sizes = _lv_sizes(localfs.plan(EXAMPLE["localfs"], _vgs(("vg0", VG_MIB, VG_MIB))))
    assert list(sizes) == ["cvmfs", "home", "tmp", "swap"]
    for name in ("cvmfs", "home", "tmp"):
        exact = VG_MIB * parts[name] / 100
        assert sizes[name] % EXTENT == 0 and exact - EXTENT < sizes[name] <= exact
    left = VG_MIB - sizes["cvmfs"] - sizes["home"] - sizes["tmp"]
    assert sizes["swap"] % EXTENT == 0 and left - EXTENT < sizes["swap"] <= left * parts["swap"] / 100
    assert sum(sizes.values()) <= VG_MIB


def test_localfs_swap_is_a_percentage_of_what_is_still_free() -> None:
    config = {"parts": {"home": 50, "swap": 50}}
    used = VG_MIB // 4  # another volume already takes a quarter of the group
    sizes = _lv_sizes(localfs.plan(config, _vgs(("vg0", VG_MIB, VG_MIB - used))))
    free_after = VG_MIB - used - sizes["home"]
    assert abs(sizes["swap"] - free_after / 2) < EXTENT


def test_localfs_mounts_fstab_and_order() -> None:
    steps = localfs.plan(EXAMPLE["localfs"], _vgs(("vg0", VG_MIB, VG_MIB)))
    fstab = _fstab(steps)
    expected_mounts = {"cvmfs": EXAMPLE["localfs"]["parts"]["cvmfs-mount"], "home": "/home",
                       "tmp": "/tmp"}
    for name, mount in expected_mounts.items():
        assert f"/dev/vg0/{name} {mount} ext4 defaults 0 2" in fstab
        commands = _commands(steps)
        order = [commands.index(argv) for argv in (
            ["lvcreate", "--yes", "--name", name, "--size", f"{_lv_sizes(steps)[name]}m", "vg0"],
            ["mkfs", "-t", "ext4", f"/dev/vg0/{name}"],
            ["mount", mount])]
        assert order == sorted(order)
        fstab_step = next(i for i, s in enumerate(steps)
                          if isinstance(s, AppendLines) and f"/dev/vg0/{name} " in s.lines[0])
        assert fstab_step < steps.index(Command(["mount", mount]))
    assert "/dev/vg0/swap none swap sw 0 0" in fstab
    assert ["mkswap", "/dev/vg0/swap"] in _commands(steps)
    assert ["swapon", "/dev/vg0/swap"] in _commands(steps)
    assert ["chmod", "1777", "/tmp"] in _commands(steps)


def test_localfs_picks_the_named_or_else_the_first_volume_group() -> None:
    facts = _vgs(("vgsys", 8192, 0), ("vgdata", VG_MIB, VG_MIB))
    named = localfs.plan({"vg": "vgdata", "parts": {"home": 10}}, facts)
    assert _commands(named)[0][-1] == "vgdata"
    with pytest.raises(PlanError, match="vgsys has 0 MiB free"):
        localfs.plan({"parts": {"home": 10}}, facts)
    with pytest.raises(PlanError, match="volume group vgx not found.*vgsys, vgdata"):
        localfs.plan({"vg": "vgx", "parts": {"home": 10}}, facts)


def test_localfs_fstype_is_configurable() -> None:
    steps = localfs.plan({"fstype": "xfs", "parts": {"home": 10}}, _vgs(("vg0", VG_MIB, VG_MIB)))
    assert ["mkfs", "-t", "xfs", "/dev/vg0/home"] in _commands(steps)
    assert "/dev/vg0/home /home xfs defaults 0 2" in _fstab(steps)


@pytest.mark.parametrize("parts, complaint", [
    ({"data": 10}, "no mount point for data"),
    ({"data-mount": "/data"}, "data has no size"),
    ({"home": 60, "tmp": 50}, "add up to 110%"),
    ({"home": 0}, r"percentage in \(0, 100\]"),
    ({"home": "lots"}, "percentage"),
    ({"home": True}, "percentage"),
    ({"home": 10, "home-mount": "relative/dir"}, "absolute path"),
    ({"bad name!": 10}, "not a valid logical volume name"),
    ({}, "non-empty mapping"),
])
def test_localfs_refuses_bad_parts(parts, complaint: str) -> None:
    with pytest.raises(PlanError, match=complaint):
        localfs.plan({"parts": parts}, _vgs(("vg0", VG_MIB, VG_MIB)))


def test_localfs_without_any_volume_group_fails_to_plan() -> None:
    with pytest.raises(PlanError, match="no LVM volume group"):
        localfs.plan(EXAMPLE["localfs"], Facts({"vgs": ""}))


# -- cvmfs --------------------------------------------------------------------------------------

def _default_local(steps) -> str:
    return next(step.content for step in steps if isinstance(step, WriteFile)
                and step.path == "/etc/cvmfs/default.local")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_cvmfs_default_local_sources_to_the_configured_values(tmp_path: Path) -> None:
    local = dict(EXAMPLE["cvmfs"]["local"], **{"http-proxy": "http://a:3128|http://b:3128;DIRECT"})
    steps = cvmfs.plan({"local": local}, Facts({"package_manager": "yum"}))
    path = tmp_path / "default.local"
    path.write_text(_default_local(steps))
    names = [f"CVMFS_{key.upper().replace('-', '_')}" for key in local]
    shown = subprocess.run(["bash", "-c", f". {path}; " + "; ".join(f'echo "${n}"' for n in names)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown == [str(value) for value in local.values()]


@pytest.mark.parametrize("manager, expected", [
    ("yum", ["yum", "install", "-y", "cvmfs-{v}"]),
    ("dnf", ["dnf", "install", "-y", "cvmfs-{v}"]),
    ("apt-get", ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                 "cvmfs={v}"]),
])
def test_cvmfs_installs_the_asked_version_with_the_guest_package_manager(manager, expected) -> None:
    version = EXAMPLE["cvmfs"]["version"]
    steps = cvmfs.plan(EXAMPLE["cvmfs"], Facts({"package_manager": manager}))
    assert _commands(steps)[0] == [arg.format(v=version) for arg in expected]


def test_cvmfs_sets_up_and_probes_every_repository_after_writing_the_config() -> None:
    steps = cvmfs.plan(EXAMPLE["cvmfs"], Facts({"package_manager": "yum"}))
    repositories = EXAMPLE["cvmfs"]["local"]["repositories"].split(",")
    write = next(i for i, s in enumerate(steps) if isinstance(s, WriteFile))
    assert steps.index(Command(["cvmfs_config", "setup"])) > write
    assert steps[-1] == Command(["cvmfs_config", "probe"] + repositories)


def test_cvmfs_without_install_only_configures() -> None:
    steps = cvmfs.plan(dict(EXAMPLE["cvmfs"], install=False), Facts())
    assert [argv[0] for argv in _commands(steps)] == ["cvmfs_config", "cvmfs_config"]


def test_cvmfs_repositories_may_be_a_yaml_list() -> None:
    steps = cvmfs.plan({"install": False, "local": {"repositories": ["a.cern.ch", "b.cern.ch"]}},
                       Facts())
    assert "CVMFS_REPOSITORIES=a.cern.ch,b.cern.ch" in _default_local(steps).splitlines()


@pytest.mark.parametrize("config, facts, complaint", [
    ({"local": {"http-proxy": "DIRECT"}}, {"package_manager": "yum"}, "repositories is required"),
    ({"local": "alice.cern.ch"}, {}, "must be a mapping"),
    ({"local": {"repositories": "a", "bad key!": 1}}, {"package_manager": "yum"},
     "not a valid CernVM-FS parameter"),
    ({"local": {"repositories": "a"}}, {"package_manager": "pacman"}, "unsupported package manager"),
])
def test_cvmfs_refuses_bad_configs(config, facts, complaint: str) -> None:
    with pytest.raises(PlanError, match=complaint):
        cvmfs.plan(config, Facts(facts))


def test_cvmfs_without_a_package_manager_on_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PlanError, match="no supported package manager"):
        cvmfs.plan({"local": {"repositories": "a"}}, Facts())


# -- the cloud-init interface, dry-run, logs and summary -----------------------------------------

@pytest.fixture
def guest(monkeypatch, tmp_path: Path) -> dict[str, Path]:
    """Dry-run environment: logs, a root prefix and a facts file under tmp_path."""
    dirs = {"logs": tmp_path / "logs", "root": tmp_path / "root", "facts": tmp_path / "facts.yaml"}
    dirs["facts"].write_text(yaml.safe_dump({"vgs": f"  vg0 {VG_MIB}.00m {VG_MIB}.00m\n",
                                             "package_manager": "dnf"}))
    monkeypatch.setenv("IVFARM_CONTEXT_DRY_RUN", "1")
    monkeypatch.setenv("IVFARM_CONTEXT_LOG_DIR", str(dirs["logs"]))
    monkeypatch.setenv("IVFARM_CONTEXT_ROOT", str(dirs["root"]))
    monkeypatch.setenv("IVFARM_CONTEXT_FACTS", str(dirs["facts"]))
    return dirs


def _run(module, payload: str | None, filename: str = "part.ccfg") -> None:
    module.handle_part(None, "__begin__", None, None)
    if payload is not None:
        module.handle_part(None, module.list_types()[0], filename, payload)
    module.handle_part(None, "__end__", None, None)


def _summary(logs: Path) -> dict[str, str]:
    lines = (logs / "summary.log").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)


def test_handlers_claim_their_content_types() -> None:
    assert localfs.list_types() == ["text/localfs-config"]
    assert cvmfs.list_types() == ["text/cvmfs-config"]


def test_dry_run_logs_commands_and_writes_files_under_the_root(guest) -> None:
    _run(localfs, yaml.safe_dump({"localfs": EXAMPLE["localfs"]}))
    _run(cvmfs, yaml.safe_dump({"cvmfs": EXAMPLE["cvmfs"]}))
    log = (guest["logs"] / "localfs.log").read_text()
    assert re.search(r"DRY-RUN lvcreate --yes --name home --size \d+m vg0", log)
    fstab = (guest["root"] / "etc" / "fstab").read_text().splitlines()
    assert any(line.startswith("/dev/vg0/home /home ") for line in fstab)
    written = (guest["root"] / "etc" / "cvmfs" / "default.local").read_text()
    assert f"CVMFS_QUOTA_LIMIT={EXAMPLE['cvmfs']['local']['quota-limit']}" in written
    assert "DRY-RUN dnf install -y cvmfs-" in (guest["logs"] / "cvmfs.log").read_text()
    summary = _summary(guest["logs"])
    assert summary["localfs"].startswith("ok") and summary["cvmfs"].startswith("ok")


def test_rerunning_does_not_duplicate_fstab_lines(guest) -> None:
    for _ in range(2):
        _run(localfs, yaml.safe_dump({"localfs": EXAMPLE["localfs"]}))
    fstab = (guest["root"] / "etc" / "fstab").read_text().splitlines()
    assert len(fstab) == len(set(fstab)) == 4


def test_failures_are_recorded_not_raised(guest) -> None:
    _run(cvmfs, yaml.safe_dump({"cvmfs": EXAMPLE["cvmfs"]}))
    _run(localfs, yaml.safe_dump({"localfs": {"vg": "nosuchvg", "parts": {"home": 10}}}))
    summary = _summary(guest["logs"])
    assert summary["localfs"].startswith("FAILED") and "nosuchvg not found" in summary["localfs"]
    assert str(guest["logs"] / "localfs.log") in summary["localfs"]
    assert summary["cvmfs"].startswith("ok")
    assert "FAILED: volume group nosuchvg not found" in (guest["logs"] / "localfs.log").read_text()


@pytest.mark.parametrize("payload", ["{not: yaml", "just text", "cvmfs: 3", "- a\n- b\n", ""])
def test_garbage_payloads_fail_the_handler_only(guest, payload: str) -> None:
    _run(cvmfs, payload)
    assert _summary(guest["logs"])["cvmfs"].startswith("FAILED")


def test_a_handler_without_its_part_reports_nothing_to_do(guest) -> None:
    _run(cvmfs, None)
    assert _summary(guest["logs"])["cvmfs"].startswith("ok (no text/cvmfs-config part")


def test_real_run_stops_at_the_first_failing_command(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IVFARM_CONTEXT_LOG_DIR", str(tmp_path))
    monkeypatch.delenv("IVFARM_CONTEXT_DRY_RUN", raising=False)
    monkeypatch.setenv("IVFARM_CONTEXT_ROOT", str(tmp_path / "root"))
    marker = tmp_path / "root" / "after"
    handler = PartHandler("steps", lambda config, facts: [
        Command(["sh", "-c", "echo doing the work; exit 3"]), WriteFile("/after", "x")])
    handler.handle_part(None, "__begin__", None, None)
    handler.handle_part(None, "text/steps-config", "steps.ccfg", "steps: {}\n")
    handler.handle_part(None, "__end__", None, None)
    assert not marker.exists()
    assert "exited 3" in _summary(tmp_path)["steps"]
    assert "| doing the work" in (tmp_path / "steps.log").read_text()


def test_a_plan_that_crashes_is_still_recorded(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IVFARM_CONTEXT_LOG_DIR", str(tmp_path))
    handler = PartHandler("crashy", lambda config, facts: 1 / 0)
    handler.handle_part(None, "__begin__", None, None)
    handler.handle_part(None, "text/crashy-config", "c.ccfg", "crashy: {}\n")
    handler.handle_part(None, "__end__", None, None)
    assert _summary(tmp_path)["crashy"].startswith("FAILED (internal error")
    assert "ZeroDivisionError" in (tmp_path / "crashy.log").read_text()
