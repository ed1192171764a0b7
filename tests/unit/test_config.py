"""Configuration: defaults, file, environment, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from ivfarm.config import load_config
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
