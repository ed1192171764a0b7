"""A site of several hypervisors on this machine, for the multi-host tests and ``make demo-multi``.

Each hypervisor ``<prefix>-h<i>`` is a network namespace with its own libvirtd and virtlogd (in a
private mount namespace too, see ``second_libvirtd``), so its VMs' taps and its farm bridges live in
that namespace. The hosts are joined by an underlay: a bridge ``ul0`` inside the namespace
``<prefix>-ul``, one veth per host, host ``i`` at ``203.0.113.<10+i>/24`` (TEST-NET-3) on its end
``ul0``: addresses that exist inside these namespaces only. ``destroy`` removes every daemon,
domain, namespace and file of the site; it works from the state file alone, in another process::

    python -m tests.integration.multihost_site create ROOT PREFIX [COUNT [PRIVATE_DIR...]]
    python -m tests.integration.multihost_site destroy ROOT
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if not __package__:  # run as a script by scripts/multihost-site.sh
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration import second_libvirtd  # noqa: E402
from tests.integration.second_libvirtd import SecondLibvirtd  # noqa: E402

UNDERLAY_NET = "203.0.113"
UNDERLAY_MTU = 1600  # room for the 50 bytes of VXLAN headers around a 1500-byte farm frame
STATE_FILE = "site.json"


@dataclass(frozen=True)
class SiteHost:
    """One hypervisor of the site."""

    name: str  # also its network namespace
    underlay: str
    uri: str
    daemon_root: str


@dataclass(frozen=True)
class Site:
    root: Path
    prefix: str
    hosts: list[SiteHost]

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}-ul"

    def destroy(self) -> None:
        """Remove everything the site made (idempotent)."""
        destroy(self.root)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [entry["name"] for entry in json.loads(out or "[]")]


def _add_host_namespace(underlay_ns: str, name: str, index: int, address: str) -> None:
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", underlay_ns, "link", "add", f"h{index}", "mtu", str(UNDERLAY_MTU), "type", "veth",
        "peer", "name", "ul0", "mtu", str(UNDERLAY_MTU), "netns", name)
    _ip("-n", underlay_ns, "link", "set", f"h{index}", "master", "ul0", "up")
    _ip("-n", name, "address", "add", f"{address}/24", "dev", "ul0")
    _ip("-n", name, "link", "set", "ul0", "up")


def create(root: Path, prefix: str, count: int = 2, private_dirs: Sequence[Path] = ()) -> Site:
    """Build a site of ``count`` hypervisors under ``root`` (which must not exist yet); each host has
    its own copy of ``private_dirs`` (its local disks, seeds and console logs)."""
    if not 1 <= count <= 9 or len(prefix) > 12:
        raise ValueError("a site has 1-9 hosts and a prefix of at most 12 characters")
    root.mkdir(mode=0o755, parents=True)
    site = Site(root, prefix, [])
    _save(site)
    try:
        _ip("netns", "add", site.underlay_netns)
        _ip("-n", site.underlay_netns, "link", "add", "ul0", "mtu", str(UNDERLAY_MTU), "type", "bridge")
        _ip("-n", site.underlay_netns, "link", "set", "ul0", "up")
        for index in range(1, count + 1):
            name, address = f"{prefix}-h{index}", f"{UNDERLAY_NET}.{10 + index}"
            _add_host_namespace(site.underlay_netns, name, index, address)
            daemon_root = root / f"h{index}"
            site.hosts.append(SiteHost(name, address, "", str(daemon_root)))
            _save(site)  # destroy finds the namespace even if the daemon does not come up
            daemon = second_libvirtd.start(daemon_root, private_dirs, netns=name)
            site.hosts[-1] = SiteHost(name, address, daemon.uri, str(daemon_root))
            _save(site)
        return site
    except BaseException:
        destroy(root)
        raise


def _save(site: Site) -> None:
    (site.root / STATE_FILE).write_text(json.dumps(
        {"prefix": site.prefix, "hosts": [asdict(h) for h in site.hosts]}, indent=1))


def load(root: Path) -> Site | None:
    """The site recorded under ``root``, or None."""
    try:
        data = json.loads((root / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return Site(root, data["prefix"], [SiteHost(**h) for h in data["hosts"]])


def destroy(root: Path) -> None:
    """Stop the site's daemons (their domains and pools first), delete its namespaces and files."""
    site = load(root)
    if site is not None:
        for host in site.hosts:
            if Path(host.daemon_root, "mntns").exists():
                SecondLibvirtd(Path(host.daemon_root), host.uri or "qemu+unix:///none", "").stop()
        present = _namespaces()
        for name in [h.name for h in site.hosts] + [site.underlay_netns]:
            if name in present:
                _ip("netns", "delete", name, check=False)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root)


def leftovers(prefix: str) -> list[str]:
    """Namespaces of a site with this prefix that still exist."""
    return [ns for ns in _namespaces() if ns.startswith(f"{prefix}-")]


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "create":
        site = create(Path(argv[1]), argv[2], int(argv[3]) if len(argv) > 3 else 2, [Path(p) for p in argv[4:]])
        for host in site.hosts:
            print(f"{host.name} underlay={host.underlay} uri={host.uri}")
        return 0
    if len(argv) == 2 and argv[0] == "destroy":
        destroy(Path(argv[1]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
