"""The pictures a sysadmin asks for: usage per farm over time and each host's used and free capacity."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from ivfarm.cloud import Cloud
from ivfarm.services.compute import hosts, instances, provisioning
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.farms import lifecycle
from ivfarm.services.farms.lifecycle import FarmRequest
from ivfarm.services.jobs import accounting
from ivfarm.store.models import Instance

IVFARM = str(Path(sys.executable).with_name("ivfarm"))
T0 = dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's first two colours: the two farms
RED, GREEN = (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)  # used, free


def ivfarm(cloud: Cloud, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ivfarm.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(cloud.config.state_dir), "vrouter": {"backend": "none"}}))
    env = {**os.environ, "IVFARM_CONFIG": str(config)}
    env.pop("IVFARM_DATABASE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    return subprocess.run([IVFARM, *args], capture_output=True, text=True, env=env, timeout=60)


def picture(path: Path) -> np.ndarray:
    """The PNG as (height, width, RGB) bytes."""
    image = imread(path)
    return (image[..., :3] * 255).round().astype(np.uint8)


def has_colour(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(np.abs(image.astype(int) - rgb) <= 3, axis=-1).sum() > 200)


@pytest.fixture
def used(cloud: Cloud, fake_host: Callable[..., str], base_image) -> Cloud:  # type: ignore[no-untyped-def]
    """Two farms on two hosts, sampled hourly for six hours: lab runs an m1.medium, ops an m1.small."""
    hosts.add_host(cloud, "w1", fake_host("w1", 4, 8192), "worker")
    hosts.add_host(cloud, "w2", fake_host("w2", 8, 16384), "worker")
    lab = lifecycle.create_farm(cloud, FarmRequest(name="lab"))
    ops = lifecycle.create_farm(cloud, FarmRequest(name="ops"))
    for farm_id, flavor, started in ((lab.id, "m1.medium", T0), (ops.id, "m1.small", T0)):
        [vm] = instances.launch(cloud, LaunchRequest(image="base", flavor=flavor, farm_id=farm_id))
        provisioning.provision(cloud, vm.id)
        with cloud.store.write() as session:
            session.get_one(Instance, vm.id).launched_at = started
    for hour in range(1, 7):
        accounting.collect(cloud, now=T0 + hour * HOUR)
    return cloud


def test_usage_plot_stacks_farms_in_two_panels(used: Cloud, tmp_path: Path) -> None:
    out = tmp_path / "usage.png"
    result = ivfarm(used, tmp_path, "accounting", "report", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"usage plot written to {out}"
    image = picture(out)
    assert image.shape == (700, 1000, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # not one flat colour
    assert has_colour(image, BLUE) and has_colour(image, ORANGE)
    series = accounting.series(used, buckets=6)
    assert [round(v, 6) for v in series.vcpu_hours["lab"]] == [2.0] * 6  # m1.medium: 2 vCPUs each hour
    assert [round(v, 6) for v in series.memory_gb_hours["ops"]] == [0.5] * 6


def test_capacity_plot_shows_used_and_free_per_host(used: Cloud, tmp_path: Path) -> None:
    out = tmp_path / "hosts.png"
    result = ivfarm(used, tmp_path, "host", "list", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    image = picture(out)
    assert image.shape == (700, 1000, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    assert has_colour(image, RED) and has_colour(image, GREEN)


def test_plot_errors_are_one_line(cloud: Cloud, tmp_path: Path) -> None:
    nothing = ivfarm(cloud, tmp_path, "accounting", "report", "--plot", str(tmp_path / "u.png"))
    assert nothing.returncode != 0 and nothing.stderr.strip().splitlines() == [
        "error: no usage recorded in that window: run `ivfarm accounting collect` first"]
    no_hosts = ivfarm(cloud, tmp_path, "host", "list", "--plot", str(tmp_path / "h.png"))
    assert no_hosts.stderr.strip().splitlines() == ["error: no hosts registered: nothing to draw"]
    assert not (tmp_path / "u.png").exists() and not (tmp_path / "h.png").exists()
