"""Router VMs for the ``openwrt`` backend: one small domain per farm from the admin's OpenWrt image.

The VM runs on ``vrouter.host_uri`` with its disk from the service class's storage; its first NIC
(eth0) is on the farm bridge, its second (eth1) on the site's public bridge. The controller reaches
it on the router's public address (MAC ``02:01:`` + that address, so the site's DHCP can reserve it)
and configures it over SSH with UCI files (``vrouter.openwrt``).
"""
from __future__ import annotations

import ipaddress

from sqlalchemy.orm import Session

from drivers.hypervisor.domain_xml import DomainSpec, Nic, render_domain
from drivers.storage.base import BaseImage, disk_names
from ivfarm.errors import ConfigError
from ivfarm.services.images.catalog import find_image
from ivfarm.services.network.addressing import mac_for
from ivfarm.services.network.farm_network import public_bridge
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.naming import DOMAIN_PREFIX
from vrouter.errors import RouterError
from vrouter.openwrt import OpenWrtRouter
from vrouter.spec import RouterSpec
from vrouter.ssh_push import PushSettings

NAME_PREFIX = f"{DOMAIN_PREFIX}router-"


def wan_mac(address: str) -> str:
    """The router VM's public MAC, derived from its public address."""
    return "02:01:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(address).packed)


class LibvirtRouterVm:
    """Implements vrouter.openwrt.RouterVm with libvirt and ivfarm's storage."""

    def __init__(self, cloud: CloudContext) -> None:
        self.cloud = cloud
        self.uri = str(cloud.config.get("vrouter.host_uri"))
        self.settings = cloud.config.get("vrouter.openwrt")

    def _image(self, session: Session) -> BaseImage:
        ref = self.settings.get("image")
        if not ref:
            raise ConfigError("vrouter.openwrt.image names no image: register the OpenWrt image and set it")
        image = find_image(session, str(ref))
        return BaseImage(image.id, image.path, image.disk_format, image.virtual_size_bytes, image.sha256)

    def ensure(self, spec: RouterSpec) -> str:
        """Create and start the farm's router VM unless it runs; returns its management address."""
        name = NAME_PREFIX + spec.key
        status = self.cloud.hypervisor.status(self.uri, name)
        if status is not None:
            if status.state != "running":
                self.cloud.hypervisor.start(self.uri, name)
            return spec.wan_ip
        with self.cloud.store.read() as session:
            image = self._image(session)
        storage = self.cloud.storage("service")
        image = storage.prepare_image(self.uri, image)
        disk = storage.create_root(self.uri, f"router-{spec.key}", image, 0)
        nics = (Nic(bridge=spec.lan_bridge, mac=mac_for(spec.lan_ip)),
                Nic(bridge=public_bridge(self.cloud), mac=wan_mac(spec.wan_ip)))
        domain = DomainSpec(
            name=name, instance_id=f"router-{spec.key}", cloud=self.cloud.cloud_id, farm=spec.farm,
            flavor="router", image_id=image.image_id, vcpus=int(self.settings["vcpus"]),
            memory_mb=int(self.settings["memory_mb"]), domain_type=self.cloud.hypervisor.features(self.uri).domain_type,
            machine=str(self.cloud.config.get("hypervisor.machine")), disks=(disk,), nics=nics,
            console_log=self.cloud.consoles.path(f"router-{spec.key}.log"),
        )
        try:
            self.cloud.consoles.ensure_directory(self.uri)
            self.cloud.hypervisor.define_and_start(self.uri, render_domain(domain))
        except Exception:
            storage.delete(self.uri, disk.name)
            raise
        return spec.wan_ip

    def remove(self, key: str) -> None:
        """Remove the router VM, its disk and console log."""
        self.cloud.hypervisor.undefine(self.uri, NAME_PREFIX + key)
        self.cloud.storage("service").delete(self.uri, disk_names(f"router-{key}")[0])
        self.cloud.consoles.delete(self.uri, f"router-{key}.log")

    def list_keys(self) -> list[str]:
        """Keys of this cloud's router VMs on the router host."""
        return sorted(d.name.removeprefix(NAME_PREFIX) for d in self.cloud.hypervisor.list_domains(self.uri)
                      if d.name.startswith(NAME_PREFIX) and d.cloud == self.cloud.cloud_id)


def openwrt_backend(cloud: CloudContext) -> OpenWrtRouter:
    """The openwrt router backend with this site's VM provider and SSH settings."""
    settings = cloud.config.get("vrouter.openwrt")
    push = PushSettings(username=str(settings["ssh_user"]), key_filename=settings.get("ssh_key"),
                        known_hosts=settings.get("known_hosts"))
    allow = settings.get("ssh_allow_from")
    allow = [allow] if isinstance(allow, str) else allow
    _check_management_networks(cloud, allow or [])
    try:
        return OpenWrtRouter(LibvirtRouterVm(cloud), push, ssh_allow_from=allow)
    except RouterError as exc:
        raise ConfigError(f"vrouter.openwrt: {exc}") from exc


def _check_management_networks(cloud: CloudContext, networks: list[str]) -> None:
    """Routers' WAN addresses and elastic IPs come from the public range, and every farm's traffic
    leaves from one of them: a management network overlapping that range would open every router's
    SSH to the other farms."""
    low, high = (ipaddress.IPv4Address(a) for a in cloud.config.get("network.public.range"))
    farm_side = list(ipaddress.summarize_address_range(low, high))
    for text in networks:
        network = ipaddress.ip_network(text, strict=False)
        if network.version == 4 and any(network.overlaps(part) for part in farm_side):
            raise ConfigError(
                f"vrouter.openwrt.ssh_allow_from: {text} overlaps network.public.range {low}-{high}, "
                "where farm traffic leaves from; give the controller's management address or network"
            )
