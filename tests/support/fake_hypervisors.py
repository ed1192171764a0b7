"""Node descriptions for libvirt's test driver: ``test:///<file>`` is a fake hypervisor of that size."""
from __future__ import annotations

from pathlib import Path

_NODE = ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>"
         "<active>{cpus}</active><mhz>2000</mhz><model>i686</model></cpu><memory>{kib}</memory></node>\n")


def fake_hypervisor(path: Path, cpus: int, memory_mb: int) -> str:
    """Write a node file for a fake hypervisor with ``cpus`` and ``memory_mb``; returns its URI."""
    path.write_text(_NODE.format(cpus=cpus, kib=memory_mb * 1024))
    return f"test://{path}"
