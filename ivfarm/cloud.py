"""The composition root: configuration, store and every driver backend, built once per cloud.

Services receive a ``Cloud`` typed as ``ivfarm.services.runtime.context.CloudContext``; only the
command line, the EC2 server and tests build one.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import libvirt

from drivers.hypervisor.base import Hypervisor
from drivers.hypervisor.libvirt_driver import LibvirtHypervisor
from drivers.network.base import FarmSegments
from drivers.network.libvirt_bridge import LibvirtBridgeSegments
from drivers.network.vxlan import VxlanSegments
from drivers.storage.base import BaseImage, Storage
from drivers.storage.files import HostFiles
from drivers.storage.gluster import GlusterStorage
from drivers.storage.lvm import LvmStorage
from drivers.storage.qcow2 import Qcow2DirStorage
from ivfarm.config import Config
from ivfarm.errors import ConfigError
from ivfarm.services.images.image_sync import ensure_cached
from ivfarm.services.network.router_vm import openwrt_backend
from ivfarm.services.network.segment_peers import host_link, host_netns
from ivfarm.services.runtime.driver_errors import driver_calls, translated
from ivfarm.store import Store
from ivfarm.store.sealing import Sealer
from vrouter.base import RouterBackend
from vrouter.errors import RouterError
from vrouter.netns import NetnsRouter
from vrouter.public import PublicSegment

ROUTER_BACKENDS = ("netns", "openwrt", "none")


# directory -> mode: QEMU's user traverses the state directory (0711) to the trees it reads
STATE_DIR_MODES = {"": 0o711, "images": 0o755, "disks": 0o755, "seeds": 0o755, "console": 0o755, "run": 0o700,
                   "dhcp": 0o711}


class Cloud:
    """Everything a service needs; build one per process with ``Cloud(config)``."""

    def __init__(self, config: Config, store: Store | None = None, hypervisor: LibvirtHypervisor | None = None) -> None:
        self.config = config
        self.store = store or Store(config.database_url, Sealer(config.secret_key_file))
        libvirt_hypervisor = hypervisor or LibvirtHypervisor(config.get("hypervisor.domain_type"))
        self.hypervisor: Hypervisor = translated(libvirt_hypervisor)
        connect = libvirt_hypervisor.connection
        state = config.state_dir
        self.cloud_id = str(config.get("cloud_id"))
        self.seeds = translated(HostFiles(connect, state / "seeds", f"{self.cloud_id}-seeds"))
        self.consoles = translated(HostFiles(connect, state / "console", f"{self.cloud_id}-console"))
        self.segments: FarmSegments = translated(self._make_segments(connect))
        self.public_segment = self._make_public_segment()
        self._connect = connect
        self._storage: dict[str, Storage] = {}
        self._routers: dict[str, RouterBackend | None] = {}

    def prepare_state_dir(self) -> None:
        """Create the state directory tree, or repair its modes, whatever the umask: the hypervisor's
        unprivileged user may traverse it to reach images, disks, seeds and console logs, but nobody
        else lists it or reads the database (with its -wal and -shm), the secret key file or run/."""
        for sub, mode in STATE_DIR_MODES.items():
            path = self.config.state_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
        secrets = [self.config.secret_key_file]
        if self.store.is_sqlite:
            database = Path(self.store.url.removeprefix("sqlite:///"))
            secrets += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        for path in secrets:
            if path.exists():
                os.chmod(path, 0o600)

    def storage(self, host_class: str) -> Storage:
        """The storage backend configured for a hypervisor class (built on first use, then kept)."""
        if host_class not in self._storage:
            with driver_calls():
                self._storage[host_class] = translated(self._make_storage(host_class))
        return self._storage[host_class]

    def router_backend(self, name: str) -> RouterBackend | None:
        """The router backend called ``name`` (built on first use, then kept); None for ``none``."""
        if name not in self._routers:
            self._routers[name] = self._make_router_backend(name)
        return self._routers[name]

    def _make_segments(self, connect: Callable[[str], libvirt.virConnect]) -> FarmSegments:
        if self.config.get("network.segments") == "vxlan":
            vxlan = self.config.get("network.vxlan")
            return VxlanSegments(lambda uri: host_link(self.store, uri), vxlan["vni_base"], vxlan["port"])
        return LibvirtBridgeSegments(connect, self.config.get("network.trunk_interface"))

    def _make_public_segment(self) -> PublicSegment:
        public = self.config.get("network.public")
        try:
            return PublicSegment(bridge=public["bridge"], netns=public["netns"], cidr=public["cidr"],
                                 gateway=public["gateway"])
        except RouterError as exc:
            raise ConfigError(f"network.public: {exc}") from exc

    def _make_router_backend(self, name: str) -> RouterBackend | None:
        if name == "none":
            return None
        if name == "netns":
            return NetnsRouter(self.public_segment, self.config.state_dir / "run" / "routers",
                               self.config.state_dir / "dhcp",
                               segment_netns=host_netns(self.store, str(self.config.get("vrouter.host_uri"))))
        if name == "openwrt":
            return openwrt_backend(self)
        raise ConfigError(f"unknown virtual router backend {name!r} (use {', '.join(ROUTER_BACKENDS)})")

    def _make_storage(self, host_class: str) -> Storage:
        backend = self.config.get(f"storage.{host_class}.backend")
        connect = self._connect
        if backend == "qcow2":
            return Qcow2DirStorage(connect, self.config.state_dir / "disks", f"{self.cloud_id}-disks",
                                   image_cache=self._image_cache)
        if backend == "lvm" and host_class == "worker":
            lvm = self.config.get("storage.worker.lvm")
            return LvmStorage(connect, lvm["volume_group"], lvm["devices"], f"{self.cloud_id}-lvm",
                              f"{self.cloud_id}-cache", self._image_cache)
        if backend == "gluster" and host_class == "service":
            gluster = self.config.get("storage.service.gluster")
            return GlusterStorage(connect, gluster["volume"], gluster["hosts"], Path(gluster["mount"]),
                                  f"{self.cloud_id}-gluster", self.config.state_dir / "run")
        if backend == "shared" and host_class == "service":
            return Qcow2DirStorage(connect, Path(self.config.get("storage.service.shared.dir")),
                                   f"{self.cloud_id}-shared", image_cache=self._image_cache, vouched_shared=True)
        raise ConfigError(f"unknown storage backend {backend!r} for {host_class} hosts "
                          f"(worker: qcow2 or lvm; service: qcow2, gluster or shared)")

    def _image_cache(self, uri: str, image: BaseImage) -> BaseImage:
        return ensure_cached(self, uri, image)
