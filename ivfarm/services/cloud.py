"""The cloud: configuration, store and drivers wired together once, handed to every service."""
from __future__ import annotations

import os
from pathlib import Path

from drivers.hypervisor.libvirt_driver import LibvirtHypervisor
from drivers.storage.base import BaseImage, Storage
from drivers.storage.files import HostFiles
from drivers.storage.gluster import GlusterStorage
from drivers.storage.lvm import LvmStorage
from drivers.storage.qcow2 import Qcow2DirStorage
from ivfarm.config import Config
from ivfarm.errors import ConfigError
from ivfarm.services.scheduler import Scheduler
from ivfarm.store import Store


class Cloud:
    """Everything a service needs; build one per process with ``Cloud(config)``."""

    def __init__(self, config: Config, store: Store | None = None, hypervisor: LibvirtHypervisor | None = None) -> None:
        self.config = config
        self.store = store or Store(config.database_url)
        self.hypervisor = hypervisor or LibvirtHypervisor(config.get("hypervisor.domain_type"))
        connect = self.hypervisor.connection
        state = config.state_dir
        self.cloud_id = str(config.get("cloud_id"))
        self.seeds = HostFiles(connect, state / "seeds", f"{self.cloud_id}-seeds")
        self.consoles = HostFiles(connect, state / "console", f"{self.cloud_id}-console")
        self.scheduler = Scheduler(
            {"worker": config.get("scheduler.worker_policy"), "service": config.get("scheduler.service_policy")}
        )
        self._storage: dict[str, Storage] = {}

    def prepare_state_dir(self) -> None:
        """Create the state directory tree, traversable by the hypervisor's unprivileged user."""
        for sub in ("", "images", "disks", "seeds", "console", "run"):
            path = self.config.state_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o755)

    def storage(self, host_class: str) -> Storage:
        """The storage backend configured for a hypervisor class."""
        if host_class not in self._storage:
            self._storage[host_class] = self._make_storage(host_class)
        return self._storage[host_class]

    def _make_storage(self, host_class: str) -> Storage:
        backend = self.config.get(f"storage.{host_class}.backend")
        connect = self.hypervisor.connection
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
        raise ConfigError(f"unknown storage backend {backend!r} for {host_class} hosts "
                          f"(worker: qcow2 or lvm; service: qcow2 or gluster)")

    def _image_cache(self, uri: str, image: BaseImage) -> BaseImage:
        # image_sync is a service built on the cloud: imported when first needed
        from ivfarm.services.image_sync import ensure_cached

        return ensure_cached(self, uri, image)
