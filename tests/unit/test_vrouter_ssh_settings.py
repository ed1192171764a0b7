"""SSH push settings and key parsing (no server needed)."""
from __future__ import annotations

import pytest

from vrouter.errors import RouterError
from vrouter.ssh_push import DEFAULT_RELOAD, PushSettings, SshPusher, parse_public_key

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"


def test_a_pinned_key_is_required() -> None:
    with pytest.raises(RouterError, match="pinned host key"):
        SshPusher(PushSettings())


def test_defaults() -> None:
    settings = PushSettings(host_key=ED25519)
    assert settings.root == "/" and settings.config_dir == "etc/config" and settings.username == "root"
    assert settings.reload_commands == DEFAULT_RELOAD == (
        "/etc/init.d/network reload", "/etc/init.d/dnsmasq reload", "/etc/init.d/firewall reload")


def test_remote_paths_stay_under_root() -> None:
    pusher = SshPusher(PushSettings(host_key=ED25519, root="/srv/scratch"))
    assert pusher._remote("etc/config") == "/srv/scratch/etc/config"
    assert pusher._remote("/tmp/dhcp.leases") == "/srv/scratch/tmp/dhcp.leases"


def test_parse_public_key() -> None:
    keytype, key = parse_public_key(ED25519)
    assert keytype == "ssh-ed25519" and key.get_name() == "ssh-ed25519"
    for bad in ("", "ssh-ed25519", "ssh-ed25519 !!!notbase64"):
        with pytest.raises(RouterError, match="pinned host key"):
            parse_public_key(bad)


def test_attempts_must_be_positive() -> None:
    with pytest.raises(RouterError, match="at least 1"):
        SshPusher(PushSettings(host_key=ED25519, attempts=0))
