"""The netns backend: one network namespace per farm router, as OpenStack's L3 agent does.

    farm bridge --- ivl<key> | lan0 (lan_ip, 169.254.169.254/32)   namespace ivfarm-<key>   wan0 (wan_ip[, EIP/32]) | ivw<key> --- public bridge
                              dnsmasq (DHCP static leases + DNS forwarder), iptables (NAT + firewall),
                              metadata server (EC2 IMDS on 169.254.169.254:80, vrouter.metadata_server)

dnsmasq and the metadata server run as daemons independent of the calling process (stopped
through their pid files or by killing whatever is left in the namespace), so a router outlives
the `ivfarm` command that made it. The metadata server answers from a records file in the
router's run dir (mode 0600) that publish_metadata() replaces atomically.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

from fileops.atomic import atomic_write
from fileops.locks import exclusive_lock
from vrouter import _sh
from vrouter.base import RouterBackend
from vrouter.errors import RouterError
from vrouter.imds import METADATA_IP, parse_records
from vrouter.netns_rules import (
    DEFAULT_LEASE_TIME,
    LAN_IF,
    WAN_IF,
    DnsmasqPaths,
    dnsmasq_args,
    dnsmasq_hosts,
    iptables_ruleset,
    metadata_server_args,
    parse_leases,
)
from vrouter.owned_files import owned_file_user, replace_owned_file
from vrouter.public import PublicSegment
from vrouter.spec import KEY_RE, RouterSpec

NETNS_PREFIX = "ivfarm-"
# changing these needs a new router (the namespace's addresses and links are built from them)
STRUCTURAL = ("lan_cidr", "lan_ip", "lan_bridge", "wan_ip", "wan_prefix", "wan_gateway")
# `python -m vrouter.metadata_server` run from here imports this very vrouter package
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def netns_name(key: str) -> str:
    return f"{NETNS_PREFIX}{key}"


def lan_veth(key: str) -> str:
    return f"ivl{key}"


def wan_veth(key: str) -> str:
    return f"ivw{key}"


class NetnsRouter(RouterBackend):
    name = "netns"
    serves_metadata = True

    def __init__(
        self,
        public: PublicSegment,
        run_dir: Path,
        dhcp_dir: Path,
        *,
        dnsmasq: str = "dnsmasq",
        python: str = sys.executable,
        lease_time: str = DEFAULT_LEASE_TIME,
        gratuitous_arp: bool = True,
        metadata_user: str = "nobody",
        dnsmasq_user: str = "dnsmasq",
        segment_netns: str | None = None,
    ) -> None:
        """``run_dir`` holds each router's private files (root only); ``dhcp_dir`` each router's
        DHCP hosts file, in a directory of ``dnsmasq_user``'s (every parent of it must be
        traversable by that user)."""
        self.public = public
        self.segment_netns = segment_netns  # where the farm bridges live (None: this host's namespace)
        self.metadata_user = metadata_user
        self.dnsmasq_user = dnsmasq_user
        self.run_dir = Path(run_dir)
        self.dhcp_dir = Path(dhcp_dir)
        self.dnsmasq = dnsmasq
        self.python = python
        self.lease_time = lease_time
        self.gratuitous_arp = gratuitous_arp

    # --- RouterBackend --------------------------------------------------------------------------
    def create(self, spec: RouterSpec) -> None:
        self._check_key(spec.key)
        with self._lock():
            if self.exists(spec.key):
                raise RouterError(
                    f"router {spec.key} already exists (apply() changes it, destroy() removes it)"
                )
            if self._dir(spec.key).exists():
                # remnant of a router whose namespace is gone (reboot, crash): clear it first
                self._destroy(spec.key)
            if not _sh.link_exists(spec.lan_bridge, self.segment_netns):
                raise RouterError(
                    f"router {spec.key}: LAN bridge {spec.lan_bridge} does not exist "
                    "(create the farm segment first)"
                )
            try:
                self.public.ensure()
                self._build(spec)
            except Exception as exc:
                cleanup = ""
                try:
                    self._destroy(spec.key)
                except Exception as again:  # report both, the first one is the cause
                    cleanup = f"; cleaning up also failed: {again}"
                raise RouterError(
                    f"creating router {spec.key} (farm {spec.farm}) failed: {exc}{cleanup}"
                ) from exc

    def apply(self, spec: RouterSpec) -> None:
        self._check_key(spec.key)
        with self._lock():
            if not self.exists(spec.key):
                raise RouterError(f"router {spec.key} does not exist (create it first)")
            old = self._load_spec(spec.key)
            if old is not None:
                changed = [f for f in STRUCTURAL if getattr(old, f) != getattr(spec, f)]
                if changed:
                    raise RouterError(
                        f"router {spec.key}: {', '.join(changed)} cannot change in place; "
                        "destroy and re-create the router"
                    )
            try:
                self._apply(spec, old)
            except RouterError as exc:
                raise RouterError(f"updating router {spec.key} (farm {spec.farm}) failed: {exc}") from exc

    def destroy(self, key: str) -> None:
        self._check_key(key)
        with self._lock():
            self._destroy(key)

    def exists(self, key: str) -> bool:
        return _sh.netns_exists(netns_name(key))

    def list_keys(self) -> list[str]:
        keys: set[str] = set()
        if self.run_dir.is_dir():
            keys |= {p.name for p in self.run_dir.iterdir() if p.is_dir() and KEY_RE.match(p.name)}
        for ns in _sh.netns_names():
            key = ns[len(NETNS_PREFIX):]
            if not ns.startswith(NETNS_PREFIX) or ns == self.public.netns or not KEY_RE.match(key):
                continue
            # a namespace without a run dir is ours (an orphan) only if its WAN is on our public
            # segment: routers of other clouds on this machine are never touched
            if key in keys or self.public.holds(wan_veth(key)):
                keys.add(key)
        return sorted(keys)

    def publish_metadata(self, key: str, records: dict[str, dict]) -> None:
        self._check_key(key)
        text = json.dumps(records, indent=1)
        try:
            parse_records(text)  # exactly what the server will read
        except ValueError as exc:
            raise RouterError(f"router {key}: bad metadata records: {exc}") from None
        with self._lock():
            if not self.exists(key):
                raise RouterError(f"router {key} does not exist (create it first)")
            self._write_records(key, text)
            self._ensure_metadata_server(key)

    def leases(self, key: str) -> list[tuple[str, str]]:
        self._check_key(key)
        path = self._paths(key).leases
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        now = time.time()
        active = []
        for line in text.splitlines():
            parts = line.split()
            if parts and parts[0].isdigit() and 0 < int(parts[0]) < now:
                continue  # expired (0 means infinite)
            active.extend(parse_leases(line))
        return active

    # --- building ---------------------------------------------------------------------------------
    def _build(self, spec: RouterSpec) -> None:
        key, ns = spec.key, netns_name(spec.key)
        self._dir(key).mkdir(parents=True)  # the run dir marks the router from here on
        self._make_hosts_dir(key)
        _sh.netns_add(ns)
        _sh.run(_sh.ns_exec(ns, [
            "sysctl", "-q", "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
        ]))
        lveth, wveth = lan_veth(key), wan_veth(key)
        _sh.ip_batch([
            f"link add {lveth} type veth peer name {LAN_IF} netns {ns}",
            f"link add {wveth} type veth peer name {WAN_IF} netns {ns}",
        ])
        if self.segment_netns:  # the LAN veth joins the farm bridge inside the router host's namespace
            _sh.ip_batch([f"link set {lveth} netns {self.segment_netns}"])
            _sh.run(_sh.ns_exec(self.segment_netns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{lveth}.disable_ipv6=1"]))
        else:
            _sh.host_sysctl_disable_ipv6(lveth)
        _sh.ip_batch([f"link set {lveth} master {spec.lan_bridge} up"], self.segment_netns)
        self.public.attach(wveth)
        onlink = " onlink" if spec.wan_prefix >= 31 else ""
        _sh.ip_batch([
            "link set lo up",
            f"address add {spec.lan_ip}/{spec.lan_prefix} dev {LAN_IF}",
            f"link set {LAN_IF} up",
            f"address add {spec.wan_ip}/{spec.wan_prefix} dev {WAN_IF}",
            f"link set {WAN_IF} up",
            f"route add default via {spec.wan_gateway} dev {WAN_IF}{onlink}",
        ], ns)
        self._restore_rules(spec)
        self._sync_eip_address(spec)
        self._write_hosts(spec)
        self._start_dnsmasq(spec)
        self._ensure_metadata_server(key)
        self._save_spec(spec)

    def _apply(self, spec: RouterSpec, old: RouterSpec | None) -> None:
        from_before = not self._hosts_dir(spec.key).is_dir()  # its dnsmasq runs as root on the old hosts file
        if from_before:
            self._make_hosts_dir(spec.key)
        hosts_changed = self._write_hosts(spec)
        pid = self._dnsmasq_pid(spec.key)
        if pid is None or old is None or old.dns_forwarders != spec.dns_forwarders or from_before:
            # forwarders are command-line flags: only a restart of dnsmasq (not the router) changes them
            self._stop_dnsmasq(spec.key)
            self._start_dnsmasq(spec)
        elif hosts_changed:
            os.kill(pid, signal.SIGHUP)
        self._ensure_metadata_server(spec.key)
        # unpublish a stale EIP before its rules go; publish a new one after its rules exist
        self._sync_eip_address(spec, remove_only=True)
        self._restore_rules(spec)
        self._sync_eip_address(spec)
        self._save_spec(spec)

    def _restore_rules(self, spec: RouterSpec) -> None:
        _sh.run(_sh.ns_exec(netns_name(spec.key), ["iptables-restore"]), input=iptables_ruleset(spec))

    def _sync_eip_address(self, spec: RouterSpec, *, remove_only: bool = False) -> None:
        """The EIP as a /32 on wan0 (so the router answers ARP for it) exactly while it is bound."""
        ns = netns_name(spec.key)
        out = _sh.run(["ip", "-n", ns, "-j", "address", "show", "dev", WAN_IF]).stdout
        current = {
            a["local"]
            for link in json.loads(out or "[]")
            for a in link.get("addr_info", [])
            if a.get("family") == "inet" and a.get("prefixlen") == 32 and a.get("local") != spec.wan_ip
        }
        wanted = {spec.elastic_ip} if spec.eip_bound and spec.elastic_ip else set()
        lines = [f"address del {ip}/32 dev {WAN_IF}" for ip in sorted(current - wanted)]
        added = [] if remove_only else sorted(wanted - current)
        lines += [f"address add {ip}/32 dev {WAN_IF}" for ip in added]
        _sh.ip_batch(lines, ns)
        for ip in added:
            self._announce(ns, ip)

    def _announce(self, ns: str, ip: str) -> None:
        """Best-effort gratuitous ARP so neighbours on the public segment learn the EIP's new MAC."""
        if not self.gratuitous_arp:
            return
        if shutil.which("arping"):
            cmd = ["arping", "-U", "-c", "1", "-I", WAN_IF, "-s", ip, ip]
        elif shutil.which("busybox"):
            cmd = ["busybox", "arping", "-U", "-c", "1", "-w", "1", "-I", WAN_IF, "-s", ip, ip]
        else:
            return
        _sh.run(_sh.ns_exec(ns, cmd), check=False, timeout=5)

    # --- dnsmasq --------------------------------------------------------------------------------
    def _make_hosts_dir(self, key: str) -> None:
        """The router's hosts directory: 0700, owned by dnsmasq's user (below a dhcp_dir it may traverse)."""
        owner = owned_file_user(self.dnsmasq_user, "dnsmasq's")
        self.dhcp_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dhcp_dir, 0o711)
        directory = self._hosts_dir(key)
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, owner.pw_uid, owner.pw_gid)

    def _write_hosts(self, spec: RouterSpec) -> bool:
        """Atomically (re)write the DHCP hosts file (0600, dnsmasq's user's); True when it changed."""
        return replace_owned_file(self._paths(spec.key).hosts, dnsmasq_hosts(spec), 0o600,
                             owned_file_user(self.dnsmasq_user, "dnsmasq's"))

    def _start_dnsmasq(self, spec: RouterSpec) -> None:
        paths = self._paths(spec.key)
        args = dnsmasq_args(spec, paths, self.dnsmasq_user, self.lease_time)
        cmd = _sh.ns_exec(netns_name(spec.key), [self.dnsmasq, *args])
        _sh.start_daemon(cmd, paths.pid, "dnsmasq")

    def _dnsmasq_pid(self, key: str) -> int | None:
        """The live dnsmasq of this router, checked against its command line (pid reuse)."""
        return _sh.daemon_pid(self._paths(key).pid)

    def _stop_dnsmasq(self, key: str) -> None:
        _sh.stop_daemon(self._paths(key).pid)

    # --- metadata service -------------------------------------------------------------------------
    def _ensure_metadata_server(self, key: str) -> None:
        """Start the metadata server unless it runs (a new router, or after it died).

        Its address is (re)added first, so routers made before the service existed get it too.
        """
        pid_file = self._metadata_pid_path(key)
        if _sh.daemon_pid(pid_file) is not None:
            return
        records = self._records_path(key)
        if not records.exists():
            self._write_records(key, "{}")
        ns = netns_name(key)
        _sh.ip_batch([f"address replace {METADATA_IP}/32 dev {LAN_IF}"], ns)
        cmd = _sh.ns_exec(ns, [self.python, *metadata_server_args(records, pid_file, self.metadata_user)])
        _sh.start_daemon(cmd, pid_file, "the metadata server", cwd=PACKAGE_ROOT)

    def _metadata_pid(self, key: str) -> int | None:
        """The live metadata server of this router."""
        return _sh.daemon_pid(self._metadata_pid_path(key))

    def _write_records(self, key: str, text: str) -> None:
        """Replace the records file atomically, 0600 and owned by the metadata server's user (the run
        directories above it stay closed to that user: the server reads through a directory it pinned)."""
        replace_owned_file(self._records_path(key), text, 0o600, owned_file_user(self.metadata_user, "the metadata server's"))

    def _records_path(self, key: str) -> Path:
        return self._dir(key) / "metadata.json"

    def _metadata_pid_path(self, key: str) -> Path:
        return self._dir(key) / "metadata.pid"

    # --- removal --------------------------------------------------------------------------------
    def _destroy(self, key: str) -> None:
        ns = netns_name(key)
        if self._dir(key).exists():
            self._stop_dnsmasq(key)
            _sh.stop_daemon(self._metadata_pid_path(key))
        _sh.netns_delete(ns)  # kills anything left inside; its veth ends take their peers along
        _sh.link_delete(lan_veth(key), self.segment_netns)
        _sh.link_delete(wan_veth(key))
        self.public.detach(wan_veth(key))
        shutil.rmtree(self._dir(key), ignore_errors=True)
        shutil.rmtree(self._hosts_dir(key), ignore_errors=True)

        def leftovers() -> list[str]:
            return [
                what
                for what, present in (
                    (f"namespace {ns}", _sh.netns_exists(ns)),
                    (f"link {lan_veth(key)}", _sh.link_exists(lan_veth(key), self.segment_netns)),
                    (f"directory {self._dir(key)}", self._dir(key).exists()),
                    (f"directory {self._hosts_dir(key)}", self._hosts_dir(key).exists()),
                )
                if present
            ]

        deadline = time.monotonic() + 2  # the kernel tears a namespace's links down asynchronously
        while (left := leftovers()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if left:
            raise RouterError(f"router {key} not fully removed: {', '.join(left)} remain")

    # --- bookkeeping ----------------------------------------------------------------------------
    def _check_key(self, key: str) -> None:
        if not KEY_RE.match(str(key)):
            raise RouterError(f"router key {key!r} must be 1-6 lowercase letters or digits")
        if netns_name(key) == self.public.netns:
            raise RouterError(f"router key {key!r} would reuse the public segment's namespace")

    def _dir(self, key: str) -> Path:
        return self.run_dir / key

    def _hosts_dir(self, key: str) -> Path:
        return self.dhcp_dir / key

    def _paths(self, key: str) -> DnsmasqPaths:
        return DnsmasqPaths.under(self._dir(key), self._hosts_dir(key))

    def _save_spec(self, spec: RouterSpec) -> None:
        atomic_write(self._dir(spec.key) / "spec.json", json.dumps(spec.to_dict(), indent=1, sort_keys=True))

    def _load_spec(self, key: str) -> RouterSpec | None:
        try:
            return RouterSpec.from_dict(json.loads((self._dir(key) / "spec.json").read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _lock(self) -> AbstractContextManager[None]:
        """One router change at a time on this machine (several ivfarm processes may run)."""
        return exclusive_lock(self.run_dir / ".lock")
