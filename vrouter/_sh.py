"""Running the few system commands the routers need (ip, iptables-restore, dnsmasq, sysctl)."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from vrouter.errors import RouterError

NETNS_DIR = Path("/run/netns")


def run(
    args: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; a failure becomes a RouterError naming the command."""
    try:
        proc = subprocess.run(
            list(args), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise RouterError(f"command not found: {args[0]} (is it installed?)") from None
    except subprocess.TimeoutExpired:
        raise RouterError(f"command timed out after {timeout:.0f} s: {shlex.join(args)}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RouterError(f"command failed (exit {proc.returncode}): {shlex.join(args)}: {detail}")
    return proc


def ns_exec(netns: str | None, args: Sequence[str]) -> list[str]:
    """The command line that runs args inside netns (or on the host when netns is None)."""
    return ["ip", "netns", "exec", netns, *args] if netns else list(args)


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Run several `ip` commands in one process (`ip -batch`), inside netns when given."""
    if not lines:
        return
    cmd = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    proc = run(cmd, input="\n".join(lines) + "\n", check=False)
    if proc.returncode != 0:
        # ip says "Command failed -:N": name the command itself
        failed = re.search(r"Command failed -:(\d+)", proc.stderr)
        line = lines[int(failed.group(1)) - 1] if failed and int(failed.group(1)) <= len(lines) else "; ".join(lines)
        where = f" in namespace {netns}" if netns else ""
        detail = re.sub(r"\s*Command failed -:\d+\s*", " ", proc.stderr).strip()
        raise RouterError(f"`ip {line}`{where} failed: {detail}")


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def netns_add(name: str) -> None:
    run(["ip", "netns", "add", name])


def netns_pids(name: str) -> list[int]:
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def netns_delete(name: str) -> None:
    """Kill every process left in the namespace, then delete it (a missing one is fine).

    Processes must be gone first: `ip netns del` only drops the name, and the namespace (with
    its veths still on our bridges) would live on as long as a process holds it.
    """
    if not netns_exists(name):
        return
    for pid in netns_pids(name):
        kill_and_wait(pid)
    run(["ip", "netns", "del", name], check=False)
    if netns_exists(name):
        raise RouterError(f"could not delete network namespace {name}")


def link_exists(name: str, netns: str | None = None) -> bool:
    if netns is None:
        return Path("/sys/class/net", name).exists()
    return run(["ip", "-n", netns, "link", "show", "dev", name], check=False).returncode == 0


def link_delete(name: str, netns: str | None = None) -> None:
    if link_exists(name, netns):
        run(["ip", *(["-n", netns] if netns else []), "link", "del", "dev", name], check=False)


def host_sysctl_disable_ipv6(ifname: str) -> None:
    """No IPv6 (so no link-local address, RS or MLD) on a host-side interface we create."""
    path = Path("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
    try:
        path.write_text("1\n")
    except FileNotFoundError:
        pass  # IPv6 disabled on the host altogether


def process_dead(pid: int) -> bool:
    """Gone or a zombie (PID 1 here does not reap, so killed daemons linger as zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state in ("Z", "X")


def start_daemon(cmd: Sequence[str], pid_file: Path, what: str, *, cwd: Path | None = None) -> None:
    """Run a command that forks a daemon away (which writes pid_file); return once it lives.

    The command's exit status and stderr report start-up errors (a bind that failed, bad flags);
    stderr goes through a file next to pid_file because the daemon must not hold our pipes.
    """
    pid_file.unlink(missing_ok=True)
    errfile = pid_file.with_suffix(".start.err")
    with open(errfile, "w+") as err:
        try:
            proc = subprocess.run(
                list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                timeout=15, start_new_session=True, check=False, cwd=cwd,
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise RouterError(f"{what} could not be started: {exc}") from None
        err.seek(0)
        message = err.read().strip()
    if proc.returncode != 0:
        raise RouterError(f"{what} failed to start (exit {proc.returncode}): {message}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if daemon_pid(pid_file) is not None:
            errfile.unlink(missing_ok=True)
            return
        time.sleep(0.01)
    raise RouterError(f"{what} did not come up (no live pid in {pid_file}): {message}")


def daemon_pid(pid_file: Path) -> int | None:
    """The live daemon started with `--pid-file=<pid_file>` (its command line is checked: pid reuse)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    if f"--pid-file={pid_file}".encode() not in cmdline or process_dead(pid):
        return None
    return pid


def stop_daemon(pid_file: Path) -> None:
    """Stop the daemon of pid_file (if it runs) and remove the pid file."""
    pid = daemon_pid(pid_file)
    if pid is not None:
        kill_and_wait(pid)
    pid_file.unlink(missing_ok=True)


def kill_and_wait(pid: int, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after timeout; returns when the process is dead."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process_dead(pid):
                return
            time.sleep(0.01)
    if not process_dead(pid):
        raise RouterError(f"process {pid} did not exit after SIGKILL")
