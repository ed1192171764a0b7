"""Flattening a disk (an overlay and its backing chain) into one standalone qcow2 file on this machine."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from drivers.errors import StorageError

CHUNK = 4 * 1024 * 1024
CONVERT_TIMEOUT_S = 6 * 3600


def flatten(source: str, source_format: str, target: Path, force_share: bool = True) -> None:
    """``qemu-img convert`` ``source`` (read through its backing files) into a standalone qcow2 ``target``;
    ``force_share`` reads a disk a running guest holds open (crash-consistent)."""
    command = ["qemu-img", "convert", "-f", source_format, "-O", "qcow2"]
    if force_share:
        command.append("-U")
    try:
        subprocess.run([*command, source, str(target)], check=True, capture_output=True, text=True,
                       timeout=CONVERT_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot flatten {source}: {exc.stderr.strip()}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        target.unlink(missing_ok=True)
        raise StorageError(f"cannot flatten {source}: {exc}") from exc


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
