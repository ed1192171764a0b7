"""Image caches in hosts' directories, reached over SSH: checksums, and verified copies with rsync.

A copy lands as ``NAME.partial``, its SHA-256 is computed on the receiving host, and only a
matching copy is renamed to ``NAME``: a file under its final name is always a verified copy.
Host-to-host copies run rsync on the sending host, which reaches the receiver with the same SSH
options and key path as the controller (deploy the key on the hosts, or use an agent).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivers.errors import CacheError, InvalidArgument

Progress = Callable[[float], None]
_PERCENT = re.compile(rb"(\d{1,3})%")


@dataclass(frozen=True)
class SshTarget:
    """An SSH endpoint ``user@host:port``."""

    user: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        """``[user@]host[:port]``, user root and port 22 by default."""
        user, _, rest = text.rpartition("@")
        host, _, port = rest.partition(":")
        if not host or (port and not port.isdigit()) or any(c.isspace() for c in text):
            raise InvalidArgument(f"invalid SSH target {text!r}: use user@host:port")
        return cls(user or "root", host, int(port or 22))

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class SshCache:
    """Runs the cache's commands on hosts with ``ssh`` and copies with ``rsync``."""

    def __init__(self, options: Sequence[str], key: str | None = None, bwlimit_kbps: int = 0) -> None:
        self.options = list(options) + (["-i", key] if key else [])
        self.bwlimit_kbps = bwlimit_kbps

    def _ssh(self, target: SshTarget) -> list[str]:
        return ["ssh", "-p", str(target.port), *self.options]

    def run(self, target: SshTarget, command: str, timeout_s: float | None = 120) -> str:
        """Run a shell command on the host; its stdout, or CacheError with its stderr."""
        argv = [*self._ssh(target), f"{target.user}@{target.host}", command]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CacheError(f"{target}: no answer within {timeout_s} s") from exc
        if done.returncode != 0:
            raise CacheError(f"{target}: {done.stderr.decode(errors='replace').strip() or f'exit {done.returncode}'}")
        return done.stdout.decode(errors="replace")

    def checksum(self, target: SshTarget, path: str) -> str | None:
        """SHA-256 of the file on the host (computed there), or None when it is absent."""
        quoted = shlex.quote(path)
        out = self.run(target, f"if [ -f {quoted} ]; then sha256sum {quoted}; else echo absent; fi", None).split()
        return None if out == ["absent"] else out[0]

    def exists(self, target: SshTarget, path: str) -> bool:
        """True when a (verified, see the module doc) copy is on the host."""
        return self.run(target, f"test -f {shlex.quote(path)} && echo yes || echo no").strip() == "yes"

    def _rsync(self, source: str, target: SshTarget, path: str) -> list[str]:
        remote_dir = shlex.quote(path.rsplit("/", 1)[0] or "/")
        argv = ["rsync", "--info=progress2", "-e", shlex.join(self._ssh(target)),
                "--rsync-path", f"mkdir -p {remote_dir} && rsync"]
        if self.bwlimit_kbps:
            argv.append(f"--bwlimit={self.bwlimit_kbps}")
        return [*argv, source, f"{target.user}@{target.host}:{path}.partial"]

    def copy_from_local(self, source: str, target: SshTarget, path: str, sha256: str,
                        progress: Progress | None = None) -> None:
        """Copy a file of this machine into the host's cache and verify it there."""
        self._stream(self._rsync(source, target, path), progress, str(target))
        self._install(target, path, sha256)

    def copy_between(self, sender: SshTarget, source: str, target: SshTarget, path: str, sha256: str,
                     progress: Progress | None = None) -> None:
        """Have ``sender`` copy its cached file into ``target``'s cache, then verify it there."""
        remote = shlex.join(self._rsync(source, target, path))
        argv = [*self._ssh(sender), f"{sender.user}@{sender.host}", remote]
        self._stream(argv, progress, f"{sender} -> {target}")
        self._install(target, path, sha256)

    def _install(self, target: SshTarget, path: str, sha256: str) -> None:
        final, partial = shlex.quote(path), shlex.quote(path + ".partial")
        script = (
            f"sum=$(sha256sum {partial} | cut -d' ' -f1) || exit 4; "
            f"if [ \"$sum\" != {shlex.quote(sha256)} ]; then rm -f {partial}; "
            f"echo \"checksum mismatch: got $sum\" >&2; exit 3; fi; "
            f"chmod 0644 {partial} && mv -f {partial} {final}"
        )
        self.run(target, script, None)

    @staticmethod
    def _stream(argv: list[str], progress: Progress | None, label: str) -> None:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        while chunk := os.read(process.stdout.fileno(), 4096):
            found = _PERCENT.findall(chunk)
            if found and progress is not None:
                progress(min(int(found[-1]), 100) / 100)
        error = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise CacheError(f"{label}: rsync failed: {error or f'exit {process.returncode}'}")
