"""The farm's virtual router: one spec, two backends (netns: namespace + dnsmasq + iptables;
openwrt: an OpenWrt VM configured with UCI over SSH). A library ivfarm calls; it never imports ivfarm."""
from vrouter.base import RouterBackend
from vrouter.errors import HostKeyError, RouterError, SpecError
from vrouter.spec import Lease, PortForward, RouterSpec

__all__ = ["HostKeyError", "Lease", "PortForward", "RouterBackend", "RouterError", "RouterSpec", "SpecError"]
