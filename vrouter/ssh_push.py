"""Push rendered UCI files to an OpenWrt router over SSH/SFTP (paramiko), then reload services.

- The router's host key is pinned (a known_hosts file or the key itself); an unknown or
  different key is refused with HostKeyError and never retried or learnt.
- Connection failures (refused, timeout, no banner yet while the VM boots) are retried with
  exponential backoff; authentication and host-key failures are not.
- Each file is written to a temporary name beside its target and renamed over it, so the router
  never reads half a file. Without an SFTP server (stock dropbear) the same is done with
  `cat > tmp && mv` over an exec channel.
- All remote paths live under a configurable root ("/" on a router; a scratch dir in tests).
"""
from __future__ import annotations

import base64
import posixpath
import secrets
import shlex
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko

from vrouter.errors import HostKeyError, RouterError

DEFAULT_RELOAD = (
    "/etc/init.d/network reload",
    "/etc/init.d/dnsmasq reload",
    "/etc/init.d/firewall reload",
)
T = TypeVar("T")


@dataclass(frozen=True)
class PushSettings:
    username: str = "root"
    port: int = 22
    key_filename: str | None = None       # private key for the router's root account
    known_hosts: str | None = None        # OpenSSH known_hosts file pinning the router's key
    host_key: str | None = None           # or the pinned key itself: "ssh-ed25519 AAAA..."
    root: str = "/"                       # prefix of every remote path
    config_dir: str = "etc/config"        # relative to root
    reload_commands: tuple[str, ...] = DEFAULT_RELOAD
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    attempts: int = 6
    backoff: float = 0.5                  # first wait between attempts; doubles up to backoff_max
    backoff_max: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)


@dataclass(frozen=True)
class PushResult:
    attempts: int                         # connection attempts it took
    paths: tuple[str, ...]                # remote paths written
    via: str                              # "sftp" or "exec"


class _PinnedOnly(paramiko.MissingHostKeyPolicy):
    """Refuse any server whose key is not pinned (paramiko calls this for unknown hosts)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"host key of {hostname} is not pinned ({key.get_name()} {key.fingerprint}); "
            "refusing to connect"
        )


class SshPusher:
    def __init__(self, settings: PushSettings) -> None:
        if not settings.known_hosts and not settings.host_key:
            raise RouterError("SSH push needs a pinned host key: set known_hosts or host_key")
        if settings.attempts < 1:
            raise RouterError("SSH push attempts must be at least 1")
        self.settings = settings

    # --- public operations ------------------------------------------------------------------------
    def push(self, host: str, files: Mapping[str, str], *, reload: bool = True) -> PushResult:
        """Write files ({name: content}) into <root>/<config_dir>/ and run the reload commands."""
        directory = self._remote(self.settings.config_dir)

        def work(client: paramiko.SSHClient) -> tuple[tuple[str, ...], str]:
            paths, via = self._write_all(client, directory, files)
            if reload:
                for command in self.settings.reload_commands:
                    self._exec(client, command, host)
            return paths, via

        (paths, via), attempts = self._with_connection(host, work)
        return PushResult(attempts=attempts, paths=paths, via=via)

    def read(self, host: str, path: str) -> str | None:
        """Content of <root>/<path> on the router, None when it does not exist."""
        remote = self._remote(path)
        command = f"test -e {shlex.quote(remote)} || exit 3; cat {shlex.quote(remote)}"

        def work(client: paramiko.SSHClient) -> str | None:
            status, out, err = self._exec_status(client, command)
            if status == 3:
                return None
            if status != 0:
                raise RouterError(f"reading {remote} on {host} failed (exit {status}): {err.strip()}")
            return out

        return self._with_connection(host, work)[0]

    def run(self, host: str, command: str) -> str:
        """Run one command on the router; its stdout (a non-zero exit raises RouterError)."""
        return self._with_connection(host, lambda client: self._exec(client, command, host))[0]

    # --- connection handling ------------------------------------------------------------------
    def _with_connection(self, host: str, work: Callable[[paramiko.SSHClient], T]) -> tuple[T, int]:
        """Connect (retrying transient failures with backoff) and run work on the connection.

        A connection that drops during work is retried too (work is idempotent: atomic writes,
        reloads); errors the router reports (a file it refuses, a failing command) are not.
        """
        s = self.settings
        delay = s.backoff
        last: Exception | None = None
        for attempt in range(1, s.attempts + 1):
            client = self._client(host)
            try:
                try:
                    client.connect(
                        host, port=s.port, username=s.username, key_filename=s.key_filename,
                        timeout=s.connect_timeout, banner_timeout=s.connect_timeout,
                        auth_timeout=s.connect_timeout, allow_agent=False, look_for_keys=False,
                    )
                except paramiko.BadHostKeyException as exc:
                    raise HostKeyError(
                        f"host key of {host}:{s.port} does not match the pinned key: it offered "
                        f"{exc.key.get_name()} {exc.key.fingerprint}, pinned "
                        f"{exc.expected_key.fingerprint} (possible man-in-the-middle, or the router "
                        "was re-installed); refusing to connect"
                    ) from None
                except paramiko.AuthenticationException as exc:
                    raise RouterError(
                        f"SSH authentication as {s.username}@{host}:{s.port} failed: {exc}"
                    ) from None
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    last = exc  # refused, timed out, no banner yet (booting): try again
                else:
                    try:
                        return work(client), attempt
                    except (EOFError, ConnectionError, socket.timeout, paramiko.SSHException) as exc:
                        last = exc  # the connection dropped under us: try again
                    except OSError as exc:  # the router refused a file operation
                        raise RouterError(f"SSH file operation on {host} failed: {exc}") from None
            finally:
                client.close()
            if attempt < s.attempts:
                s.sleep(delay)
                delay = min(delay * 2, s.backoff_max)
        raise RouterError(
            f"cannot reach the router over SSH at {host}:{s.port} after {s.attempts} attempts: "
            f"{type(last).__name__}: {last}"
        )

    def _client(self, host: str) -> paramiko.SSHClient:
        s = self.settings
        client = paramiko.SSHClient()
        keys = client.get_host_keys()
        if s.known_hosts:
            try:
                keys.load(s.known_hosts)
            except OSError as exc:
                raise RouterError(f"cannot read known_hosts file {s.known_hosts}: {exc}") from None
        if s.host_key:
            keytype, key = parse_public_key(s.host_key)
            keys.add(host if s.port == 22 else f"[{host}]:{s.port}", keytype, key)
        client.set_missing_host_key_policy(_PinnedOnly())
        return client

    # --- writing files --------------------------------------------------------------------------
    def _write_all(
        self, client: paramiko.SSHClient, directory: str, files: Mapping[str, str]
    ) -> tuple[tuple[str, ...], str]:
        for name in files:
            if not name or "/" in name or name.startswith("."):
                raise RouterError(f"invalid config file name {name!r}")
        try:
            sftp = client.open_sftp()
        except paramiko.SSHException:
            sftp = None  # no SFTP server on the router (stock dropbear): use exec
        paths = []
        if sftp is not None:
            with sftp:
                _sftp_makedirs(sftp, directory)
                for name, content in files.items():
                    paths.append(_sftp_write_atomic(sftp, posixpath.join(directory, name), content))
            return tuple(paths), "sftp"
        for name, content in files.items():
            target = posixpath.join(directory, name)
            tmp = f"{target}.ivfarm-{secrets.token_hex(4)}"
            command = (
                f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(tmp)} && "
                f"chmod 644 {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(target)} "
                f"|| {{ rm -f {shlex.quote(tmp)}; exit 1; }}"
            )
            status, _, err = self._exec_status(client, command, stdin=content.encode())
            if status != 0:
                raise RouterError(f"writing {target} failed (exit {status}): {err.strip()}")
            paths.append(target)
        return tuple(paths), "exec"

    def _exec(self, client: paramiko.SSHClient, command: str, host: str) -> str:
        status, out, err = self._exec_status(client, command)
        if status != 0:
            raise RouterError(f"command {command!r} on {host} failed (exit {status}): {err.strip()}")
        return out

    def _exec_status(
        self, client: paramiko.SSHClient, command: str, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=self.settings.connect_timeout)
        try:
            channel.settimeout(self.settings.command_timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:  # drain both streams so a chatty command cannot block on a full window
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                elif channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                else:
                    time.sleep(0.005)
            status = channel.recv_exit_status()
            return status, out.decode(errors="replace"), err.decode(errors="replace")
        except socket.timeout:
            raise RouterError(f"command {command!r} timed out after {self.settings.command_timeout:.0f} s") from None
        finally:
            channel.close()

    def _remote(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.settings.root, path.lstrip("/")))


def parse_public_key(line: str) -> tuple[str, paramiko.PKey]:
    """("ssh-ed25519", key) from an OpenSSH public key line ("TYPE BASE64 [comment]")."""
    parts = line.split()
    if len(parts) < 2:
        raise RouterError(f"pinned host key {line!r} is not 'TYPE BASE64' (an OpenSSH public key)")
    try:
        return parts[0], paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:
        raise RouterError(f"pinned host key cannot be parsed: {exc}") from None


def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    parts = [p for p in directory.split("/") if p]
    current = "/" if directory.startswith("/") else ""
    for part in parts:
        current = posixpath.join(current, part)
        try:
            sftp.stat(current)
        except FileNotFoundError:
            sftp.mkdir(current, 0o755)


def _sftp_write_atomic(sftp: paramiko.SFTPClient, target: str, content: str) -> str:
    tmp = f"{target}.ivfarm-{secrets.token_hex(4)}"
    try:
        with sftp.open(tmp, "wb") as fh:
            fh.write(content.encode())
        sftp.chmod(tmp, 0o644)
        try:
            sftp.posix_rename(tmp, target)  # atomic replace (OpenSSH extension)
        except OSError:
            try:  # plain SFTPv3 rename refuses an existing target
                sftp.remove(target)
            except FileNotFoundError:
                pass
            sftp.rename(tmp, target)
    except BaseException:
        try:
            sftp.remove(tmp)
        except OSError:
            pass
        raise
    return target


def write_known_hosts(path: Path, host: str, port: int, public_key_line: str) -> None:
    """Helper for callers that learn a router's key out of band (e.g. from the VM's console)."""
    keytype, key = parse_public_key(public_key_line)
    name = host if port == 22 else f"[{host}]:{port}"
    with open(path, "a") as fh:
        fh.write(f"{name} {keytype} {key.get_base64()}\n")


__all__: Sequence[str] = ("PushSettings", "PushResult", "SshPusher", "parse_public_key", "write_known_hosts", "DEFAULT_RELOAD")
