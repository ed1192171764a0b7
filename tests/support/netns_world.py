"""A small world of namespaces around netns routers, for tests with no VMs: "VMs" are namespaces on
the farm bridges (eth0 with the VM's MAC, addresses from DHCP), outside users are public clients.
All traffic stays inside the namespaces and bridges a World creates; teardown removes them all."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.polling import poll_until
from tests.support.public_clients import add_client, remove_client
from vrouter import _sh
from vrouter.netns import NetnsRouter
from vrouter.public import PublicSegment

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    busybox ifconfig "$interface" "$ip" netmask "$subnet" up
    set -- $router
    ip route replace default via "$1" dev "$interface"
    echo "$ip $subnet $1 $dns" > "$RESULT"
    ;;
esac
exit 0
"""
WHOAMI = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""


def sh(ns: str | None, *args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command in namespace ``ns`` (None: here); a failure fails the test unless check=False."""
    proc = subprocess.run(_sh.ns_exec(ns, list(args)), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{args} in {ns} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc


class World:
    """Everything the module makes, torn down in reverse order even when a test or setup fails."""

    def __init__(self, public: PublicSegment, run_dir: Path, dhcp_dir: Path, tmp: Path, sfx: str) -> None:
        self.public, self.tmp, self.sfx = public, tmp, sfx
        self.router = NetnsRouter(public, run_dir, dhcp_dir)
        self.cleanups: list = []
        self.procs: list[subprocess.Popen[str]] = []

    def later(self, fn, *args) -> None:  # noqa: ANN001
        self.cleanups.append((fn, args))

    def teardown(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for fn, args in reversed(self.cleanups):
            try:
                fn(*args)
            except Exception as exc:  # keep going: everything must go
                print(f"cleanup {fn.__name__}{args} failed: {exc}", file=sys.stderr)

    def bridge(self, name: str) -> str:
        self.later(_sh.link_delete, name)
        _sh.ip_batch([f"link add {name} type bridge"])
        _sh.host_sysctl_disable_ipv6(name)
        _sh.ip_batch([f"link set {name} up"])
        return name

    def vm(self, name: str, mac: str, bridge: str) -> str:
        """A namespace standing for a VM: eth0 with the VM's MAC, plugged into the farm bridge."""
        host_end = f"ivtv{self.sfx}{len(self.cleanups)}"
        self.later(_sh.link_delete, host_end)
        self.later(_sh.netns_delete, name)
        _sh.netns_add(name)
        sh(name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _sh.ip_batch([f"link add {host_end} type veth peer name eth0 netns {name}"])
        _sh.host_sysctl_disable_ipv6(host_end)
        _sh.ip_batch([f"link set {host_end} master {bridge} up"])
        _sh.ip_batch(["link set lo up", f"link set eth0 address {mac}", "link set eth0 up"], name)
        return name

    def client(self, name: str, ip: str) -> str:
        self.later(remove_client, self.public, name)
        add_client(self.public, name, ip)
        return name

    def serve(self, ns: str, code: str, *args: str) -> None:
        proc = subprocess.Popen(_sh.ns_exec(ns, [sys.executable, "-u", "-c", code, *args]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr

    def httpd(self, ns: str, body: str) -> None:
        root = self.tmp / f"www-{ns}"
        root.mkdir()
        (root / "index.html").write_text(body)
        proc = subprocess.Popen(_sh.ns_exec(ns, ["busybox", "httpd", "-f", "-p", "80", "-h", str(root)]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        poll_until(lambda: sh(ns, "busybox", "netstat", "-ltn").stdout.count(":80 ") > 0, 10, 0.05,
                   "timed out waiting for httpd up")

    def dhcp(self, ns: str, tries: int = 6) -> tuple[int, str]:
        script = self.tmp / "udhcpc.sh"
        if not script.exists():
            script.write_text(UDHCPC_SCRIPT)
            script.chmod(0o755)
        result = self.tmp / f"lease-{ns}"
        result.unlink(missing_ok=True)
        env_cmd = ["env", f"RESULT={result}", "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
                   "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script)]
        proc = sh(ns, *env_cmd, check=False, timeout=60)
        return proc.returncode, result.read_text().strip() if result.exists() else ""




def whoami(ns: str, host: str, port: int) -> str:
    """The source address the WHOAMI server at host:port saw for a connection from ``ns``."""
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
            "print(s.recv(64).decode())")
    return sh(ns, sys.executable, "-c", code, host, str(port)).stdout.strip()


def ping(ns: str, ip: str) -> bool:
    return sh(ns, "busybox", "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0
