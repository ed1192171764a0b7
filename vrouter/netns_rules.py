"""Pure rendering for the netns backend: the iptables ruleset, dnsmasq's hosts file and flags,
the metadata server's command line.

Kept free of side effects so unit tests can check exactly what goes into a router namespace.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vrouter.imds import METADATA_IP, METADATA_PORT
from vrouter.spec import RouterSpec

LAN_IF = "lan0"
WAN_IF = "wan0"
CHAIN_IN = "IVFARM-IN"
CHAIN_FWD = "IVFARM-FWD"
CHAIN_DNAT = "IVFARM-DNAT"
CHAIN_SNAT = "IVFARM-SNAT"
DEFAULT_LEASE_TIME = "12h"


def iptables_ruleset(spec: RouterSpec) -> str:
    """The router namespace's whole filter and nat tables, for one atomic `iptables-restore`.

    A full restore replaces both tables in one transaction, so apply() is idempotent and there
    is never a moment with half a ruleset. Our rules live in dedicated IVFARM-* chains that the
    built-in chains jump to.
    """
    lan = str(spec.lan_network)
    wan_ip = spec.wan_ip
    filt = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{CHAIN_IN} - [0:0]",
        f":{CHAIN_FWD} - [0:0]",
        f"-A INPUT -j {CHAIN_IN}",
        f"-A FORWARD -j {CHAIN_FWD}",
        # router input: loopback, replies, and only DHCP/DNS/ping/metadata from the farm LAN
        f"-A {CHAIN_IN} -i lo -j ACCEPT",
        f"-A {CHAIN_IN} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {CHAIN_IN} -m conntrack --ctstate INVALID -j DROP",
        f"-A {CHAIN_IN} -i {LAN_IF} -p udp -m udp --dport 67 -j ACCEPT",
        f"-A {CHAIN_IN} -i {LAN_IF} -p udp -m udp --dport 53 -j ACCEPT",
        f"-A {CHAIN_IN} -i {LAN_IF} -p tcp -m tcp --dport 53 -j ACCEPT",
        f"-A {CHAIN_IN} -i {LAN_IF} -p icmp -m icmp --icmp-type 8 -j ACCEPT",
        f"-A {CHAIN_IN} -i {LAN_IF} -d {METADATA_IP}/32 -p tcp -m tcp --dport {METADATA_PORT} -j ACCEPT",
        f"-A {CHAIN_IN} -j DROP",
        # forwarding: replies, the farm going out, and inbound only where we DNATed it
        f"-A {CHAIN_FWD} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {CHAIN_FWD} -m conntrack --ctstate INVALID -j DROP",
        # the site's management networks are out of the farm's reach, whatever it asks for
        *(f"-A {CHAIN_FWD} -i {LAN_IF} -o {WAN_IF} -d {network} -j REJECT --reject-with icmp-admin-prohibited"
          for network in spec.egress_deny),
        f"-A {CHAIN_FWD} -i {LAN_IF} -o {WAN_IF} -s {lan} -j ACCEPT",
    ]
    for fwd in spec.forwards:
        filt.append(
            f"-A {CHAIN_FWD} -i {WAN_IF} -o {LAN_IF} -d {fwd.private_ip}/32 -p {fwd.protocol} "
            f"-m {fwd.protocol} --dport {fwd.private_port} -m conntrack --ctstate DNAT "
            f"--ctorigdst {wan_ip}/32 --ctorigdstport {fwd.public_port} -j ACCEPT"
        )
    if spec.eip_bound:
        filt.append(
            f"-A {CHAIN_FWD} -i {WAN_IF} -o {LAN_IF} -d {spec.elastic_target}/32 "
            f"-m conntrack --ctstate DNAT --ctorigdst {spec.elastic_ip}/32 -j ACCEPT"
        )
    filt += [f"-A {CHAIN_FWD} -j DROP", "COMMIT"]

    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f":{CHAIN_DNAT} - [0:0]",
        f":{CHAIN_SNAT} - [0:0]",
        f"-A PREROUTING -j {CHAIN_DNAT}",
        f"-A POSTROUTING -j {CHAIN_SNAT}",
    ]
    for fwd in spec.forwards:
        nat.append(
            f"-A {CHAIN_DNAT} -i {WAN_IF} -d {wan_ip}/32 -p {fwd.protocol} -m {fwd.protocol} "
            f"--dport {fwd.public_port} -j DNAT --to-destination {fwd.private_ip}:{fwd.private_port}"
        )
    if spec.eip_bound:
        nat += [
            f"-A {CHAIN_DNAT} -i {WAN_IF} -d {spec.elastic_ip}/32 "
            f"-j DNAT --to-destination {spec.elastic_target}",
            # the VM's own SNAT must come before the farm-wide one
            f"-A {CHAIN_SNAT} -o {WAN_IF} -s {spec.elastic_target}/32 "
            f"-j SNAT --to-source {spec.elastic_ip}",
        ]
    nat += [f"-A {CHAIN_SNAT} -o {WAN_IF} -s {lan} -j SNAT --to-source {wan_ip}", "COMMIT"]
    return "\n".join(filt + nat) + "\n"


def dnsmasq_hosts(spec: RouterSpec) -> str:
    """dnsmasq --dhcp-hostsfile content: `MAC,IP[,hostname]` per static lease (re-read on SIGHUP)."""
    lines = []
    for lease in sorted(spec.leases, key=lambda le: le.mac):
        fields = [lease.mac, lease.ip] + ([lease.hostname] if lease.hostname else [])
        lines.append(",".join(fields))
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class DnsmasqPaths:
    """Where one router's dnsmasq keeps its files: the hosts file in a directory its unprivileged
    user can reach (it re-reads it on SIGHUP), the rest in the controller's run directory (opened
    while dnsmasq is still root)."""

    hosts: Path
    leases: Path
    pid: Path
    log: Path

    @classmethod
    def under(cls, directory: Path, hosts_directory: Path) -> DnsmasqPaths:
        return cls(
            hosts=hosts_directory / "dhcp-hosts",
            leases=directory / "dnsmasq.leases",
            pid=directory / "dnsmasq.pid",
            log=directory / "dnsmasq.log",
        )


def dnsmasq_args(
    spec: RouterSpec, paths: DnsmasqPaths, user: str, lease_time: str = DEFAULT_LEASE_TIME
) -> list[str]:
    """dnsmasq's command line inside the router namespace: DHCP for known MACs only, DNS
    forwarded to the spec's forwarders, bound to the LAN interface only, running as ``user``
    once its sockets and files are open."""
    lan = spec.lan_network
    args = [
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        f"--user={user}",
        "--bind-interfaces",
        f"--interface={LAN_IF}",
        "--except-interface=lo",
        "--domain-needed",
        "--bogus-priv",
        *(f"--server={server}" for server in spec.dns_forwarders),
        # "static": only MACs from the hosts file get an address, for the whole LAN cidr
        f"--dhcp-range={lan.network_address},static,{lan.netmask},{lease_time}",
        f"--dhcp-hostsfile={paths.hosts}",
        f"--dhcp-option=option:router,{spec.lan_ip}",
        f"--dhcp-option=option:dns-server,{spec.lan_ip}",
        "--dhcp-authoritative",
        f"--dhcp-leasefile={paths.leases}",
        f"--pid-file={paths.pid}",
        f"--log-facility={paths.log}",
    ]
    return args


def metadata_server_args(records: Path, pid: Path, user: str) -> list[str]:
    """Arguments to the Python interpreter that start the router's metadata server as a daemon
    on 169.254.169.254:80 (inside the router namespace, so only the farm LAN reaches it), running
    as ``user`` once it listens."""
    return [
        "-m", "vrouter.metadata_server",
        f"--records={records}",
        f"--listen={METADATA_IP}:{METADATA_PORT}",
        f"--pid-file={pid}",
        f"--user={user}",
        "--daemon",
    ]


def parse_leases(text: str) -> list[tuple[str, str]]:
    """(mac, ip) from a dnsmasq lease file (`expiry mac ip hostname client-id` per line)."""
    result = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and ":" in parts[1] and "." in parts[2]:
            result.append((parts[1].lower(), parts[2]))
    return result
