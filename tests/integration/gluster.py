"""A single-node GlusterFS volume for tests: its own glusterd (working directory, socket, logs, pid).

The brick host must be a name that resolves to 127.0.0.1 (glusterd refuses 127.0.0.1 and
localhost): this machine's hostname. Port 24007 is glusterd's fixed port, so one at a time.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.polling import accepts, poll_until

GLUSTERD_PORT = 24007


@dataclass
class GlusterVolume:
    name: str
    server: str
    root: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["gluster", f"--glusterd-sock={self.root / 'glusterd.socket'}", f"--log-file={self.root / 'cli.log'}",
                "--mode=script", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)

    @property
    def brick(self) -> Path:
        return self.root / "brick"

    def stop(self) -> None:
        """Stop and delete the volume (its brick process goes), stop glusterd, remove every file."""
        if (self.root / "glusterd.pid").exists():
            self.cli("volume", "stop", self.name, "force", check=False)
            self.cli("volume", "delete", self.name, check=False)
            try:
                os.kill(int((self.root / "glusterd.pid").read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            with contextlib.suppress(TimeoutError):  # the files go anyway
                poll_until(lambda: not accepts(GLUSTERD_PORT), 10, 0.1, error=TimeoutError)
        shutil.rmtree(Path("/var/run/gluster/vols") / self.name, ignore_errors=True)
        logs = Path("/var/log/glusterfs")  # the brick's log, and those of fuse mounts under our root
        prefix = str(self.root).strip("/").replace("/", "-")
        for log in [*logs.glob(f"bricks/{prefix}-*.log"), *logs.glob(f"{prefix}-*.log")]:
            log.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_volume(root: Path, name: str) -> GlusterVolume:
    """Start glusterd under ``root`` and a started one-brick volume ``name``."""
    server = socket.gethostname()
    if socket.gethostbyname(server) != "127.0.0.1":
        raise RuntimeError(f"the hostname {server} must resolve to 127.0.0.1 for a loopback GlusterFS brick")
    if accepts(GLUSTERD_PORT):
        raise RuntimeError(f"port {GLUSTERD_PORT} is taken: another glusterd runs on this machine")
    (root / "glusterd").mkdir(parents=True)
    (root / "brick").mkdir()
    os.chmod(root, 0o755)
    volume = GlusterVolume(name, server, root)
    (root / "glusterd.vol").write_text(
        "volume management\n    type mgmt/glusterd\n"
        f"    option working-directory {root / 'glusterd'}\n"
        f"    option glusterd-sockfile {root / 'glusterd.socket'}\n"
        "    option transport-type socket\n"
        f"    option transport.socket.listen-port {GLUSTERD_PORT}\n"
        "    option ping-timeout 0\n    option event-threads 1\nend-volume\n"
    )
    try:
        subprocess.run(["glusterd", "-f", str(root / "glusterd.vol"), "-p", str(root / "glusterd.pid"),
                        "-l", str(root / "glusterd.log")], check=True, capture_output=True, timeout=60)
        poll_until(lambda: volume.cli("volume", "list", check=False).returncode == 0, 20, 0.2, error=RuntimeError,
                   message=lambda: f"glusterd did not answer: {(root / 'glusterd.log').read_text()[-2000:]}")
        volume.cli("volume", "create", name, f"{server}:{volume.brick}", "force")
        volume.cli("volume", "start", name)
    except BaseException:
        volume.stop()
        raise
    return volume
