"""EC2-style resource identifiers: a prefix and 17 lower-case hex digits."""
from __future__ import annotations

import re
import secrets
import string

PREFIXES = {
    "instance": "i",
    "image": "ami",
    "kernel": "aki",
    "ramdisk": "ari",
    "allocation": "eipalloc",
    "association": "eipassoc",
    "reservation": "r",
    "keypair": "key",
    "request": "req",
    "security_group": "sg",
    "security_group_rule": "sgr",
    "volume": "vol",
    "snapshot": "snap",
    "placement_group": "pg",
}

_ID_RE = re.compile(r"^(?P<prefix>[a-z]+)-(?P<hex>[0-9a-f]{8}|[0-9a-f]{17})$")


def new_id(kind: str) -> str:
    """Return a fresh id such as ``i-0a1b2c3d4e5f60718`` for ``kind``."""
    return f"{PREFIXES[kind]}-{secrets.token_hex(9)[:17]}"


def is_valid(ident: str, kind: str) -> bool:
    """True when ``ident`` is well formed for ``kind`` (8 or 17 hex digits, as EC2 accepts)."""
    match = _ID_RE.match(ident or "")
    return match is not None and match.group("prefix") == PREFIXES[kind]


def is_image_id(ident: str) -> bool:
    """True for any of ami-/aki-/ari- ids."""
    return any(is_valid(ident, kind) for kind in ("image", "kernel", "ramdisk"))


def new_access_key() -> str:
    """An access key id in AWS's shape (20 upper-case alphanumerics starting with AKIA)."""
    alphabet = string.ascii_uppercase + string.digits
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret_key() -> str:
    """A 40-character secret access key."""
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))
