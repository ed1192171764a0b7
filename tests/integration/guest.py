"""Drive the busybox test guest through its serial console: type a command, read what it prints."""
from __future__ import annotations

import re
import threading
import time
import uuid

import libvirt

from ivfarm.services.instances import domain_name

_NOISE = re.compile(r"IVFARM-GUEST: tick \d+")


class _Console:
    """An open console stream with a thread collecting everything the guest prints."""

    def __init__(self, instance_id: str) -> None:
        self.conn = libvirt.open("qemu:///system")
        self.stream = self.conn.newStream(0)
        self.conn.lookupByName(domain_name(instance_id)).openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self.buffer = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.stream.recv(65536)
            except libvirt.libvirtError:
                return
            if not data or data == -2:
                return
            with self.lock:
                self.buffer.extend(data)

    def text(self) -> str:
        with self.lock:
            return self.buffer.decode("utf-8", "replace").replace("\r", "")

    def close(self) -> None:
        try:
            self.stream.abort()
        except libvirt.libvirtError:
            pass
        self.conn.close()


def guest_exec(instance_id: str, command: str, timeout_s: float = 60.0) -> tuple[int, str]:
    """Run ``command`` in the guest's shell on ttyS0; returns (exit status, output)."""
    token = uuid.uuid4().hex[:10]
    # the marker is computed by the guest, so the echoed command line never matches it
    line = f"{command}; rc=$?; echo END-{token}; echo \"RC$((40+2))-{token}:$rc\"\r"
    console = _Console(instance_id)
    try:
        deadline = time.monotonic() + timeout_s
        next_send = 0.0
        while time.monotonic() < deadline:
            text = console.text()
            match = re.search(rf"RC42-{token}:(\d+)", text)
            if match:
                end = text.rfind(f"END-{token}")
                start = text.rfind(f"-{token}:$rc", 0, end)
                body = text[text.find("\n", start) + 1:end] if start >= 0 else ""
                return int(match.group(1)), _NOISE.sub("", body).strip()
            if time.monotonic() >= next_send and f"END-{token}" not in text:
                console.stream.send(line.encode())  # again if the shell was not reading yet
                next_send = time.monotonic() + 20.0
            time.sleep(0.1)
    finally:
        console.close()
    raise AssertionError(f"no answer to {command!r} from {instance_id}:\n{console.text()[-2000:]}")
