"""The openwrt backend: a small OpenWrt VM per farm, configured by pushing UCI files over SSH.

The VM itself (1 vCPU / 150 MB, a private NIC on the farm bridge and a public NIC on the public
segment, from an admin-registered OpenWrt image) is made by a RouterVm that ivfarm implements,
so this package never touches libvirt. The router's NIC order is a convention shared with that
provider: the private (LAN) NIC is the first one (eth0), the public (WAN) one the second (eth1).
It has no EC2 metadata service (serves_metadata is False): its VMs use their NoCloud seed.
"""
from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from vrouter.base import RouterBackend
from vrouter.errors import RouterError
from vrouter.netns_rules import parse_leases
from vrouter.spec import KEY_RE, RouterSpec
from vrouter.ssh_push import PushResult, PushSettings, SshPusher
from vrouter.uci import LEASE_FILE, render_uci


@runtime_checkable
class RouterVm(Protocol):
    """What the openwrt backend needs from the VM provider (implemented in ivfarm)."""

    def ensure(self, spec: RouterSpec) -> str:
        """Create/start the router VM if needed (idempotent); return its management address."""

    def remove(self, key: str) -> None:
        """Stop and remove the router VM and its disk; a missing one is fine."""

    def list_keys(self) -> list[str]:
        """Keys of the router VMs that exist."""


class OpenWrtRouter(RouterBackend):
    name = "openwrt"
    serves_metadata = False

    def __init__(
        self,
        vm: RouterVm,
        settings: PushSettings,
        *,
        lan_device: str = "eth0",
        wan_device: str = "eth1",
        ssh_allow_from: Sequence[str] | None = None,
        lease_time: str = "12h",
    ) -> None:
        self.vm = vm
        self.pusher = SshPusher(settings)
        self.ssh_allow_from = None if ssh_allow_from is None else list(ssh_allow_from)
        self.render_options = {"lan_device": lan_device, "wan_device": wan_device, "lease_time": lease_time}
        self._addresses: dict[str, str] = {}
        self.last_push: PushResult | None = None

    def render(self, spec: RouterSpec, management_address: str) -> dict[str, str]:
        """The UCI files for the router reached at ``management_address``: SSH from the configured
        networks, or else only from this controller's own address toward the router."""
        allow = self.ssh_allow_from
        if allow is None:
            allow = [f"{source_address_toward(management_address)}/32"]
        return render_uci(spec, ssh_allow_from=allow, **self.render_options)

    def create(self, spec: RouterSpec) -> None:
        self._validate(spec)  # bad input fails before any VM is made
        if self.exists(spec.key):
            raise RouterError(f"router {spec.key} already exists (apply() changes it, destroy() removes it)")
        try:
            self._push(spec)
        except Exception as exc:
            cleanup = ""
            try:
                self.destroy(spec.key)
            except Exception as again:
                cleanup = f"; removing its VM also failed: {again}"
            raise RouterError(f"creating router {spec.key} (farm {spec.farm}) failed: {exc}{cleanup}") from exc

    def apply(self, spec: RouterSpec) -> None:
        self._validate(spec)
        if not self.exists(spec.key):
            raise RouterError(f"router {spec.key} does not exist (create it first)")
        try:
            self._push(spec)
        except Exception as exc:
            raise RouterError(f"updating router {spec.key} (farm {spec.farm}) failed: {exc}") from exc

    def destroy(self, key: str) -> None:
        _check_key(key)
        try:
            self.vm.remove(key)
        except Exception as exc:
            raise RouterError(f"removing router VM {key} failed: {exc}") from exc
        self._addresses.pop(key, None)

    def exists(self, key: str) -> bool:
        _check_key(key)
        return key in self.list_keys()

    def list_keys(self) -> list[str]:
        try:
            return sorted(self.vm.list_keys())
        except Exception as exc:
            raise RouterError(f"listing router VMs failed: {exc}") from exc

    def leases(self, key: str) -> list[tuple[str, str]]:
        """From the router's dnsmasq lease file, read over SSH."""
        _check_key(key)
        address = self._addresses.get(key)
        lookup = getattr(self.vm, "address", None)  # optional RouterVm.address(key) -> str | None
        if address is None and callable(lookup):
            address = lookup(key)
        if address is None:
            raise RouterError(
                f"management address of router {key} unknown in this process (create/apply it first)"
            )
        text = self.pusher.read(address, LEASE_FILE)
        return parse_leases(text or "")

    def publish_metadata(self, key: str, records: dict[str, dict]) -> None:
        """Not offered: the OpenWrt image runs no metadata service. VMs behind this router are
        contextualized from their NoCloud seed only (instance-id, keys, user-data, network)."""
        raise RouterError(
            f"router {key}: the openwrt backend has no EC2 metadata service "
            "(its VMs read their NoCloud seed instead)"
        )

    def _validate(self, spec: RouterSpec) -> None:
        render_uci(spec, ssh_allow_from=self.ssh_allow_from or (), **self.render_options)

    def _push(self, spec: RouterSpec) -> None:
        address = self.vm.ensure(spec)
        self._addresses[spec.key] = address
        self.last_push = self.pusher.push(address, self.render(spec, address))


def source_address_toward(address: str) -> str:
    """This machine's own address on the route to ``address`` (a UDP connect sends no packet)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 22))
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise RouterError(f"no route from this controller to the router's management address {address}: {exc}") from exc


def _check_key(key: str) -> None:
    if not KEY_RE.match(str(key)):
        raise RouterError(f"router key {key!r} must be 1-6 lowercase letters or digits")
