"""Issue 13, item 10: the fence command runs without a shell, its placeholders filled per argument.

Literal braces in the command do not crash reconcile, and shell syntax in a host's name (or in a
command that quotes its placeholder) is never interpreted.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts
from ivfarm.services.compute.host_failure import check_hosts
from ivfarm.store.models import Host


def dead_host(cloud: Cloud, fake_host: Callable[..., str], name: str) -> None:
    """A registered host that no longer answers, renamed to ``name`` as a row could be."""
    uri = fake_host("h1")
    hosts.add_host(cloud, "h1", uri, "worker")
    with cloud.store.write() as session:
        session.scalar(select(Host).where(Host.name == "h1")).name = name  # type: ignore[union-attr]
    Path(uri.removeprefix("test://")).unlink()
    cloud.hypervisor.forget(uri)


def test_literal_braces_do_not_crash_and_the_name_is_passed(cloud_factory: Callable[..., Cloud],
                                                            fake_host: Callable[..., str]) -> None:
    cloud = cloud_factory(hosts={"fence_command": "echo {x} {name} {{y}}"})
    dead_host(cloud, fake_host, "h1")
    [check] = check_hosts(cloud, grace_s=0).hosts
    assert check.fence is not None and check.fence["exit_code"] == 0
    assert check.fence["output"] == "{x} h1 {{y}}\n" and check.status == "fenced"


def test_shell_syntax_in_a_host_name_is_not_run(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str],
                                                tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    cloud = cloud_factory(hosts={"fence_command": "echo '{name}'"})  # a quoted placeholder, as admins write
    dead_host(cloud, fake_host, f"h;touch {pwned}")
    [check] = check_hosts(cloud, grace_s=0).hosts
    assert not pwned.exists()
    assert check.fence is not None and check.fence["output"] == f"h;touch {pwned}\n"


def test_placeholders_are_replaced_inside_each_argument_only() -> None:
    from ivfarm.services.compute.host_failure import fence_argv

    argv = fence_argv("ipmi-off --host={name} --uri '{uri}' $(reboot)", "h 1", "qemu+ssh://h/system")
    assert argv == ["ipmi-off", "--host=h 1", "--uri", "qemu+ssh://h/system", "$(reboot)"]
