"""Races between state changes, interleaved deterministically through the test-driver hypervisor:
the final state is always one a user could explain (terminated stays terminated, no domain runs
for a terminated instance, quota usage matches the states)."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import HypervisorError, InvalidState, TransitionLost
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest, domain_name
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs import reconcile
from ivfarm.services.runtime import journal
from ivfarm.services.tenancy import quotas
from ivfarm.store.models import Farm, Instance, utcnow


@pytest.fixture
def world(db_cloud: Cloud, fake_host: Callable[..., str], raw_disk) -> tuple[Cloud, str, Farm]:  # type: ignore[no-untyped-def]
    uri = fake_host("w", cpus=16, memory_mb=32768)
    hosts.add_host(db_cloud, "w", uri, "worker")
    add_image(db_cloud, "base", raw_disk, public=True)
    return db_cloud, hosts.list_hosts(db_cloud)[0].uri, create_farm(db_cloud, FarmRequest(name="lab"))


def launch(cloud: Cloud, farm: Farm) -> str:
    [instance] = instances.launch(cloud, LaunchRequest(image="base", flavor="m1.small", farm_id=farm.id))
    return instance.id


def row(cloud: Cloud, instance_id: str) -> Instance:
    with cloud.store.read() as session:
        found = session.get(Instance, instance_id)
        assert found is not None
        return found


def in_another_thread(job: Callable[[], Any]) -> None:
    """Run ``job`` on its own thread (its own sessions, as another request would) and wait for it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def hook(monkeypatch: pytest.MonkeyPatch, cloud: Cloud, method: str, before: Callable[[], None] | None = None,
         after: Callable[[], None] | None = None) -> None:
    """Interleave: run ``before``/``after`` (once) around the next call of a hypervisor method."""
    real = getattr(cloud.hypervisor, method)
    fired: list[bool] = []

    def patched(*args: Any, **kwargs: Any) -> Any:
        first = not fired
        fired.append(True)
        if first and before is not None:
            before()
        result = real(*args, **kwargs)
        if first and after is not None:
            after()
        return result

    monkeypatch.setattr(cloud.hypervisor, method, patched)


def assert_explainable_termination(cloud: Cloud, uri: str, farm: Farm, instance_id: str) -> None:
    final = row(cloud, instance_id)
    assert final.state == "terminated" and final.ip is None and final.terminated_at is not None
    assert final.state_reason.startswith("Client.UserInitiatedShutdown")
    assert cloud.hypervisor.status(uri, domain_name(instance_id)) is None
    assert not [n for n in cloud.storage("worker").list_names(uri) if n.startswith(instance_id)]
    assert cloud.seeds.list_names(uri) == [] and cloud.consoles.list_names(uri) == []
    with cloud.store.read() as session:
        assert quotas.usage(session, farm.id).instances == 0
    assert hosts.show_host(cloud, "w").used_cpus == 0


@pytest.mark.parametrize("moment", ["before the domain is defined", "after the domain started"])
def test_terminate_landing_inside_provisioning_wins(world, monkeypatch, moment: str) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    terminate = lambda: in_another_thread(lambda: provisioning.terminate(cloud, instance_id))  # noqa: E731
    if moment.startswith("before"):
        hook(monkeypatch, cloud, "define_and_start", before=terminate)
    else:
        hook(monkeypatch, cloud, "define_and_start", after=terminate)
    provisioning.provision(cloud, instance_id)  # gives way: no error, nothing left behind
    assert_explainable_termination(cloud, uri, farm, instance_id)
    with pytest.raises(InvalidState):
        instances.start(cloud, instance_id)


def test_terminate_while_provisioning_waits_for_an_image_copy(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The terminate lands first of all (its teardown finds nothing yet); the build then finishes."""
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    storage = cloud.storage("worker")
    real = storage.prepare_image

    def slow_prepare(*args: Any) -> Any:
        in_another_thread(lambda: provisioning.terminate(cloud, instance_id))
        return real(*args)

    monkeypatch.setattr(storage, "prepare_image", slow_prepare)
    provisioning.provision(cloud, instance_id)
    assert_explainable_termination(cloud, uri, farm, instance_id)


def test_stop_overtaken_by_terminate_reports_the_winner(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    provisioning.provision(cloud, instance_id)
    hook(monkeypatch, cloud, "stop", after=lambda: in_another_thread(lambda: provisioning.terminate(cloud, instance_id)))
    with pytest.raises(TransitionLost) as lost:
        instances.stop(cloud, instance_id, force=True)
    assert isinstance(lost.value, InvalidState) and lost.value.found == "terminated"
    assert_explainable_termination(cloud, uri, farm, instance_id)


def test_a_stop_after_a_terminate_began_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    provisioning.provision(cloud, instance_id)
    assert provisioning.begin_terminate(cloud, instance_id) == "running"
    with pytest.raises(InvalidState):
        instances.stop(cloud, instance_id)
    assert row(cloud, instance_id).state == "shutting-down"
    provisioning.teardown(cloud, instance_id)
    assert_explainable_termination(cloud, uri, farm, instance_id)


def lapse(cloud: Cloud, instance_id: str, owner: str = "another-controller:4242") -> None:
    """Make the instance the work of a process on another controller, last heard of 10 minutes ago."""
    with cloud.store.write() as session:
        instance = session.get(Instance, instance_id)
        instance.owner, instance.heartbeat_at = owner, utcnow() - dt.timedelta(minutes=10)


def test_reconcile_leaves_a_launch_with_a_live_heartbeat_alone(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    cloud.storage("worker").create_blank(uri, f"{instance_id}-root.qcow2", 1024)  # half-built
    with cloud.store.write() as session:  # owned by another controller that renews its heartbeat
        session.get(Instance, instance_id).owner = "another-controller:4242"
    report = reconcile.reconcile(cloud)
    assert report.findings == [] and report.errors == []
    assert row(cloud, instance_id).state == "pending"
    assert cloud.storage("worker").exists(uri, f"{instance_id}-root.qcow2")


def test_reconcile_rolls_back_a_launch_whose_heartbeat_lapsed(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    cloud.storage("worker").create_blank(uri, f"{instance_id}-root.qcow2", 1024)
    lapse(cloud, instance_id)
    report = reconcile.reconcile(cloud)
    assert [(f.kind, f.action) for f in report.findings] == [("instance", "roll back")] and report.errors == []
    final = row(cloud, instance_id)
    assert final.state == "terminated" and final.state_reason == "Server.InternalError: provisioning was interrupted"
    assert not cloud.storage("worker").exists(uri, f"{instance_id}-root.qcow2")
    assert report.usage["lab"]["instances"] == 0


def test_an_instance_launched_while_reconcile_scans_is_not_rolled_back(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    launched: list[str] = []
    real_scan = reconcile.scan

    def scan_then_launch(c: Cloud) -> Any:
        inventory = real_scan(c)  # the launch is not in what the hosts reported...
        launched.append(launch(cloud, farm))
        cloud.storage("worker").create_blank(uri, f"{launched[0]}-root.qcow2", 1024)  # ...and is being built
        return inventory

    monkeypatch.setattr(reconcile, "scan", scan_then_launch)
    report = reconcile.reconcile(cloud)
    assert report.findings == [] and report.errors == []
    assert row(cloud, launched[0]).state == "pending"
    assert cloud.storage("worker").exists(uri, f"{launched[0]}-root.qcow2")
    provisioning.provision(cloud, launched[0])
    assert row(cloud, launched[0]).state == "running"


def test_reconcile_gives_way_to_work_claimed_after_it_looked(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Judged stuck, then taken over by a live process before reconcile acts: the repair gives way."""
    cloud, uri, farm = world
    instance_id = launch(cloud, farm)
    lapse(cloud, instance_id)
    real_take = reconcile._Run._take

    def claimed_first(self: Any, *args: Any, **kwargs: Any) -> None:
        provisioning.begin_terminate(cloud, instance_id)  # a user's terminate, owned by a live process
        real_take(self, *args, **kwargs)

    monkeypatch.setattr(reconcile._Run, "_take", claimed_first)
    report = reconcile.reconcile(cloud)
    assert [(f.kind, f.action) for f in report.findings] == [("instance", "none")] and report.errors == []
    assert "changed meanwhile" in report.findings[0].detail
    assert row(cloud, instance_id).state == "shutting-down" and row(cloud, instance_id).owner == journal.me()


def test_a_failing_repair_is_reported_and_the_pass_goes_on(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    broken, died = launch(cloud, farm), launch(cloud, farm)
    for instance_id in (broken, died):
        provisioning.provision(cloud, instance_id)
    cloud.hypervisor.undefine(uri, domain_name(broken))  # vanished: reconcile will terminate it...
    cloud.hypervisor.stop(uri, domain_name(died), force=True)  # died: reconcile will mark it stopped
    storage = cloud.storage("worker")
    real_delete = storage.delete

    def failing_delete(host_uri: str, name: str) -> None:
        if name.startswith(broken):  # ...but its host refuses to delete its disks
            raise HypervisorError(f"cannot delete {name}: host says no")
        real_delete(host_uri, name)

    monkeypatch.setattr(storage, "delete", failing_delete)
    orphan = "i-0000000000000000a"
    storage.create_blank(uri, f"{orphan}-root.qcow2", 1024)
    report = reconcile.reconcile(cloud)
    assert len(report.errors) == 1 and report.errors[0].startswith(f"instance {broken}: cannot delete")
    assert sorted((f.kind, f.target, f.action) for f in report.findings) == sorted([
        ("instance", broken, "terminate"), ("instance", died, "mark stopped"),
        ("volume", f"w:{orphan}-root.qcow2", "remove")])
    assert row(cloud, died).state == "stopped" and not storage.exists(uri, f"{orphan}-root.qcow2")
    assert row(cloud, broken).state == "shutting-down"  # left for the next pass, not lost
    assert report.usage["lab"]["instances"] == 1  # the pass went on to routers and usage
    monkeypatch.setattr(storage, "delete", real_delete)
    lapse(cloud, broken)
    assert [(f.target, f.action) for f in reconcile.reconcile(cloud).findings] == [(broken, "finish terminating")]
    assert row(cloud, broken).state == "terminated"


def test_the_heartbeat_renews_the_work_of_this_process(world) -> None:  # type: ignore[no-untyped-def]
    cloud, uri, farm = world
    cloud.config.data["journal"]["heartbeat_s"] = 0.05
    instance_id = launch(cloud, farm)
    old = utcnow() - dt.timedelta(minutes=10)
    with cloud.store.write() as session:
        session.get(Instance, instance_id).heartbeat_at = old
    stale = row(cloud, instance_id).heartbeat_at
    with journal.operation(cloud, "migrate", "i-00000000000000001"):
        deadline = utcnow() + dt.timedelta(seconds=20)
        while row(cloud, instance_id).heartbeat_at == stale:
            assert utcnow() < deadline, "the heartbeat was not renewed"
            threading.Event().wait(0.05)
        with cloud.store.read() as session:
            assert journal.target_busy(cloud, session, "i-00000000000000001")
    assert journal.owner_alive(cloud, "another-controller:1", utcnow())
    assert not journal.owner_alive(cloud, "another-controller:1", old)
    assert not journal.owner_alive(cloud, "another-controller:1", None)
