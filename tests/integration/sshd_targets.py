"""SSH endpoints on loopback standing for hosts' image caches: one sshd per target, its own port.

Every sshd accepts root with one generated key; each target gets its own cache directory. Used
by the image-sync tests and ``bench/image_sync.py``.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.polling import accepts, poll_until

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    port: int
    cache_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def ssh_target(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


@dataclass
class Fleet:
    root: Path
    key: Path
    targets: list[Target] = field(default_factory=list)

    def image_cache_config(self) -> dict[str, object]:
        """The ``image_cache`` configuration that reaches these targets."""
        return {"ssh_key": str(self.key), "ssh_options": SSH_OPTIONS}

    def stop(self) -> None:
        for target in self.targets:
            target.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _sshd_config(root: Path, index: int, port: int) -> Path:
    path = root / f"sshd-{index}.conf"
    path.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / f'sshd-{index}.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PrintMotd no\nLogLevel ERROR\nMaxStartups 200\nMaxSessions 100\nKexAlgorithms curve25519-sha256\n"
        # a home without shell start-up files: root's ~/.bashrc here costs half a second per command
        f"SetEnv HOME={root / 'home'}\n"
    )
    return path


def start_fleet(root: Path, count: int) -> Fleet:
    """Start ``count`` sshd processes under ``root`` (which must not exist); all ready on return."""
    root.mkdir(mode=0o755, parents=True)
    fleet = Fleet(root, root / "id_ed25519")
    try:
        for key in (fleet.key, root / "host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text(Path(f"{fleet.key}.pub").read_text())
        (root / "home").mkdir()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        for index in range(count):
            port = _free_port()
            log = (root / f"sshd-{index}.log").open("wb")
            process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(_sshd_config(root, index, port))],
                                       stdout=log, stderr=log)
            fleet.targets.append(Target(port, root / f"cache-{index}", process))
        _wait_listening(fleet, 20)
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _wait_listening(fleet: Fleet, timeout_s: float) -> None:
    """Wait until every sshd of the fleet accepts connections; RuntimeError with the log of the first
    that does not (at once if it died)."""
    pending = list(enumerate(fleet.targets))

    def failure() -> str:
        index, target = pending[0]
        return f"sshd on port {target.port} did not start: {(fleet.root / f'sshd-{index}.log').read_text()}"

    def all_up() -> bool:
        while pending and accepts(pending[0][1].port):
            pending.pop(0)
        if pending and pending[0][1].process.poll() is not None:
            raise RuntimeError(failure())
        return not pending

    poll_until(all_up, timeout_s, 0.05, failure, error=RuntimeError)
