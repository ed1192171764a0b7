"""cloud-init part-handler for ``text/localfs-config``: carve local file systems out of an LVM VG.

Config (the INFN ``localfs`` section)::

    localfs:
      vg: vg0            # optional, default the first volume group ``vgs`` lists
      fstype: ext4       # optional
      parts:
        cvmfs: 17        # percent of the VG size -> logical volume "cvmfs"
        cvmfs-mount: /var/lib/cvmfs
        home: 58         # mounted on /home unless home-mount says otherwise
        tmp: 8           # mounted on /tmp (mode 1777)
        swap: 100        # percent of the space still FREE after the volumes above

Sizes are whole MiB rounded down to LVM's default 4 MiB extent. Fact ``vgs``: the output of
``vgs --noheadings --units m -o vg_name,vg_size,vg_free`` (probed unless the facts file has it).
"""
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

from contextualization.handlers.runtime import (  # ivfarm: inline
    AppendLines,
    Command,
    Facts,
    PartHandler,
    PlanError,
    Step,
    probe_output,
)

VGS_COMMAND = ["vgs", "--noheadings", "--units", "m", "-o", "vg_name,vg_size,vg_free"]
EXTENT_MIB = 4
DEFAULT_MOUNTS = {"home": "/home", "tmp": "/tmp"}
_LV_NAME = re.compile(r"^[A-Za-z0-9_+.][A-Za-z0-9_+.-]*$")


class VolumeGroup(NamedTuple):
    """A volume group as ``vgs`` reports it, sizes in MiB."""

    name: str
    size_mib: int
    free_mib: int


class Volume(NamedTuple):
    """One planned logical volume; ``mount`` is None for swap."""

    name: str
    size_mib: int
    mount: Optional[str]


def parse_vgs(text: str) -> List[VolumeGroup]:
    """Parse ``vgs --noheadings --units m -o vg_name,vg_size,vg_free`` output."""
    groups = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            name, size, free = fields
            groups.append(VolumeGroup(name, int(float(size.rstrip("mM"))),
                                      int(float(free.rstrip("mM")))))
        except ValueError:
            raise PlanError("cannot parse vgs output line %r" % line.strip()) from None
    return groups


def _percent(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise PlanError("parts.%s must be a percentage in (0, 100], got %r" % (name, value))
    return float(value)


def _mib(total_mib: int, percent: float) -> int:
    return int(total_mib * percent / 100) // EXTENT_MIB * EXTENT_MIB


def _split_parts(parts: Dict[str, object]) -> Tuple[Dict[str, float], Dict[str, str],
                                                    Optional[float]]:
    sizes = {}  # type: Dict[str, float]
    mounts = {}  # type: Dict[str, str]
    swap = None  # type: Optional[float]
    for key, value in parts.items():
        key = str(key)
        if key.endswith("-mount"):
            if not isinstance(value, str) or not value.startswith("/"):
                raise PlanError("parts.%s must be an absolute path, got %r" % (key, value))
            mounts[key[:-len("-mount")]] = value
        elif key == "swap":
            swap = _percent(key, value)
        elif _LV_NAME.match(key):
            sizes[key] = _percent(key, value)
        else:
            raise PlanError("parts.%s: not a valid logical volume name" % key)
    for name in mounts:
        if name not in sizes:
            raise PlanError("parts.%s-mount given but parts.%s has no size" % (name, name))
    return sizes, mounts, swap


def volumes(config: dict, group: VolumeGroup) -> List[Volume]:
    """Size every volume of ``config['parts']`` on ``group``; swap (if any) comes last."""
    parts = config.get("parts")
    if not isinstance(parts, dict) or not parts:
        raise PlanError("localfs.parts must be a non-empty mapping")
    sizes, mounts, swap = _split_parts(parts)
    if sum(sizes.values()) > 100:
        raise PlanError("parts add up to %g%% of the volume group" % sum(sizes.values()))
    planned = []
    for name, percent in sizes.items():
        mount = mounts.get(name, DEFAULT_MOUNTS.get(name))
        if mount is None:
            raise PlanError("no mount point for %s: add parts.%s-mount" % (name, name))
        size = _mib(group.size_mib, percent)
        if size == 0:
            raise PlanError("%s: %g%% of %d MiB is under one extent" % (name, percent,
                                                                      group.size_mib))
        planned.append(Volume(name, size, mount))
    free = group.free_mib - sum(volume.size_mib for volume in planned)
    if free < 0:
        raise PlanError("volume group %s has %d MiB free, the parts need %d MiB"
                        % (group.name, group.free_mib, group.free_mib - free))
    if swap is not None:
        size = _mib(free, swap)
        if size == 0:
            raise PlanError("no free space left in %s for swap" % group.name)
        planned.append(Volume("swap", size, None))
    return planned


def _choose_group(config: dict, facts: Facts) -> VolumeGroup:
    groups = parse_vgs(str(facts.get("vgs", lambda: probe_output(VGS_COMMAND))))
    wanted = config.get("vg")
    for group in groups:
        if wanted is None or group.name == wanted:
            return group
    if wanted is None:
        raise PlanError("no LVM volume group found")
    raise PlanError("volume group %s not found (have: %s)"
                    % (wanted, ", ".join(group.name for group in groups) or "none"))


def plan(config: dict, facts: Facts) -> List[Step]:
    """The commands and fstab lines that create, format and mount every volume."""
    group = _choose_group(config, facts)
    fstype = str(config.get("fstype", "ext4"))
    steps = []  # type: List[Step]
    for volume in volumes(config, group):
        device = "/dev/%s/%s" % (group.name, volume.name)
        steps.append(Command(["lvcreate", "--yes", "--name", volume.name,
                              "--size", "%dm" % volume.size_mib, group.name]))
        if volume.mount is None:
            steps += [Command(["mkswap", device]),
                      AppendLines("/etc/fstab", ["%s none swap sw 0 0" % device]),
                      Command(["swapon", device])]
            continue
        steps += [Command(["mkfs", "-t", fstype, device]),
                  Command(["mkdir", "-p", volume.mount]),
                  AppendLines("/etc/fstab", ["%s %s %s defaults 0 2"
                                             % (device, volume.mount, fstype)]),
                  Command(["mount", volume.mount])]
        if volume.mount == "/tmp":
            steps.append(Command(["chmod", "1777", "/tmp"]))
    return steps


_HANDLER = PartHandler("localfs", plan)


def list_types() -> List[str]:
    """cloud-init: the content types this part-handler handles."""
    return _HANDLER.list_types()


def handle_part(data: object, ctype: str, filename: Optional[str], payload: Optional[str]) -> None:
    """cloud-init: called with ``__begin__``, each ``text/localfs-config`` part, ``__end__``."""
    _HANDLER.handle_part(data, ctype, filename, payload)
