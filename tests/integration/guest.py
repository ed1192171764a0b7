"""Drive the busybox test guest through its serial console: type a command, read what it prints."""
from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable

import libvirt

from ivfarm.services.compute.instances import domain_name
from tests.support.polling import poll_until

_NOISE = re.compile(r"IVFARM-GUEST: tick \d+")


def _every(period_s: float, action: Callable[[], None]) -> Callable[[], None]:
    """A function that runs ``action`` when called, unless it already did in the last ``period_s``."""
    due = 0.0

    def maybe() -> None:
        nonlocal due
        if time.monotonic() >= due:
            action()
            due = time.monotonic() + period_s

    return maybe


class SerialConsole:
    """A command channel into the guest's shell on ttyS0 through virDomainOpenConsole."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain) -> None:
        self._stream = conn.newStream(0)
        dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self._stream.recv(65536)
            except libvirt.libvirtError:
                return
            if not data or data == -2:
                return
            with self._lock:
                self._buf.extend(data)

    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace").replace("\r", "")

    def send(self, line: str) -> None:
        self._stream.send((line + "\r").encode())

    def expect(self, command: str, pattern: str, timeout: float = 20.0) -> re.Match:
        """Types command (again every 3 s, in case the shell was not reading yet) until the
        output matches pattern (a multiline regex)."""
        resend = _every(3.0, lambda: self.send(command))

        def matched() -> re.Match | None:
            resend()
            return re.search(pattern, self.text(), re.M)

        return poll_until(matched, timeout, 0.05, lambda: f"no {pattern!r} after {command!r}; console:\n{self.text()}")

    def close(self) -> None:
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass
        self._thread.join(5)



def guest_exec(instance_id: str, command: str, timeout_s: float = 60.0, uri: str = "qemu:///system") -> tuple[int, str]:
    """Run ``command`` in the guest's shell on ttyS0 (a guest of the hypervisor at ``uri``); returns
    (exit status, output)."""
    token = uuid.uuid4().hex[:10]
    # the markers are computed by the guest, so the echoed command line (which the console wraps
    # at 80 columns, possibly inside a marker) never matches them
    line = f"echo BEGIN$((40+2))-{token}; {command}; rc=$?; echo END-{token}; echo \"RC$((40+2))-{token}:$rc\""
    conn = libvirt.open(uri)
    console = SerialConsole(conn, conn.lookupByName(domain_name(instance_id)))
    resend = _every(20.0, lambda: console.send(line))  # again if the shell was not reading yet

    def answer() -> tuple[int, str] | None:
        text = console.text()
        match = re.search(rf"RC42-{token}:(\d+)", text)
        if match:
            end = text.rfind(f"END-{token}")
            start = text.rfind(f"BEGIN42-{token}", 0, end)
            body = text[text.find("\n", start) + 1:end] if start >= 0 else ""
            return int(match.group(1)), _NOISE.sub("", body).strip()
        if f"END-{token}" not in text:
            resend()
        return None

    try:
        return poll_until(answer, timeout_s, 0.1,
                          lambda: f"no answer to {command!r} from {instance_id}:\n{console.text()[-2000:]}")
    finally:
        console.close()
        conn.close()
