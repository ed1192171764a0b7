"""Configuration: defaults, file, environment, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivfarm.config import DEFAULTS, build_config, load_config, mask_url
from ivfarm.config_schema import Settings
from ivfarm.errors import ConfigError


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IVFARM_CONFIG", raising=False)
    monkeypatch.delenv("IVFARM_DATABASE", raising=False)
    monkeypatch.setattr("ivfarm.config.DEFAULT_CONFIG_PATH", tmp_path / "missing.yaml")
    config = load_config()
    assert config.state_dir == Path("/var/lib/ivfarm")
    assert config.database_url == "sqlite:////var/lib/ivfarm/ivfarm.db"
    assert config.get("hypervisor.cpu_allocation_ratio") == 1.0
    assert config.zone_for("worker") == "ivfarm-1-worker"


def test_file_overrides_nested_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "ivfarm.yaml"
    path.write_text("state_dir: /srv/ivfarm\nhypervisor:\n  cpu_allocation_ratio: 4\nec2:\n  zones: {worker: torino-wn}\n")
    config = load_config(path)
    assert config.get("hypervisor.cpu_allocation_ratio") == 4
    assert config.get("hypervisor.memory_allocation_ratio") == 1.0
    assert config.zone_for("worker") == "torino-wn"
    assert config.zone_for("service") == "ivfarm-1-service"
    assert config.database_url == "sqlite:////srv/ivfarm/ivfarm.db"


def test_environment_selects_file_and_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("state_dir: /srv/site\n")
    monkeypatch.setenv("IVFARM_CONFIG", str(path))
    monkeypatch.setenv("IVFARM_DATABASE", "postgresql+psycopg://ivfarm@db/ivfarm")
    config = load_config()
    assert config.state_dir == Path("/srv/site")
    assert config.database_url == "postgresql+psycopg://ivfarm@db/ivfarm"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["a: [unclosed", "- just\n- a list\n"])
def test_bad_yaml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)


def test_unknown_key_lookup_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown configuration key"):
        load_config().get("no.such.key")


# The schema: defaults, types, unknown keys, one clear line per problem.

OLD_DEFAULTS = {  # the tree before the schema existed: the schema's defaults must not drift from it
    "state_dir": "/var/lib/ivfarm", "cloud_id": "ivfarm", "database": None, "secret_key_file": None,
    "hypervisor": {"domain_type": "qemu", "machine": "pc", "shutdown_timeout_s": 30, "detach_timeout_s": 20,
                   "cpu_allocation_ratio": 1.0,
                   "memory_allocation_ratio": 1.0, "disk_gb": 500},
    "scheduler": {"worker_policy": "pack", "service_policy": "stripe"},
    "storage": {
        "worker": {"backend": "qcow2", "lvm": {"volume_group": "ivfarm", "devices": []}},
        "service": {"backend": "qcow2", "gluster": {"volume": "ivfarm", "hosts": [], "mount": "/var/lib/ivfarm/gluster"},
                    "shared": {"dir": "/var/lib/ivfarm/shared"}},
    },
    "image_cache": {
        "dir": "/var/lib/ivfarm/cache", "fanout": 1, "attempts": 3, "ssh_key": None,
        "ssh_options": ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"],
        "bwlimit_kbps": 0,
    },
    "hosts": {"failure_grace_s": 120, "fence_command": None, "fence_timeout_s": 120, "worker_failure_policy": "leave",
              "drain_worker_policy": "terminate"},
    "journal": {"heartbeat_s": 5, "heartbeat_lapse_s": 60},
    "network": {
        "farm_pool": "10.64.0.0/12", "farm_prefix": 24, "vlan_range": [100, 4000], "segments": "bridge",
        "trunk_interface": None, "vxlan": {"vni_base": 100000, "port": 4789},
        "public": {"cidr": "198.51.100.0/24", "gateway": "198.51.100.1", "range": ["198.51.100.10", "198.51.100.250"],
                   "bridge": "ivpub0", "netns": "ivfarm-public", "dhcp_server": None},
        "dns_forwarders": ["198.51.100.1"], "egress_deny": [],
    },
    "vrouter": {
        "backend": "netns", "host_uri": "qemu:///system",
        "openwrt": {"image": None, "vcpus": 1, "memory_mb": 150, "ssh_user": "root", "ssh_key": None,
                    "known_hosts": None, "ssh_allow_from": None},
    },
    "provisioner": {"per_host": 4, "per_farm": 8, "poll_s": 1.0},
    "quota_defaults": {"instances": 4, "vcpus": 8, "memory_mb": 16384, "disk_gb": 200, "addresses": 1,
                       "volumes": 20, "volume_gb": 500},
    "mjf": {"wall_limit_s": None, "grace_s": None},
    "ec2": {"listen": "127.0.0.1:8773", "region": "ivfarm-1", "zones": {"worker": None, "service": None},
            "provision_workers": 4, "terminated_visible_s": 3600,
            "limits": {"concurrent": 64, "rate_per_s": 200, "burst": 400, "replay_entries": 50000,
                       "replay_grace_s": 2.0, "replay_guard": "auto"},
            "security_groups": {"per_farm": 2500, "rules_per_group": 60, "per_instance": 5},
            "metadata_options": {"imdsv2": "optional", "http_put_response_hop_limit": 1,
                                 "http_endpoint": "enabled"}},
    "accounting": {"apel": {"site_name": None, "cloud_compute_service": None, "cloud_type": "ivfarm",
                            "outgoing_dir": "/var/spool/apel/outgoing/ivfarm", "records_per_message": 100}},
}


def _types(tree: object) -> object:
    return {k: _types(v) for k, v in tree.items()} if isinstance(tree, dict) else type(tree)


def test_schema_defaults_are_the_old_tree_value_for_value_and_type() -> None:
    assert DEFAULTS == OLD_DEFAULTS
    assert _types(DEFAULTS) == _types(OLD_DEFAULTS)
    assert build_config().data == OLD_DEFAULTS
    assert Settings().model_dump() == OLD_DEFAULTS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivfarm.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


@pytest.mark.parametrize("text,expected", [
    ("state_dri: /srv\n", "state_dri: unknown key (did you mean state_dir?)"),
    ("colour: blue\n", "colour: unknown key (known keys here: state_dir, cloud_id, database,"),
    ("network:\n  public:\n    cidrr: 10.0.0.0/24\n", "network.public.cidrr: unknown key (did you mean cidr?)"),
    ("hypervisor:\n  disk: 5\n", "hypervisor.disk: unknown key (did you mean disk_gb?)"),
    ("ec2:\n  zones: {grid: z1}\n", "ec2.zones.grid: unknown key (known keys here: worker, service)"),
])
def test_an_unknown_key_is_an_error_naming_its_path_and_file(tmp_path: Path, text: str, expected: str) -> None:
    lines = problems(write(tmp_path, text))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


@pytest.mark.parametrize("text,expected", [
    ('hypervisor:\n  disk_gb: "500"\n', "hypervisor.disk_gb: expected an integer, got string '500'"),
    ("hypervisor:\n  disk_gb: 1.5\n", "hypervisor.disk_gb: expected an integer, got number 1.5"),
    ("hypervisor:\n  shutdown_timeout_s: soon\n", "hypervisor.shutdown_timeout_s: expected a number, got 'soon'"),
    ("hypervisor:\n  cpu_allocation_ratio: 0\n", "hypervisor.cpu_allocation_ratio: must be greater than 0, got 0"),
    ("hypervisor:\n  domain_type: xen\n", "hypervisor.domain_type: expected one of qemu, kvm, got 'xen'"),
    ("scheduler:\n  worker_policy: spread\n", "scheduler.worker_policy: expected one of pack, stripe, got 'spread'"),
    ("storage:\n  worker: {backend: gluster}\n", "storage.worker.backend: expected one of qcow2, lvm, got 'gluster'"),
    ("storage:\n  service: {backend: lvm}\n", "storage.service.backend: expected one of qcow2, gluster, shared, got 'lvm'"),
    ("vrouter:\n  backend: vyos\n", "vrouter.backend: expected one of netns, openwrt, none, got 'vyos'"),
    ("hosts:\n  worker_failure_policy: retry\n",
     "hosts.worker_failure_policy: expected one of recreate, leave, got 'retry'"),
    ("network:\n  vlan_range: 100-4000\n", "network.vlan_range: expected a list, got string '100-4000'"),
    ("network:\n  vlan_range: [100]\n", "network.vlan_range: expected a list of at least 2 items, got 1: [100]"),
    ("network:\n  vlan_range: [100, 5000]\n", "network.vlan_range.1: must be less than or equal to 4094, got 5000"),
    ("network:\n  vlan_range: [400, 300]\n", "network: vlan_range must be [low, high] with low <= high"),
    ("network:\n  public:\n    cidr: 198.51.100.0/33\n", "network.public.cidr: expected an IPv4 network"),
    ("network:\n  public:\n    cidr: 198.51.100.7/24\n", "network.public.cidr: expected an IPv4 network"),
    ("network:\n  public:\n    gateway: 192.0.2.1\n", "network.public: gateway 192.0.2.1 is outside cidr 198.51.100.0/24"),
    ("network:\n  public: 198.51.100.0/24\n", "network.public: expected a mapping, got string '198.51.100.0/24'"),
    ("network:\n  dns_forwarders: [dns.example]\n", "network.dns_forwarders.0: expected an IP address"),
    ("ec2:\n  listen: 8773\n", "ec2.listen: expected a string, got integer 8773"),
    ("ec2:\n  listen: localhost\n", "ec2.listen: expected HOST:PORT such as 127.0.0.1:8773, got 'localhost'"),
    ("quota_defaults:\n  vcpus: -1\n", "quota_defaults.vcpus: must be greater than or equal to 0, got -1"),
    ("image_cache:\n  ssh_options: -oBatchMode=yes\n", "image_cache.ssh_options: expected a list, got string"),
    ("image_cache:\n  ssh_key: 12\n", "image_cache.ssh_key: expected a string, got integer ***"),
    ("vrouter:\n  openwrt: {ssh_allow_from: [10.0.0.0/8, lan]}\n",
     "vrouter.openwrt.ssh_allow_from: expected an IP network"),
    ("cloud_id: my cloud\n", "cloud_id: expected a name of letters, digits"),
    ("database: ivfarm.db\n", "database: expected an SQLAlchemy URL"),
])
def test_a_mistyped_value_is_an_error_naming_the_key_and_what_it_should_be(tmp_path: Path, text: str,
                                                                           expected: str) -> None:
    lines = problems(write(tmp_path, text))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_every_problem_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hypervisor:\n  disk_gb: many\n  machne: q35\nscheduler: {service_policy: spread}\n")
    assert problems(path) == [
        "hypervisor.disk_gb: expected an integer, got string 'many'",
        "hypervisor.machne: unknown key (did you mean machine?)",
        "scheduler.service_policy: expected one of pack, stripe, got 'spread'",
    ]


def test_valid_values_keep_their_types(tmp_path: Path) -> None:
    path = write(tmp_path, "hypervisor: {domain_type: kvm, shutdown_timeout_s: 2.5, cpu_allocation_ratio: 4}\n"
                           "network: {vlan_range: [10, 20], public: {netns: null}}\n"
                           "vrouter: {backend: openwrt, openwrt: {ssh_allow_from: 192.0.2.0/24}}\n")
    config = load_config(path)
    assert config.get("hypervisor.shutdown_timeout_s") == 2.5
    assert config.get("hypervisor.disk_gb") == 500 and isinstance(config.get("hypervisor.disk_gb"), int)
    assert config.get("network.vlan_range") == [10, 20]
    assert config.get("network.public")["netns"] is None and config.get("network.public")["bridge"] == "ivpub0"
    assert config.get("vrouter.openwrt.ssh_allow_from") == "192.0.2.0/24"


def test_build_config_takes_partial_overrides_and_paths(tmp_path: Path) -> None:
    config = build_config({"state_dir": tmp_path, "storage": {"worker": {"backend": "lvm", "lvm": {"volume_group": "vg0"}}}})
    assert config.state_dir == tmp_path and config.data["state_dir"] == str(tmp_path)
    assert config.get("storage.worker.lvm") == {"volume_group": "vg0", "devices": []}
    assert config.get("storage.service.backend") == "qcow2"
    with pytest.raises(ConfigError, match=r"^configuration: hypervisor.bogus: unknown key"):
        build_config({"hypervisor": {"bogus": 1}})


def test_settings_are_the_typed_tree_and_follow_edits_of_data() -> None:
    config = build_config({"hosts": {"fence_command": "true"}})
    assert isinstance(config.settings, Settings)
    assert config.settings.hosts.fence_command == "true"
    assert config.settings.network.public.bridge == "ivpub0"
    config.data["hosts"]["worker_failure_policy"] = "recreate"
    assert config.settings.hosts.worker_failure_policy == "recreate"
    config.data["hosts"]["worker_failure_policy"] = "maybe"
    with pytest.raises(ConfigError, match="hosts.worker_failure_policy: expected one of recreate, leave"):
        config.settings  # noqa: B018


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg://ivfarm:s3cr:et@db:5432/ivfarm", "postgresql+psycopg://ivfarm:***@db:5432/ivfarm"),
    ("postgresql+psycopg://ivfarm@db/ivfarm", "postgresql+psycopg://ivfarm@db/ivfarm"),
    ("sqlite:////var/lib/ivfarm/ivfarm.db", "sqlite:////var/lib/ivfarm/ivfarm.db"),
])
def test_database_passwords_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_effective_tree_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVFARM_DATABASE", "postgresql://ivfarm:pw@db/ivfarm")
    config = build_config({"image_cache": {"ssh_key": "/root/.ssh/id_ed25519"},
                           "hosts": {"fence_command": "ipmitool -H {name}-bmc -U admin -P hunter2 power off"}})
    shown = config.effective()
    assert shown["database"] == "postgresql://ivfarm:***@db/ivfarm"
    assert shown["image_cache"]["ssh_key"] == "***"
    assert shown["vrouter"]["openwrt"]["ssh_key"] is None  # nothing set, nothing to hide
    assert shown["hosts"]["fence_command"] == "ipmitool -H {name}-bmc -U admin -P *** power off"
    assert config.get("image_cache.ssh_key") == "/root/.ssh/id_ed25519"  # masking is only for showing
