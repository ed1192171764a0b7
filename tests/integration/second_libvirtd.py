"""A second libvirtd on this machine: another hypervisor "host" for migration and failure tests.

It runs in a private mount namespace (sharing the network namespace) with private copies of
libvirt's directories and of the directories given as ``private_dirs`` (a host's local disks,
seeds and console logs), and listens on TCP at 127.0.0.2 without authentication, so ivfarm
addresses it as a remote host (``qemu+tcp://127.0.0.2:PORT/system``) and reaches its files only
through libvirt. ``fence`` kills every process of its namespace, like a power-off.

Also a command for ``hosts.fence_command``: ``python -m tests.integration.second_libvirtd fence ROOT``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt

if not __package__:  # run as a script: the fence command of the host-failure tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.polling import poll_until  # noqa: E402

DRIVERS = Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver")
ADDRESS = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def _namespace_pids(namespace: str) -> list[int]:
    """Pids of the processes whose mount namespace is ``namespace`` (e.g. ``mnt:[4026532451]``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "mnt") == namespace:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _system_libvirtd_pid() -> int:
    """The pid of this machine's own libvirtd (its pid file, else the oldest libvirtd process)."""
    try:
        return int(Path("/run/libvirtd.pid").read_text())
    except (OSError, ValueError):
        out = subprocess.run(["pgrep", "-o", "-x", "libvirtd"], capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])


def fence(root: Path) -> int:
    """Kill every process in the daemon's namespace (qemu, virtlogd, fuse clients...); returns how many."""
    marker = root / "mntns"
    if not marker.exists():
        return 0
    pids = _namespace_pids(marker.read_text().strip())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def _write_config(root: Path, port: int, tcp: bool) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True)
    listen = (f'listen_tcp = 1\nlisten_addr = "{ADDRESS}"\ntcp_port = "{port}"\nauth_tcp = "none"\n' if tcp
              else "listen_tcp = 0\n")
    (etc / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{root / "sock"}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'host_uuid = "{uuid.uuid4()}"\nlisten_tls = 0\n{listen}'
    )
    (etc / "qemu.conf").write_text(
        # namespaces = [ ]: its QEMU processes stay in the daemon's mount namespace, so fence() finds them
        'cgroup_controllers = [ ]\nstdio_handler = "file"\nnamespaces = [ ]\n'
        f"migration_port_min = {port + 1}\nmigration_port_max = {port + 32}\n"
    )
    (etc / "virtlogd.conf").write_text("")
    drivers = root / "drivers"
    drivers.mkdir()
    names = ["libvirt_driver_qemu.so", "libvirt_driver_storage.so"]
    if not tcp:  # a hypervisor of the multi-host site: its ports filtered, its bridges made in its namespace
        names += ["libvirt_driver_nwfilter.so", "libvirt_driver_network.so"]
        shutil.copytree("/etc/libvirt/nwfilter", etc / "nwfilter")
    for name in names:
        (drivers / name).symlink_to(DRIVERS / name)


@dataclass
class SecondLibvirtd:
    """A running second daemon; ``uri`` addresses it, ``first_uri`` is how it reaches the system one."""

    root: Path
    uri: str
    first_uri: str

    @property
    def namespace(self) -> str:
        return (self.root / "mntns").read_text().strip()

    def libvirtd_pid(self) -> int | None:
        try:
            return int((self.root / "run" / "libvirtd.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill_libvirtd(self) -> None:
        """Kill only the daemon (its guests keep running: a host that stops answering)."""
        pid = self.libvirtd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def restart_libvirtd(self) -> None:
        """Start the daemon again (after ``kill_libvirtd``) in its namespace, and wait until it answers."""
        pids = _namespace_pids(self.namespace)  # virtlogd (and any guest) still hold the namespace
        subprocess.run(["nsenter", f"--mount=/proc/{pids[0]}/ns/mnt", "env", f"LIBVIRT_DRIVER_DIR={self.root / 'drivers'}",
                        "libvirtd", "-d", "-l", "-p", str(self.root / "run" / "libvirtd.pid"),
                        "-f", "/etc/libvirt/libvirtd.conf"], check=True, capture_output=True, text=True)
        poll_until(lambda: not _open_error(self.uri), 30, 0.2, error=RuntimeError,
                   message=lambda: f"the second libvirtd at {self.uri} did not answer again: {_open_error(self.uri)}")

    def _destroy_guests_and_pools(self) -> None:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return  # already dead: fencing below takes its guests and mounts down
        try:
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            for pool in conn.listAllStoragePools():
                if pool.isActive():
                    pool.destroy()  # unmounts netfs pools inside the namespace
                pool.undefine()
        finally:
            conn.close()

    def stop(self) -> None:
        """Destroy its domains and pools, kill every process of its namespace, remove its files."""
        try:
            if (self.root / "mntns").exists() and _namespace_pids(self.namespace):
                self._destroy_guests_and_pools()
        finally:
            with contextlib.suppress(TimeoutError):  # removing the files is worth trying anyway
                poll_until(lambda: not fence(self.root), 10, 0.1, error=TimeoutError)
            shutil.rmtree(self.root, ignore_errors=True)


def _open_error(uri: str) -> str:
    """Why libvirt cannot open ``uri`` now (empty when it can)."""
    try:
        libvirt.open(uri).close()
        return ""
    except libvirt.libvirtError as exc:
        return str(exc)


def start(root: Path, private_dirs: Sequence[Path] = (), netns: str | None = None) -> SecondLibvirtd:
    """Start a second libvirtd under ``root`` (which must not exist yet); inside network namespace
    ``netns`` when given (reached through its unix socket only, with nwfilter), else on TCP."""
    first = _system_libvirtd_pid()
    port = _free_port()
    _write_config(root, port, tcp=netns is None)
    for sub in ("lib", "cache", "log", "run", "sock", "private"):
        (root / sub).mkdir(mode=0o755)
    shutil.copytree("/var/cache/libvirt/qemu", root / "cache" / "qemu", dirs_exist_ok=True)
    binds = [(root / "etc", "/etc/libvirt"), (root / "lib", "/var/lib/libvirt"),
             (root / "cache", "/var/cache/libvirt"), (root / "log", "/var/log/libvirt")]
    for index, directory in enumerate(private_dirs):
        copy = root / "private" / str(index)
        copy.mkdir(mode=0o755)
        binds.append((copy, str(directory)))
    script = "set -e\n" + "".join(f"mount --bind '{src}' '{dst}'\n" for src, dst in binds) + (
        "mount -t tmpfs -o mode=0755 tmpfs /run/libvirt\n"
        f"readlink /proc/self/ns/mnt > '{root / 'mntns'}'\n"
        f"virtlogd -d -p '{root / 'run' / 'virtlogd.pid'}'\n"
        f"LIBVIRT_DRIVER_DIR='{root / 'drivers'}' libvirtd -d {'' if netns else '-l '}"
        f"-p '{root / 'run' / 'libvirtd.pid'}' -f /etc/libvirt/libvirtd.conf\n"
    )
    uri = f"qemu+unix:///system?socket={root / 'sock' / 'libvirt-sock'}" if netns else \
        f"qemu+tcp://{ADDRESS}:{port}/system"
    daemon = SecondLibvirtd(root, uri, f"qemu+unix:///system?socket=/proc/{first}/root/run/libvirt/libvirt-sock")
    enter = ["ip", "netns", "exec", netns] if netns else []
    try:
        subprocess.run([*enter, "unshare", "-m", "--propagation", "private", "sh", "-c", script], check=True,
                       capture_output=True, text=True)
        poll_until(lambda: not _open_error(daemon.uri), 30, 0.2, error=RuntimeError,
                   message=lambda: f"the second libvirtd at {daemon.uri} did not answer: {_open_error(daemon.uri)}")
        return daemon
    except BaseException:
        daemon.stop()
        raise


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "fence":
        sys.exit("usage: python -m tests.integration.second_libvirtd fence ROOT")
    fence(Path(sys.argv[2]))
