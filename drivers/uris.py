"""What a libvirt URI says about its host."""
from __future__ import annotations

import urllib.parse


def uri_is_local(uri: str) -> bool:
    """True when ``uri`` addresses a hypervisor on this machine."""
    parsed = urllib.parse.urlparse(uri)
    return parsed.hostname in (None, "", "localhost", "127.0.0.1", "::1")
