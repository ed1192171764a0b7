"""Device XML for hot-plugging: one disk as the domain template renders it."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from drivers.storage.base import Disk


def disk_element(disk: Disk, target: str) -> ET.Element:
    """The ``<disk>`` of ``disk`` on virtio target ``target`` (``vdf``)."""
    element = ET.Element("disk", type=disk.source_type, device="disk")
    ET.SubElement(element, "driver", name="qemu", type=disk.disk_format)
    if disk.source_type == "network":
        source = ET.SubElement(element, "source", protocol=disk.network_protocol or "", name=disk.network_name or "")
        for host in disk.network_hosts:
            ET.SubElement(source, "host", name=host, port="24007")
        ET.SubElement(source, "seclabel", model="dac", relabel="no")
        ET.SubElement(element, "backingStore")
    else:
        ET.SubElement(element, "source", {"dev" if disk.source_type == "block" else "file": disk.path})
    ET.SubElement(element, "target", dev=target, bus="virtio")
    return element


def disk_targets(domain_xml: str) -> list[str]:
    """The target devices of a domain's disks (``vda``, ``vdf``, ...; cdroms too)."""
    tree = ET.fromstring(domain_xml)
    return [str(t.get("dev")) for t in tree.findall("./devices/disk/target")]


def without_disk(domain_xml: str, target: str) -> tuple[str, str | None]:
    """The domain XML without the disk on ``target``, and that disk's XML (None when there is none)."""
    tree = ET.fromstring(domain_xml)
    devices = tree.find("devices")
    for element in devices.findall("disk") if devices is not None else []:
        found = element.find("target")
        if found is not None and found.get("dev") == target and devices is not None:
            devices.remove(element)
            return ET.tostring(tree, encoding="unicode"), ET.tostring(element, encoding="unicode")
    return domain_xml, None


def with_disk(domain_xml: str, disk: ET.Element) -> str:
    """The domain XML with ``disk`` added to its devices."""
    tree = ET.fromstring(domain_xml)
    devices = tree.find("devices")
    if devices is None:
        devices = ET.SubElement(tree, "devices")
    devices.append(disk)
    return ET.tostring(tree, encoding="unicode")
