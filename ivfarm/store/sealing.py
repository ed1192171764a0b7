"""Credentials at rest: farm secret keys are stored sealed (Fernet) under a key kept outside the database.

The key file (``secret_key_file``, 0600) is made the first time a secret is sealed; a dump or a
backup of the database alone holds no usable credential. The store hands its ``Sealer`` to the
``Sealed`` column type and to migrations through its engine's dialect (``sealer_of``).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import Dialect

from ivfarm.errors import ConfigError

_ATTRIBUTE = "ivfarm_sealer"


class Sealer:
    """Seals and unseals text with the Fernet key in ``key_file`` (created 0600 when missing)."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def seal(self, text: str) -> str:
        return self._key().encrypt(text.encode()).decode("ascii")

    def unseal(self, token: str) -> str:
        try:
            return self._key().decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise ConfigError(f"a sealed secret does not open with the key in {self.key_file}: "
                              "is secret_key_file the key this database was sealed with?") from exc

    def _key(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._read_or_create())
            return self._fernet

    def _read_or_create(self) -> bytes:
        try:
            return self.key_file.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return self.key_file.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key


def attach(dialect: Dialect, sealer: Sealer | None) -> None:
    """Make ``sealer`` the one columns and migrations of this engine use."""
    setattr(dialect, _ATTRIBUTE, sealer)


def sealer_of(dialect: Dialect) -> Sealer:
    """The sealer of the engine this dialect belongs to."""
    sealer = getattr(dialect, _ATTRIBUTE, None)
    if sealer is None:
        raise ConfigError("this state store has no secret_key_file to seal credentials with")
    return sealer
