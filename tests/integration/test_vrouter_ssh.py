"""SSH/SFTP push of UCI files against a real OpenSSH server on loopback, and the openwrt backend
with a stand-in RouterVm (the only test double: the VM provider lives in ivfarm)."""
from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.polling import accepts, poll_until
from vrouter.errors import HostKeyError, RouterError
from vrouter.openwrt import OpenWrtRouter, RouterVm
from vrouter.spec import Lease, PortForward, RouterSpec
from vrouter.ssh_push import PushSettings, SshPusher, write_known_hosts
from vrouter.uci import render_uci

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.sshd  # tests/conftest.py skips it (or fails it in CI) when unmet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    """A throwaway OpenSSH server on 127.0.0.1: own host key, root login by key only."""

    def __init__(self, base: Path, *, sftp: bool = True) -> None:
        self.base = base
        self.port = free_port()
        self.host_pub = keygen(base / "host_key")
        self.client_key = base / "client_key"
        (base / "authorized_keys").write_text(keygen(self.client_key) + "\n")
        self.config = base / "sshd_config"
        lines = [
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {base / 'host_key'}",
            f"PidFile {base / 'sshd.pid'}", f"AuthorizedKeysFile {base / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "UsePAM no",
            "StrictModes no", "MaxStartups 50",
        ]
        if sftp:
            lines.append("Subsystem sftp internal-sftp")
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=open(self.base / "sshd.log", "ab"),
        )
        poll_until(lambda: accepts(self.port), 10, 0.02, error=RuntimeError,
                   message=lambda: f"sshd did not start: {(self.base / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def privsep_dir():
    path = Path("/run/sshd")  # OpenSSH refuses to start without its privilege-separation dir
    made = not path.exists()
    if made:
        path.mkdir(mode=0o755)
    yield
    if made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_sshd(tmp_path: Path, privsep_dir: None):
    servers: list[Sshd] = []

    def make(*, sftp: bool = True, start: bool = True) -> Sshd:
        base = tmp_path / f"sshd{len(servers)}"
        base.mkdir()
        server = Sshd(base, sftp=sftp)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    root = tmp_path / "router-root"
    root.mkdir()
    return root


def settings_for(server: Sshd, scratch: Path, **overrides: object) -> PushSettings:
    known = server.base / "known_hosts"
    if not known.exists():
        write_known_hosts(known, "127.0.0.1", server.port, server.host_pub)
    options: dict[str, object] = dict(
        port=server.port, key_filename=str(server.client_key), known_hosts=str(known),
        root=str(scratch), connect_timeout=3, backoff=0.2, attempts=3,
        reload_commands=tuple(f"touch {scratch}/reloaded-{svc}" for svc in ("network", "dnsmasq", "firewall")),
    )
    options.update(overrides)
    return PushSettings(**options)  # type: ignore[arg-type]


SPEC = RouterSpec(
    key="r7", farm="medimg", lan_cidr="10.64.7.0/24", lan_ip="10.64.7.1", lan_bridge="ivbr7",
    wan_ip="198.51.100.70", wan_prefix=24, wan_gateway="198.51.100.1", dns_forwarders=("198.51.100.53",),
    leases=(Lease("02:00:0a:40:07:0a", "10.64.7.10", "pacs"),),
    forwards=(PortForward("tcp", 443, "10.64.7.10", 8443),),
    elastic_ip="198.51.100.71", elastic_target="10.64.7.10",
)
FILES = render_uci(SPEC, ssh_allow_from=["127.0.0.1/32"])  # the controller's address toward 127.0.0.1


def config_dir(scratch: Path) -> Path:
    return scratch / "etc" / "config"


def test_push_writes_files_atomically_and_reloads(make_sshd, scratch: Path) -> None:
    server = make_sshd()
    result = SshPusher(settings_for(server, scratch)).push("127.0.0.1", FILES)
    assert result.via == "sftp" and result.attempts == 1
    for name, content in FILES.items():
        path = config_dir(scratch) / name
        assert path.read_text() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in config_dir(scratch).iterdir()) == ["dhcp", "firewall", "network"]  # no temp files
    for svc in ("network", "dnsmasq", "firewall"):
        assert (scratch / f"reloaded-{svc}").exists()


def test_push_replaces_existing_files(make_sshd, scratch: Path) -> None:
    server = make_sshd()
    config_dir(scratch).mkdir(parents=True)
    (config_dir(scratch) / "network").write_text("config interface 'old'\n")
    SshPusher(settings_for(server, scratch)).push("127.0.0.1", FILES)
    assert (config_dir(scratch) / "network").read_text() == FILES["network"]


def test_explicit_pinned_key(make_sshd, scratch: Path) -> None:
    server = make_sshd()
    settings = settings_for(server, scratch, known_hosts=None, host_key=server.host_pub)
    SshPusher(settings).push("127.0.0.1", FILES)
    assert (config_dir(scratch) / "dhcp").read_text() == FILES["dhcp"]


def test_wrong_pinned_key_is_refused_without_retry(make_sshd, scratch: Path, tmp_path: Path) -> None:
    server = make_sshd()
    impostor = keygen(tmp_path / "impostor")
    sleeps: list[float] = []
    settings = settings_for(server, scratch, known_hosts=None, host_key=impostor, attempts=5, sleep=sleeps.append)
    with pytest.raises(HostKeyError, match="does not match the pinned key"):
        SshPusher(settings).push("127.0.0.1", FILES)
    assert sleeps == []  # a host-key failure is final, never retried
    assert not config_dir(scratch).exists()
    assert not (scratch / "reloaded-network").exists()


def test_unknown_host_is_refused(make_sshd, scratch: Path, tmp_path: Path) -> None:
    server = make_sshd()
    known = tmp_path / "known_hosts_other"
    write_known_hosts(known, "127.0.0.1", server.port + 1, server.host_pub)  # pinned for another port only
    with pytest.raises(HostKeyError, match="not pinned"):
        SshPusher(settings_for(server, scratch, known_hosts=str(known))).push("127.0.0.1", FILES)
    assert not config_dir(scratch).exists()


def test_retries_until_the_server_comes_up(make_sshd, scratch: Path) -> None:
    server = make_sshd(start=False)
    timer = threading.Timer(1.5, server.start)
    timer.start()
    try:
        settings = settings_for(server, scratch, attempts=10, backoff=0.2, backoff_max=1.0)
        started = time.monotonic()
        result = SshPusher(settings).push("127.0.0.1", FILES)
    finally:
        timer.join()
    assert result.attempts > 1
    assert time.monotonic() - started >= 1.4
    assert (config_dir(scratch) / "firewall").read_text() == FILES["firewall"]


def test_gives_up_after_the_configured_attempts(make_sshd, scratch: Path) -> None:
    server = make_sshd(start=False)  # never started: connection refused every time
    sleeps: list[float] = []
    settings = settings_for(server, scratch, attempts=4, backoff=0.5, backoff_max=1.5, sleep=sleeps.append)
    with pytest.raises(RouterError, match="after 4 attempts"):
        SshPusher(settings).push("127.0.0.1", FILES)
    assert sleeps == [0.5, 1.0, 1.5]  # exponential backoff, capped


def test_wrong_client_key_is_an_auth_error(make_sshd, scratch: Path, tmp_path: Path) -> None:
    server = make_sshd()
    keygen(tmp_path / "stranger")
    sleeps: list[float] = []
    settings = settings_for(server, scratch, key_filename=str(tmp_path / "stranger"), sleep=sleeps.append)
    with pytest.raises(RouterError, match="authentication"):
        SshPusher(settings).push("127.0.0.1", FILES)
    assert sleeps == []


def test_failing_reload_command_is_reported(make_sshd, scratch: Path) -> None:
    server = make_sshd()
    settings = settings_for(server, scratch, reload_commands=("echo firewall broke >&2; exit 3",))
    with pytest.raises(RouterError, match=r"exit 3\): firewall broke"):
        SshPusher(settings).push("127.0.0.1", FILES)
    assert (config_dir(scratch) / "firewall").read_text() == FILES["firewall"]


def test_without_sftp_falls_back_to_exec(make_sshd, scratch: Path) -> None:
    server = make_sshd(sftp=False)  # like a stock OpenWrt dropbear
    result = SshPusher(settings_for(server, scratch)).push("127.0.0.1", FILES)
    assert result.via == "exec"
    for name, content in FILES.items():
        assert (config_dir(scratch) / name).read_text() == content
    assert sorted(p.name for p in config_dir(scratch).iterdir()) == ["dhcp", "firewall", "network"]
    assert (scratch / "reloaded-firewall").exists()


class LoopbackVm:
    """Stand-in for ivfarm's router-VM provider: 'starts' a VM whose management address is the
    loopback sshd."""

    def __init__(self) -> None:
        self.vms: dict[str, RouterSpec] = {}
        self.removed: list[str] = []

    def ensure(self, spec: RouterSpec) -> str:
        self.vms[spec.key] = spec
        return "127.0.0.1"

    def remove(self, key: str) -> None:
        self.vms.pop(key, None)
        self.removed.append(key)

    def list_keys(self) -> list[str]:
        return list(self.vms)


def test_openwrt_backend_lifecycle(make_sshd, scratch: Path) -> None:
    server = make_sshd()
    vm = LoopbackVm()
    assert isinstance(vm, RouterVm)
    router = OpenWrtRouter(vm, settings_for(server, scratch))
    router.create(SPEC)
    assert router.exists("r7") and router.list_keys() == ["r7"]
    for name, content in FILES.items():
        assert (config_dir(scratch) / name).read_text() == content

    with pytest.raises(RouterError, match="already exists"):
        router.create(SPEC)

    (scratch / "reloaded-firewall").unlink()
    changed = RouterSpec(**{**SPEC.to_dict(), "elastic_target": None,
                            "leases": SPEC.leases, "forwards": (PortForward("udp", 5000, "10.64.7.10", 5000),)})
    router.apply(changed)
    firewall = (config_dir(scratch) / "firewall").read_text()
    assert "option src_dport '5000'" in firewall and "8443" not in firewall and "eip_dnat" not in firewall
    assert "198.51.100.71" not in (config_dir(scratch) / "network").read_text()
    assert (scratch / "reloaded-firewall").exists()

    (scratch / "tmp").mkdir()
    (scratch / "tmp" / "dhcp.leases").write_text("1999999999 02:00:0a:40:07:0a 10.64.7.10 pacs 01:02:00:0a:40:07:0a\n")
    assert router.leases("r7") == [("02:00:0a:40:07:0a", "10.64.7.10")]

    router.destroy("r7")
    assert vm.removed == ["r7"] and not router.exists("r7")
    with pytest.raises(RouterError, match="does not exist"):
        router.apply(SPEC)


def test_openwrt_create_failure_removes_the_vm(make_sshd, scratch: Path, tmp_path: Path) -> None:
    server = make_sshd()
    vm = LoopbackVm()
    router = OpenWrtRouter(vm, settings_for(server, scratch, known_hosts=None, host_key=keygen(tmp_path / "other")))
    with pytest.raises(RouterError, match="creating router r7.*does not match"):
        router.create(SPEC)
    assert vm.removed == ["r7"] and vm.list_keys() == []
