"""Render the one domain template (``flavors/domain.xml.j2``) from a typed spec."""
from __future__ import annotations

import functools
import importlib.resources
from dataclasses import asdict, dataclass, field

import jinja2

from drivers.hypervisor.libvirt_driver import METADATA_NS
from drivers.storage.base import Disk


@dataclass(frozen=True)
class Nic:
    """A NIC on a bridge; ``filter`` is an nwfilter name with its parameters (anti-spoofing)."""

    bridge: str
    mac: str
    filter: str | None = None
    filter_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeDisk:
    """A volume's disk on the virtio target its attachment named (``vdf`` for ``/dev/sdf``)."""

    disk: Disk
    target: str


@dataclass(frozen=True)
class DomainSpec:
    """Everything the template needs; nothing libvirt-specific leaks into callers."""

    name: str
    instance_id: str
    cloud: str
    farm: str
    flavor: str
    image_id: str
    vcpus: int
    memory_mb: int
    domain_type: str
    machine: str = "pc"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    disks: tuple[Disk, ...] = ()  # root, ephemeral: on vda, vdb, ...
    volumes: tuple[VolumeDisk, ...] = ()  # attached volumes, on their own targets
    seed: str | None = None
    nics: tuple[Nic, ...] = ()
    console_log: str | None = None
    console_append: bool = True


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    source = importlib.resources.files("flavors").joinpath("domain.xml.j2").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    return env.from_string(source)


def render_domain(spec: DomainSpec) -> str:
    """The domain XML for ``spec``; every value is XML-escaped by the template engine."""
    targets = [f"vd{chr(ord('a') + index)}" for index in range(len(spec.disks))]
    disks = [dict(asdict(disk), target=target) for disk, target in zip(spec.disks, targets, strict=True)]
    disks += [dict(asdict(volume.disk), target=volume.target) for volume in spec.volumes]
    values = asdict(spec)
    values.update(disks=disks, title=f"{spec.instance_id} ({spec.farm or 'no farm'})", metadata_ns=METADATA_NS)
    return _template().render(**values)
