"""One atomic file write: a temporary file beside the target, created with the final mode, fsynced,
then renamed over the target, so readers see the old content or the new one, never a part."""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_open(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file whose content replaces ``path`` (with ``mode``) when the body ends without error;
    on error the temporary file goes and ``path`` is left as it was."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # created with the final mode (never more open than that, whatever the umask), then set exactly
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` atomically with ``data`` (text is written as UTF-8) and give it ``mode``."""
    with atomic_open(path, mode) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
