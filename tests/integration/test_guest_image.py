"""Boot the tiny guest built by images/build.sh on a real libvirtd (software emulation).

Checks the guest's contract with the rest of ivfarm (see images/README.md): console markers,
the boot counter on its data disk, the NoCloud seed (instance-id, user-data as a script or MIME
multipart, static network-config), DHCP, the HTTP service, the console shell and poweroff.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")
pycdlib = pytest.importorskip("pycdlib")

from tests.integration.guest import SerialConsole  # noqa: E402
from tests.support.polling import poll_until, text_with  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.libvirtd, pytest.mark.vm]

REPO = Path(__file__).resolve().parents[2]
# libvirt-qemu must traverse every parent: not /root, not pytest's tmp_path (mode 0700).
BASE = Path("/var/lib/ivfarm-test")
IMAGES = BASE / "images"
URI = "qemu:///system"
INSTANCE_ID = "i-0123456789abcdef0"
BOOT_TIMEOUT = 60.0
USER_DATA = b"#!/bin/sh\necho HELLO-FROM-USERDATA\n"


def _mkdir_0755(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.parents]:
        if p == Path("/") or p.stat().st_mode & 0o005 == 0o005:
            continue
        p.chmod(p.stat().st_mode | 0o755)


@pytest.fixture(scope="module")
def guest_image() -> dict:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _mkdir_0755(IMAGES)
    t0 = time.monotonic()
    subprocess.run(["bash", str(REPO / "images" / "build.sh"), str(IMAGES)], check=True, timeout=900)
    print(f"\nimages/build.sh: {time.monotonic() - t0:.1f} s")
    manifest = json.loads((IMAGES / "manifest.json").read_text())
    for name in ("vmlinuz", "initrd.img", "rootfs.raw"):
        assert (IMAGES / name).stat().st_size == manifest["files"][name]["size"]
    return manifest


@pytest.fixture
def conn() -> Iterator["libvirt.virConnect"]:
    try:
        c = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.skip(f"no libvirtd at {URI}: {exc}")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    _mkdir_0755(BASE / "run")
    d = Path(tempfile.mkdtemp(prefix="guest-", dir=BASE / "run"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def define(conn) -> Iterator[Callable[[str], "libvirt.virDomain"]]:
    """Defines domains from XML; destroys and undefines them all at teardown."""
    names: list[str] = []

    def _define(xml: str) -> "libvirt.virDomain":
        dom = conn.defineXML(xml)
        names.append(dom.name())
        return dom

    yield _define
    for name in names:
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError as exc:
            print(f"cleanup of domain {name}: {exc}")
        Path(f"/var/log/libvirt/qemu/{name}.log").unlink(missing_ok=True)


def make_overlay(workdir: Path) -> Path:
    disk = workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(IMAGES / "rootfs.raw"),
                    "-F", "raw", str(disk)], check=True)
    return disk


def make_seed(path: Path, files: dict[str, bytes]) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, data in files.items():
        iso_name = "/" + name.upper().replace("-", "_") + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
    iso.write(str(path))
    iso.close()
    return path


def domain_xml(name: str, manifest: dict, disk: Path, seed: Path | None, log: Path,
               bridge: str | None = None, mac: str | None = None) -> str:
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory", unit="MiB").text = "128"
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(IMAGES / manifest["kernel"])
    ET.SubElement(os_el, "initrd").text = str(IMAGES / manifest["initrd"])
    ET.SubElement(os_el, "cmdline").text = manifest["cmdline"]
    ET.SubElement(ET.SubElement(dom, "features"), "acpi")
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    d = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(d, "driver", name="qemu", type="qcow2")
    ET.SubElement(d, "source", file=str(disk))
    ET.SubElement(d, "target", dev="vda", bus="virtio")
    if seed is not None:
        c = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(c, "driver", name="qemu", type="raw")
        ET.SubElement(c, "source", file=str(seed))
        ET.SubElement(c, "target", dev="hdc", bus="ide")
        ET.SubElement(c, "readonly")
    if bridge is not None:
        nic = ET.SubElement(devices, "interface", type="bridge")
        ET.SubElement(nic, "source", bridge=bridge)
        if mac:
            ET.SubElement(nic, "mac", address=mac)
        ET.SubElement(nic, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "log", file=str(log), append="off")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def wait_markers(log: Path, markers: list[str], timeout: float = BOOT_TIMEOUT) -> str:
    """Waits until every marker appears in the serial log; returns the log text."""
    def read() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    def failure() -> str:
        text = read()
        missing = [m for m in markers if m not in text]
        return f"markers {missing} not seen within {timeout:.0f} s; serial log:\n{text}"

    return poll_until(text_with(read, *markers), timeout, 0.1, failure)


def wait_state(dom, state: int, timeout: float = 30.0) -> None:
    poll_until(lambda: dom.state()[0] == state, timeout, 0.2,
               lambda: f"domain {dom.name()} state {dom.state()} != {state} after {timeout} s")


def boot(dom, log: Path, markers: list[str]) -> tuple[str, str]:
    """Starts dom and waits for markers; returns the log and a timing note."""
    t0 = time.monotonic()
    dom.create()
    t1 = time.monotonic()
    text = wait_markers(log, markers)
    t2 = time.monotonic()
    return text, f"{t2 - t0:.1f} s (domain start {t1 - t0:.1f} s, guest {t2 - t1:.1f} s)"


def test_boot_seed_console_and_boot_counter(guest_image, conn, workdir, define):
    disk = make_overlay(workdir)
    seed = make_seed(workdir / "seed.iso", {
        "meta-data": f"instance-id: {INSTANCE_ID}\nlocal-hostname: tiny\n".encode(),
        "user-data": USER_DATA,
    })
    log = workdir / "console.log"
    name = f"ivfarm-test-guest-{uuid.uuid4().hex[:8]}"
    dom = define(domain_xml(name, guest_image, disk, seed, log))

    text, timing = boot(dom, log, ["IVFARM-GUEST: ready"])
    print(f"\nboot to 'ready': {timing}")
    for marker in ["IVFARM-GUEST: booted", "IVFARM-GUEST: rootfs ok boots=1",
                   f"IVFARM-GUEST: instance-id={INSTANCE_ID}", "HELLO-FROM-USERDATA",
                   "IVFARM-GUEST: user-data exit=0", "IVFARM-GUEST: seed ok",
                   "IVFARM-GUEST: no network"]:
        assert marker in text, f"{marker!r} missing from:\n{text}"
    assert text.index("HELLO-FROM-USERDATA") < text.index("IVFARM-GUEST: ready")
    wait_markers(log, ["IVFARM-GUEST: tick 2"], timeout=10)

    console = SerialConsole(conn, dom)
    try:
        console.expect("echo $((6*7))", r"^42$")
        console.expect("cat /www/index.html", rf"^{INSTANCE_ID}$")
        console.expect("hostname", r"^tiny$")
        console.send("poweroff -f")
        wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
    finally:
        console.close()

    # The overlay keeps what the first boot wrote; the log is truncated at start.
    text, timing = boot(dom, log, ["IVFARM-GUEST: ready"])
    print(f"second boot to 'ready': {timing}")
    assert "IVFARM-GUEST: rootfs ok boots=2" in text
    assert "boots=1" not in text


# --- network: DHCP from dnsmasq in a namespace, static network-config, MIME user-data ----------

def _sh(*args: str) -> None:
    subprocess.run(args, check=True)


@pytest.fixture
def lan(workdir) -> Iterator[dict]:
    """An isolated bridge (no host IP) with a DHCP server in its own network namespace."""
    tag = uuid.uuid4().hex[:6]
    br, ns, veth = f"ivtbr{tag}", f"ivt-{tag}", f"ivtv{tag}"
    info = {"bridge": br, "ns": ns, "router": "10.251.0.1", "dhcp_mac": "02:00:0a:fb:00:0a",
            "dhcp_ip": "10.251.0.10", "static_ip": "10.251.0.20"}
    dnsmasq = None
    try:
        _sh("ip", "link", "add", br, "type", "bridge")
        Path(f"/proc/sys/net/ipv6/conf/{br}/disable_ipv6").write_text("1")
        _sh("ip", "link", "set", br, "up")
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "lan0", "netns", ns)
        _sh("ip", "link", "set", veth, "master", br, "up")
        _sh("ip", "-n", ns, "addr", "add", "10.251.0.1/24", "dev", "lan0")
        _sh("ip", "-n", ns, "link", "set", "lan0", "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        dnsmasq = subprocess.Popen([
            "ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-hosts", "--no-resolv", "--port=0", "--user=root", "--bind-interfaces",
            "--interface=lan0", "--dhcp-range=10.251.0.100,10.251.0.150,255.255.255.0,1h",
            f"--dhcp-host={info['dhcp_mac']},{info['dhcp_ip']},tiny-dhcp",
            "--dhcp-option=option:router,10.251.0.1", "--dhcp-authoritative",
            f"--dhcp-leasefile={workdir / 'leases'}", f"--pid-file={workdir / 'dnsmasq.pid'}",
        ])
        yield info
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            try:
                dnsmasq.wait(10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait()
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", veth], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", br], stderr=subprocess.DEVNULL)


def _http_get_in_ns(ns: str, url: str) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode(), end='')"
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         check=True, capture_output=True, text=True, timeout=20)
    return out.stdout


def test_network_dhcp_static_http_and_mime_user_data(guest_image, conn, workdir, lan, define):
    # Guest A: DHCP; JSON meta-data; MIME multipart user-data (one part exits 3).
    dir_a = workdir / "a"
    dir_b = workdir / "b"
    for d in (dir_a, dir_b):
        d.mkdir(mode=0o755)
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    mime = MIMEMultipart()
    mime.attach(MIMEText("#cloud-config\nhostname: ignored\n", "cloud-config"))
    mime.attach(MIMEText("#!/bin/sh\necho PART-ONE-RAN\nexit 3\n", "x-shellscript"))
    mime.attach(MIMEText("#!/bin/sh\necho PART-TWO-RAN-\u00e9\n", "x-shellscript", "utf-8"))
    seed_a = make_seed(dir_a / "seed.iso", {
        "meta-data": json.dumps({"instance-id": "i-00000000000000aaa"}).encode(),
        "user-data": mime.as_bytes(),
    })
    # Guest B: static address from network-config v2, no user-data.
    seed_b = make_seed(dir_b / "seed.iso", {
        "meta-data": b"instance-id: i-00000000000000bbb\n",
        "network-config": (f"version: 2\nethernets:\n  eth0:\n    addresses:\n"
                           f"      - {lan['static_ip']}/24\n    gateway4: {lan['router']}\n").encode(),
    })
    tag = uuid.uuid4().hex[:8]
    dom_a = define(domain_xml(f"ivfarm-test-guest-a-{tag}", guest_image, make_overlay(dir_a), seed_a,
                              dir_a / "console.log", lan["bridge"], lan["dhcp_mac"]))
    dom_b = define(domain_xml(f"ivfarm-test-guest-b-{tag}", guest_image, make_overlay(dir_b), seed_b,
                              dir_b / "console.log", lan["bridge"], "02:00:0a:fb:00:14"))
    t0 = time.monotonic()
    dom_a.create()
    dom_b.create()
    text_a = wait_markers(dir_a / "console.log", ["IVFARM-GUEST: ready"])
    text_b = wait_markers(dir_b / "console.log", ["IVFARM-GUEST: ready"])
    print(f"\ntwo guests with NICs to 'ready': {time.monotonic() - t0:.1f} s")

    assert f"IVFARM-GUEST: ip={lan['dhcp_ip']}" in text_a, text_a
    assert "IVFARM-GUEST: instance-id=i-00000000000000aaa" in text_a
    assert "PART-ONE-RAN" in text_a and "PART-TWO-RAN-\u00e9" in text_a
    assert "user-data part=part-002 exit=3" in text_a and "IVFARM-GUEST: user-data exit=3" in text_a
    assert f"IVFARM-GUEST: ip={lan['static_ip']}" in text_b, text_b
    assert "IVFARM-GUEST: user-data none" in text_b

    assert _http_get_in_ns(lan["ns"], f"http://{lan['dhcp_ip']}/") == "i-00000000000000aaa\n"
    assert _http_get_in_ns(lan["ns"], f"http://{lan['static_ip']}/") == "i-00000000000000bbb\n"

    # Guest to guest over the bridge, from A's console (busybox wget -T segfaults: use timeout).
    console = SerialConsole(conn, dom_a)
    try:
        console.expect(f"timeout 4 wget -q -O - http://{lan['static_ip']}/",
                       r"^i-00000000000000bbb$")
    finally:
        console.close()
