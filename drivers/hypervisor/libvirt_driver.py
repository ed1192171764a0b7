"""libvirt implementation of the hypervisor interface (any URI: qemu, qemu+ssh, test)."""
from __future__ import annotations

import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from drivers.errors import HostUnreachable, HypervisorError
from drivers.hypervisor.base import DomainCounters, DomainStatus, HostFeatures, HostInfo, Hypervisor
from drivers.hypervisor.devices import disk_element, disk_targets, with_disk, without_disk
from drivers.storage.base import Disk
from drivers.uris import uri_is_local

METADATA_NS = "https://ivfarm.org/xmlns/libvirt/1.0"
METADATA_KEY = "ivfarm"

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_SHUTDOWN: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
    libvirt.VIR_DOMAIN_SHUTOFF: "stopped",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
}

# libvirt prints every error on stderr by default; ivfarm reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def domain_tags(dom: libvirt.virDomain) -> tuple[str | None, str | None]:
    """(instance id, cloud id) stored in the domain's ivfarm metadata; Nones for foreign domains."""
    try:
        raw = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    except libvirt.libvirtError:
        return None, None
    tree = ET.fromstring(raw)
    return tree.findtext("id"), tree.findtext("cloud")


def _counters(dom: libvirt.virDomain) -> DomainCounters:
    """CPU time (all vCPUs) and the bytes of every NIC, from the guest's side (libvirt swaps tap counters)."""
    cpu_time = int(dom.getCPUStats(True)[0]["cpu_time"])
    rx = tx = 0
    for target in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/interface/target"):
        device = target.get("dev")
        if device:
            stats = dom.interfaceStats(device)
            rx, tx = rx + max(0, int(stats[0])), tx + max(0, int(stats[4]))
    return DomainCounters(boot_id=int(dom.ID()), cpu_time_ns=cpu_time, rx_bytes=rx, tx_bytes=tx)


class LibvirtHypervisor(Hypervisor):
    """Keeps one connection per URI for the life of the process (test:///file URIs need that)."""

    def __init__(self, domain_type: str = "qemu") -> None:
        self.domain_type = domain_type
        self._conns: dict[str, libvirt.virConnect] = {}
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------
    def connection(self, uri: str) -> libvirt.virConnect:
        """An open connection to ``uri``, reopened if it died."""
        with self._lock:
            conn = self._conns.get(uri)
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
            try:
                conn = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                raise HostUnreachable(f"cannot connect to hypervisor {uri}: {exc.get_error_message()}") from exc
            self._conns[uri] = conn
            return conn

    def forget(self, uri: str) -> None:
        """Drop the cached connection to ``uri`` (after its host went away)."""
        with self._lock:
            conn = self._conns.pop(uri, None)
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def _domain(self, uri: str, name: str) -> libvirt.virDomain:
        try:
            return self.connection(uri).lookupByName(name)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"domain {name} on {uri}: {exc.get_error_message()}") from exc

    # -- interface ---------------------------------------------------------------------------
    def features(self, uri: str) -> HostFeatures:
        scheme = urllib.parse.urlparse(uri).scheme.split("+")[0]
        real = scheme != "test"
        return HostFeatures(
            real_guests=real,
            local=uri_is_local(uri),
            nwfilter=real,
            live_migration=real,
            domain_type=self.domain_type if real else "test",
            hotplug=real,
            storage_resize=real,
        )

    def probe(self, uri: str) -> HostInfo:
        conn = self.connection(uri)
        try:
            info = conn.getInfo()
            hostname = conn.getHostname()
        except libvirt.libvirtError as exc:
            raise HostUnreachable(f"hypervisor {uri} does not answer: {exc.get_error_message()}") from exc
        return HostInfo(cpus=int(info[2]), memory_mb=int(info[1]), hostname=hostname)

    def define_and_start(self, uri: str, xml: str, start: bool = True) -> None:
        conn = self.connection(uri)
        try:
            dom = conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot define domain on {uri}: {exc.get_error_message()}") from exc
        if start:
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                dom.undefine()
                raise HypervisorError(f"cannot start domain on {uri}: {exc.get_error_message()}") from exc

    def start(self, uri: str, name: str) -> None:
        dom = self._domain(uri, name)
        if dom.isActive():
            return
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot start {name} on {uri}: {exc.get_error_message()}") from exc

    def stop(self, uri: str, name: str, force: bool = False, timeout_s: float = 30.0) -> None:
        dom = self._domain(uri, name)
        if not dom.isActive():
            return
        if not force:
            try:
                dom.shutdown()
            except libvirt.libvirtError:
                force = True
            deadline = time.monotonic() + timeout_s
            while not force and time.monotonic() < deadline:
                if not dom.isActive():
                    return
                time.sleep(0.2)
        try:
            dom.destroy()
        except libvirt.libvirtError as exc:
            if dom.isActive():
                raise HypervisorError(f"cannot stop {name} on {uri}: {exc.get_error_message()}") from exc

    def reboot(self, uri: str, name: str) -> None:
        dom = self._domain(uri, name)
        try:
            dom.reset(0)
        except libvirt.libvirtError:
            try:
                dom.reboot(0)
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"cannot reboot {name} on {uri}: {exc.get_error_message()}") from exc

    def undefine(self, uri: str, name: str) -> None:
        conn = self.connection(uri)
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot remove {name} on {uri}: {exc.get_error_message()}") from exc

    def status(self, uri: str, name: str) -> DomainStatus | None:
        try:
            dom = self.connection(uri).lookupByName(name)
        except libvirt.libvirtError:
            return None
        return self._status(dom)

    @staticmethod
    def _status(dom: libvirt.virDomain) -> DomainStatus:
        state = dom.state()[0]
        instance_id, cloud = domain_tags(dom)
        return DomainStatus(name=dom.name(), ivfarm_id=instance_id, cloud=cloud, state=_STATES.get(state, "other"))

    def list_domains(self, uri: str) -> list[DomainStatus]:
        try:
            domains = self.connection(uri).listAllDomains()
        except libvirt.libvirtError as exc:
            raise HostUnreachable(f"cannot list domains on {uri}: {exc.get_error_message()}") from exc
        return [self._status(dom) for dom in domains]

    def domain_counters(self, uri: str) -> dict[str, DomainCounters]:
        try:
            domains = self.connection(uri).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise HostUnreachable(f"cannot list domains on {uri}: {exc.get_error_message()}") from exc
        counters = {}
        for dom in domains:
            try:
                counters[dom.name()] = _counters(dom)
            except libvirt.libvirtError:
                continue  # it stopped while we read it: not running, no counters
        return counters

    def domain_xml(self, uri: str, name: str) -> str:
        return self._domain(uri, name).XMLDesc(0)

    def define_filter(self, uri: str, xml: str) -> None:
        conn = self.connection(uri)
        tree = ET.fromstring(xml)
        try:  # a redefinition must carry the filter's uuid
            existing = conn.nwfilterLookupByName(tree.get("name", ""))
        except libvirt.libvirtError:
            existing = None
        if existing is not None and tree.find("uuid") is None:
            ET.SubElement(tree, "uuid").text = existing.UUIDString()
            xml = ET.tostring(tree, encoding="unicode")
        try:
            conn.nwfilterDefineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot define nwfilter on {uri}: {exc.get_error_message()}") from exc

    def undefine_filter(self, uri: str, name: str) -> None:
        try:
            found = self.connection(uri).nwfilterLookupByName(name)
        except libvirt.libvirtError:
            return
        try:
            found.undefine()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot remove nwfilter {name} on {uri}: {exc.get_error_message()}") from exc

    def migrate(self, uri: str, name: str, dest_uri: str, live: bool, vouched_shared: bool = False) -> None:
        dom = self._domain(uri, name)
        flags = (
            libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_TUNNELLED
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        )
        if vouched_shared:
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        if live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        else:
            flags |= libvirt.VIR_MIGRATE_OFFLINE
        try:
            dom.migrateToURI3(dest_uri, {}, flags)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot migrate {name} to {dest_uri}: {exc.get_error_message()}") from exc

    # -- disks -------------------------------------------------------------------------------
    def _redefine(self, uri: str, dom: libvirt.virDomain, change: Callable[[str], str]) -> None:
        """Change the domain's definition only (the test driver has no device hot-plug)."""
        xml = change(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        try:
            self.connection(uri).defineXML(xml)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot redefine {dom.name()} on {uri}: {exc.get_error_message()}") from exc

    def disk_targets(self, uri: str, name: str) -> list[str]:
        return disk_targets(self._domain(uri, name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

    def attach_disk(self, uri: str, name: str, disk: Disk, target: str) -> None:
        dom = self._domain(uri, name)
        element = disk_element(disk, target)
        if not self.features(uri).hotplug:
            if target not in self.disk_targets(uri, name):
                self._redefine(uri, dom, lambda xml: with_disk(xml, element))
            return
        live = bool(dom.isActive())
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0)
        if target in self.disk_targets(uri, name) and (not live or target in disk_targets(dom.XMLDesc(0))):
            return  # a re-run after a takeover
        try:
            dom.attachDeviceFlags(ET.tostring(element, encoding="unicode"), flags)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot attach {disk.name} to {name} on {uri}: {exc.get_error_message()}") from exc

    def detach_disk(self, uri: str, name: str, target: str, timeout_s: float) -> None:
        dom = self._domain(uri, name)
        if not self.features(uri).hotplug:
            self._redefine(uri, dom, lambda xml: without_disk(xml, target)[0])
            return
        if dom.isActive():
            device = without_disk(dom.XMLDesc(0), target)[1]
            if device is not None:
                try:
                    dom.detachDeviceFlags(device, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as exc:
                    raise HypervisorError(f"cannot detach {target} from {name}: {exc.get_error_message()}") from exc
                deadline = time.monotonic() + timeout_s
                while target in disk_targets(dom.XMLDesc(0)):  # the guest lets go of the device
                    if time.monotonic() > deadline:
                        raise HypervisorError(f"the guest of {name} did not release {target} in {timeout_s:.0f} s")
                    time.sleep(0.1)
        device = without_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), target)[1]
        if device is not None:
            try:
                dom.detachDeviceFlags(device, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"cannot detach {target} from {name}: {exc.get_error_message()}") from exc

    def resize_disk(self, uri: str, name: str, target: str, size_bytes: int) -> None:
        try:
            self._domain(uri, name).blockResize(target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot resize {target} of {name}: {exc.get_error_message()}") from exc

    def backup_disk(self, uri: str, name: str, target: str, dest_path: str, timeout_s: float) -> None:
        dom = self._domain(uri, name)
        backup = ET.Element("domainbackup", mode="push")
        disks = ET.SubElement(backup, "disks")
        for present in disk_targets(dom.XMLDesc(0)):
            if present != target:
                ET.SubElement(disks, "disk", name=present, backup="no")
                continue
            disk = ET.SubElement(disks, "disk", name=present, backup="yes", type="file")
            ET.SubElement(disk, "target", file=dest_path)
            ET.SubElement(disk, "driver", type="qcow2")
        try:
            dom.backupBegin(ET.tostring(backup, encoding="unicode"), None,
                            libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
            deadline = time.monotonic() + timeout_s
            while dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                if time.monotonic() > deadline:
                    dom.abortJob()
                    raise HypervisorError(f"the backup of {target} of {name} took over {timeout_s:.0f} s")
                time.sleep(0.05)
            outcome = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED).get("type")
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot back up {target} of {name}: {exc.get_error_message()}") from exc
        if outcome != libvirt.VIR_DOMAIN_JOB_COMPLETED:
            raise HypervisorError(f"the backup of {target} of {name} did not complete (job type {outcome})")
