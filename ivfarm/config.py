"""ivfarm configuration: one YAML file, every key with a sane default.

Lookup order for the file: ``--config``, else ``$IVFARM_CONFIG``, else ``/etc/ivfarm/ivfarm.yaml``
(a missing default file is fine; a missing explicit file is an error). ``$IVFARM_DATABASE``
overrides ``database``.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivfarm.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/ivfarm/ivfarm.yaml")

DEFAULTS: dict[str, Any] = {
    "state_dir": "/var/lib/ivfarm",
    # Names this cloud on shared hypervisors: its storage pools are <cloud_id>-disks, -seeds, -console
    # and its domains carry it in their metadata, so reconcile never touches another cloud's resources.
    "cloud_id": "ivfarm",
    "database": None,  # None -> sqlite:///<state_dir>/ivfarm.db
    "hypervisor": {
        "domain_type": "qemu",  # "kvm" where hardware virtualisation works
        "machine": "pc",
        "shutdown_timeout_s": 30,  # ACPI shutdown grace before a stop powers the VM off
        "cpu_allocation_ratio": 1.0,
        "memory_allocation_ratio": 1.0,
        "disk_gb": 500,  # schedulable local disk per host when libvirt cannot tell
    },
    "scheduler": {"worker_policy": "pack", "service_policy": "stripe"},
    "storage": {
        # qcow2: overlays on the host's cached image (the repository's when the host has no ssh_target);
        # lvm: logical volumes of a volume group, the image copied from the host's cache.
        "worker": {"backend": "qcow2", "lvm": {"volume_group": "ivfarm", "devices": []}},
        # qcow2: local overlays (single host); gluster: overlays on a GlusterFS volume every service
        # host mounts (netfs pool, fuse), base images copied onto it once: live migration, failover.
        "service": {
            "backend": "qcow2",
            "gluster": {"volume": "ivfarm", "hosts": [], "mount": "/var/lib/ivfarm/gluster"},
        },
    },
    # Per-host image cache for workers, filled in waves over SSH (rsync) by `ivfarm image sync`.
    "image_cache": {
        "dir": "/var/lib/ivfarm/cache",  # default for hosts registered without --cache-dir
        "fanout": 1,  # transfers each host with a copy serves per round
        "attempts": 3,  # sources tried per host before it is reported failed
        "ssh_key": None,  # private key, at the same path on the controller and on the hosts
        "ssh_options": ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"],
        "bwlimit_kbps": 0,  # rsync --bwlimit per transfer; 0: unlimited
    },
    "hosts": {
        "failure_grace_s": 120,  # how long a host may stay unreachable before its VMs are recovered
        "fence_command": None,  # command (no shell) with {name} and {uri}; exit 0 = powered off. None: never fence
        "fence_timeout_s": 120,
        "worker_failure_policy": "leave",  # recreate | leave: what happens to a failed host's worker VMs
    },
    "network": {
        "farm_pool": "10.64.0.0/12",
        "farm_prefix": 24,
        "vlan_range": [100, 4000],
        "trunk_interface": None,
        "public": {
            "cidr": "198.51.100.0/24",
            "gateway": "198.51.100.1",
            "range": ["198.51.100.10", "198.51.100.250"],
            "bridge": "ivpub0",
            "netns": "ivfarm-public",  # None: the bridge is a host bridge of the site
        },
        "dns_forwarders": ["198.51.100.1"],
    },
    "vrouter": {
        "backend": "netns",  # netns | openwrt | none
        "host_uri": "qemu:///system",  # the hypervisor that carries the routers' side of farm segments
        # The OpenWrt router VM: an admin-registered image that brings its WAN up on the router's public
        # address (the site's DHCP reserves it for the WAN MAC 02:01:+address) with SSH for ssh_user.
        "openwrt": {"image": None, "vcpus": 1, "memory_mb": 150, "ssh_user": "root", "ssh_key": None,
                    "known_hosts": None, "ssh_allow_from": None},
    },
    "quota_defaults": {"instances": 4, "vcpus": 8, "memory_mb": 16384, "disk_gb": 200, "addresses": 1},
    "ec2": {
        "listen": "127.0.0.1:8773",
        "region": "ivfarm-1",
        "zones": {"worker": None, "service": None},
        "provision_workers": 4,
        "terminated_visible_s": 3600,
        # Per farm: requests in flight at once, a token bucket of requests (rate per second, burst),
        # how many signatures of mutating requests are remembered against replay (15 minutes each),
        # and how long after its first sighting a signature may come again (the client's own repeat).
        "limits": {"concurrent": 64, "rate_per_s": 200, "burst": 400, "replay_entries": 50000,
                   "replay_grace_s": 2.0},
    },
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Config:
    """Resolved configuration; ``data`` holds the merged tree, the properties the common keys."""

    data: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    source: Path | None = None

    def get(self, dotted: str) -> Any:
        """Return the value at a dotted path such as ``network.public.cidr``."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"unknown configuration key: {dotted}")
            node = node[part]
        return node

    @property
    def state_dir(self) -> Path:
        return Path(self.data["state_dir"])

    @property
    def database_url(self) -> str:
        url = os.environ.get("IVFARM_DATABASE") or self.data.get("database")
        return url or f"sqlite:///{self.state_dir / 'ivfarm.db'}"

    @property
    def image_dir(self) -> Path:
        return self.state_dir / "images"

    def zone_for(self, host_class: str) -> str:
        """The EC2 availability zone that stands for a hypervisor class."""
        configured = self.data["ec2"]["zones"].get(host_class)
        return configured or f"{self.data['ec2']['region']}-{host_class}"


def build_config(overrides: dict[str, Any] | None = None, source: Path | None = None) -> Config:
    """A configuration from the defaults and ``overrides`` only (no file is read)."""
    return Config(_merge(DEFAULTS, overrides or {}), source)


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load the configuration from ``path``, ``$IVFARM_CONFIG`` or the default location."""
    explicit = path or os.environ.get("IVFARM_CONFIG")
    file_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if file_path.exists():
        try:
            loaded = yaml.safe_load(file_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file_path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file_path}: the configuration must be a mapping")
        data = loaded
    elif explicit:
        raise ConfigError(f"configuration file not found: {file_path}")
    if overrides:
        data = _merge(data, overrides)
    return build_config(data, file_path if file_path.exists() else None)
