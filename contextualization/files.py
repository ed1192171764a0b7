"""Reading the user's input files, with errors that name the file and the reason."""
from __future__ import annotations

from pathlib import Path

from contextualization.errors import ContextError


def read_bytes(path: Path, what: str) -> bytes:
    """Return the bytes of ``path``; ``what`` names the file's role in the error message."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ContextError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def read_text(path: Path, what: str) -> str:
    """Return ``path`` decoded as UTF-8."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContextError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from exc
