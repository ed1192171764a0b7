"""Storage backends by class: pool and volume XML, configuration, LVM on libvirt's test driver."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from drivers.storage.gluster import FS_NS, GlusterStorage, gluster_pool_xml
from drivers.storage.lvm import LvmStorage, logical_pool_xml, lv_name, lv_volume_xml
from drivers.storage.qcow2 import Qcow2DirStorage
from ivfarm.cloud import Cloud
from ivfarm.errors import ConfigError

GIB = 1024**3


def test_gluster_pool_mounts_the_volume_with_backup_servers() -> None:
    pool = ET.fromstring(gluster_pool_xml("c-gluster", "gv0", ["gl1", "gl2", "gl3"], "/var/lib/ivfarm/gluster"))
    assert pool.get("type") == "netfs"
    assert pool.find("source/host").get("name") == "gl1"
    assert pool.find("source/dir").get("path") == "/gv0"
    assert pool.find("source/format").get("type") == "glusterfs"
    assert pool.findtext("target/path") == "/var/lib/ivfarm/gluster"
    option = pool.find(f"{{{FS_NS}}}mount_opts/{{{FS_NS}}}option")
    assert option.get("name") == "backup-volfile-servers=gl2:gl3"
    single = ET.fromstring(gluster_pool_xml("c-gluster", "gv0", ["gl1"], "/m"))
    assert single.find(f"{{{FS_NS}}}mount_opts") is None


def test_logical_pool_and_fully_allocated_volumes() -> None:
    pool = ET.fromstring(logical_pool_xml("c-lvm", "vg0", ["/dev/sdb", "/dev/sdc"]))
    assert pool.get("type") == "logical"
    assert [d.get("path") for d in pool.findall("source/device")] == ["/dev/sdb", "/dev/sdc"]
    assert pool.findtext("source/name") == "vg0" and pool.findtext("target/path") == "/dev/vg0"
    vol = ET.fromstring(lv_volume_xml("i-1-root", 3 * GIB))
    assert vol.findtext("capacity") == vol.findtext("allocation") == str(3 * GIB)  # no sparse snapshot LV
    assert lv_name("i-0123-root.qcow2") == "i-0123-root"


@pytest.mark.parametrize("storage,kind", [
    ({"worker": {"backend": "lvm", "lvm": {"volume_group": "vg0"}}}, LvmStorage),
    ({"service": {"backend": "gluster", "gluster": {"volume": "gv0", "hosts": ["gl1"]}}}, GlusterStorage),
    ({}, Qcow2DirStorage),
])
def test_backends_are_chosen_by_class_from_the_configuration(cloud_factory: Callable[..., Cloud], storage, kind) -> None:  # type: ignore[no-untyped-def]
    built = cloud_factory(storage=storage)
    host_class = next(iter(storage), "worker")
    backend = built.storage(host_class)
    assert isinstance(backend, kind)
    assert backend.shared == (kind is GlusterStorage)


def test_a_shared_directory_is_shared_on_the_sites_word(cloud_factory: Callable[..., Cloud], tmp_path) -> None:  # type: ignore[no-untyped-def]
    built = cloud_factory(storage={"service": {"backend": "shared", "shared": {"dir": str(tmp_path / "nfs")}}})
    backend = built.storage("service")
    assert isinstance(backend, Qcow2DirStorage) and backend.directory == tmp_path / "nfs"
    assert backend.shared and backend.vouched_shared  # live migration, past libvirt's own check
    assert not built.storage("worker").vouched_shared


@pytest.mark.parametrize("storage,match", [
    ({"service": {"backend": "lvm"}}, "storage.service.backend: expected one of qcow2, gluster, shared, got 'lvm'"),
    ({"worker": {"backend": "gluster"}}, "storage.worker.backend: expected one of qcow2, lvm, got 'gluster'"),
])
def test_wrong_backends_are_refused_with_the_configuration(cloud_factory: Callable[..., Cloud], storage,  # type: ignore[no-untyped-def]
                                                           match: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(match)):
        cloud_factory(storage=storage)


def test_gluster_without_servers_is_a_clear_error(cloud_factory: Callable[..., Cloud]) -> None:
    built = cloud_factory(storage={"service": {"backend": "gluster"}})
    with pytest.raises(ConfigError, match="needs a volume and at least one server"):
        built.storage("service")


def test_lvm_volumes_on_the_test_driver(cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str]) -> None:
    built = cloud_factory(storage={"worker": {"backend": "lvm", "lvm": {"volume_group": "vg0"}}})  # an existing VG
    uri = fake_host("lvm-host")
    lvm = built.storage("worker")
    disk = lvm.create_blank(uri, "i-00000001-ephemeral.qcow2", 2 * GIB)
    assert (disk.source_type, disk.disk_format, disk.path) == ("block", "raw", "/dev/vg0/i-00000001-ephemeral")
    assert lvm.exists(uri, "i-00000001-ephemeral.qcow2") and "i-00000001-ephemeral" in lvm.list_names(uri)
    assert lvm.disk(uri, "i-00000001-ephemeral").path == disk.path
    lvm.delete(uri, "i-00000001-ephemeral.qcow2")
    assert not lvm.exists(uri, "i-00000001-ephemeral.qcow2")
