"""Files the router's unprivileged daemons read: replaced atomically, with their mode and owner."""
from __future__ import annotations

import os
import pwd
from pathlib import Path

from fileops.atomic import atomic_open
from vrouter.errors import RouterError


def owned_file_user(name: str, whose: str) -> pwd.struct_passwd:
    """The account ``name`` (``whose``: for the error message), a RouterError when it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise RouterError(f"{whose} user {name!r} does not exist") from None


def replace_owned_file(path: Path, content: str, mode: int, owner: pwd.struct_passwd | None = None) -> bool:
    """Atomically give path this content and mode (and owner); True when it changed."""
    try:
        if path.read_text() == content and (owner is None or path.stat().st_uid == owner.pw_uid):
            return False
    except FileNotFoundError:
        pass
    with atomic_open(path, mode) as stream:
        if owner is not None:
            os.fchown(stream.fileno(), owner.pw_uid, owner.pw_gid)
        stream.write(content.encode())
    return True
