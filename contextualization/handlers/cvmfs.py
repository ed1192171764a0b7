"""cloud-init part-handler for ``text/cvmfs-config``: install and configure the CernVM-FS client.

Config (the INFN ``cvmfs`` section)::

    cvmfs:
      install: true          # default true
      version: 2.1.14        # optional package version
      local:                 # each key becomes CVMFS_<KEY> in /etc/cvmfs/default.local
        repositories: alice.cern.ch,alice-ocdb.cern.ch
        http-proxy: http://t2-squid-01.to.infn.it:3128
        cache-base: /var/lib/cvmfs
        quota-limit: 18000

Then ``cvmfs_config setup`` and ``cvmfs_config probe`` of the repositories. Fact
``package_manager`` (dnf, yum or apt-get) is probed from PATH unless the facts file gives it.
"""
import re
import shlex
import shutil
from typing import List, Optional

from contextualization.handlers.runtime import Command, Facts, PartHandler, PlanError, Step, WriteFile  # ivfarm: inline

DEFAULT_LOCAL = "/etc/cvmfs/default.local"
PACKAGE_MANAGERS = ("dnf", "yum", "apt-get")
_PARAMETER = re.compile(r"^[A-Z0-9_]+$")


def detect_package_manager() -> str:
    """The first of dnf, yum, apt-get found on PATH."""
    for name in PACKAGE_MANAGERS:
        if shutil.which(name):
            return name
    raise PlanError("no supported package manager found (%s)" % ", ".join(PACKAGE_MANAGERS))


def install_command(manager: str, version: Optional[str]) -> List[str]:
    """The command installing the ``cvmfs`` package (a given version) with ``manager``."""
    if manager in ("dnf", "yum"):
        return [manager, "install", "-y", "cvmfs-%s" % version if version else "cvmfs"]
    if manager == "apt-get":
        return ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                "cvmfs=%s" % version if version else "cvmfs"]
    raise PlanError("unsupported package manager %r (use one of %s)"
                    % (manager, ", ".join(PACKAGE_MANAGERS)))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def repositories(local: dict) -> List[str]:
    """The repository names of the ``local`` mapping (a comma list or a YAML list)."""
    names = [name.strip() for name in _value(local.get("repositories", "")).split(",")]
    names = [name for name in names if name]
    if not names:
        raise PlanError("cvmfs.local.repositories is required")
    return names


def default_local(local: dict) -> str:
    """The text of ``/etc/cvmfs/default.local`` for the ``local`` mapping."""
    lines = ["# Written by the ivfarm cvmfs part-handler."]
    for key, value in local.items():
        parameter = "CVMFS_" + str(key).upper().replace("-", "_")
        if not _PARAMETER.match(parameter):
            raise PlanError("cvmfs.local.%s is not a valid CernVM-FS parameter name" % key)
        lines.append("%s=%s" % (parameter, shlex.quote(_value(value))))
    return "\n".join(lines) + "\n"


def plan(config: dict, facts: Facts) -> List[Step]:
    """Install the client when asked, write default.local, set up and probe."""
    local = config.get("local")
    if not isinstance(local, dict):
        raise PlanError("cvmfs.local must be a mapping of CernVM-FS parameters")
    names = repositories(local)
    steps = []  # type: List[Step]
    if config.get("install", True):
        version = config.get("version")
        manager = str(facts.get("package_manager", detect_package_manager))
        steps.append(Command(install_command(manager, None if version is None else str(version))))
    steps += [WriteFile(DEFAULT_LOCAL, default_local(local)),
              Command(["cvmfs_config", "setup"]),
              Command(["cvmfs_config", "probe"] + names)]
    return steps


_HANDLER = PartHandler("cvmfs", plan)


def list_types() -> List[str]:
    """cloud-init: the content types this part-handler handles."""
    return _HANDLER.list_types()


def handle_part(data: object, ctype: str, filename: Optional[str], payload: Optional[str]) -> None:
    """cloud-init: called with ``__begin__``, each ``text/cvmfs-config`` part, ``__end__``."""
    _HANDLER.handle_part(data, ctype, filename, payload)
