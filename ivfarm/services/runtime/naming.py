"""Names this cloud gives its libvirt domains."""
from __future__ import annotations

DOMAIN_PREFIX = "ivfarm-"
