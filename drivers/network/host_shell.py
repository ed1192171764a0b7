"""Where a host's network commands run: on this machine, in one of its network namespaces, or over SSH.

The VXLAN segments (and anything else that must shape a host's links itself, where libvirt has no
API) run ``ip`` and ``bridge`` through the host's shell, so the same code serves a remote
hypervisor, this machine, and the namespaced hypervisors of the multi-host test site.
"""
from __future__ import annotations

import abc
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.errors import NetworkError

TIMEOUT_S = 30


class HostShell(abc.ABC):
    """Runs a command (an argv) on one host."""

    @abc.abstractmethod
    def argv(self, args: Sequence[str]) -> list[str]:
        """The local command line that runs ``args`` on the host."""

    def run(self, args: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
        """Run ``args`` on the host; its stdout, or NetworkError naming the command (with ``check``)."""
        argv = self.argv(args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NetworkError(f"{self}: {shlex.join(args)}: {exc}") from exc
        if check and done.returncode != 0:
            raise NetworkError(f"{self}: {shlex.join(args)} failed: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def batch(self, lines: Sequence[str], tool: str = "ip", *, force: bool = False) -> None:
        """Several ``ip`` (or ``bridge``) commands in one process; with ``force`` it goes on after a
        failure (removals remove all they can) and still reports it."""
        if lines:
            self.run([tool, *(["-force"] if force else []), "-batch", "-"], input="\n".join(lines) + "\n")


@dataclass(frozen=True)
class LocalShell(HostShell):
    """This machine's own network namespace."""

    def argv(self, args: Sequence[str]) -> list[str]:
        return list(args)

    def __str__(self) -> str:
        return "this host"


@dataclass(frozen=True)
class NetnsShell(HostShell):
    """A named network namespace of this machine (a hypervisor of the multi-host test site)."""

    netns: str

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *args]

    def __str__(self) -> str:
        return f"namespace {self.netns}"


@dataclass(frozen=True)
class SshShell(HostShell):
    """A remote host through ``ssh`` to ``user@host`` on ``port`` (the host's ``ssh_target``)."""

    user: str
    host: str
    port: int = 22
    options: tuple[str, ...] = ("-o", "BatchMode=yes")

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["ssh", "-p", str(self.port), *self.options, f"{self.user}@{self.host}", shlex.join(args)]

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"
