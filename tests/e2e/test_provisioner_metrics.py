"""Prometheus metrics of the queue and the store, scraped over HTTP: from the API's exporter while
jobs wait (no provisioner), then from ``ivfarm provisioner --metrics-listen`` once it has run them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ivfarm.services.compute import instances
from ivfarm.store import jobs
from tests.support.localsite import LocalSite
from tests.support.polling import poll_until

MIB = 1024 * 1024
LAUNCHES = 3
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``/metrics`` by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def metrics_url(log: Path) -> str:
    found = poll_until(lambda: re.search(r"metrics on (http://\S+/metrics)", log.read_text(errors="replace")),
                       30, 0.05, "no metrics address in the log")
    return found.group(1)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LocalSite]:
    built = LocalSite(tmp_path / "site", settings={"provisioner": {"poll_s": 0.1}})
    built.add_host("w1", cpus=8, memory_mb=16384)
    yield built
    built.close()


def test_queue_instances_and_capacity_from_both_exporters(site: LocalSite, tmp_path: Path) -> None:
    image = site.add_image("base")
    farm = site.add_farm("alpha", instances=10, vcpus=10, memory_mb=4096)
    ids = [i.id for i in instances.launch(site.cloud, instances.LaunchRequest(
        image=image, flavor="m1.tiny", farm_id=farm.farm_id, count=LAUNCHES))]
    (tmp_path / "prom").mkdir()
    site.start(args=("--no-provisioner", "--metrics-listen", "127.0.0.1:0"),
               env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    api = metrics_url(site.log_path)

    queued = scrape(api)
    assert value(queued, "ivfarm_jobs", kind="provision", state="queued") == LAUNCHES
    assert value(queued, "ivfarm_jobs", kind="provision", state="running") == 0
    assert value(queued, "ivfarm_job_oldest_queued_age_seconds", kind="provision") > 0
    assert value(queued, "ivfarm_job_oldest_queued_age_seconds", kind="stop") == 0
    assert value(queued, "ivfarm_instances", state="pending") == LAUNCHES
    assert value(queued, "ivfarm_host_vcpus", host="w1", use="total") == 8
    assert value(queued, "ivfarm_host_vcpus", host="w1", use="used") == LAUNCHES
    assert value(queued, "ivfarm_host_memory_bytes", host="w1", use="total") == 16384 * MIB
    assert value(queued, "ivfarm_host_memory_bytes", host="w1", use="used") == LAUNCHES * 128 * MIB

    log = tmp_path / "provisioner.log"
    env = {k: v for k, v in os.environ.items() if k not in ("IVFARM_DATABASE", "IVFARM_CONFIG",
                                                             "PROMETHEUS_MULTIPROC_DIR")}
    with log.open("ab") as out:
        worker = subprocess.Popen([str(Path(sys.executable).with_name("ivfarm")), "--config", str(site.config_path),
                                   "provisioner", "--workers", "2", "--metrics-listen", "127.0.0.1:0"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        own = metrics_url(log)
        poll_until(lambda: jobs.outstanding(site.cloud.store) == 0, 60, 0.1, "the provisioner ran no jobs")
        instances.begin_stop(site.cloud, ids[0])
        poll_until(lambda: jobs.outstanding(site.cloud.store) == 0, 60, 0.1, "the stop was not carried out")
        ran = scrape(own)
    finally:
        worker.terminate()
        worker.wait(30)
    assert value(ran, "ivfarm_job_duration_seconds_count", kind="provision", outcome="done") == LAUNCHES
    assert value(ran, "ivfarm_job_duration_seconds_count", kind="stop", outcome="done") == 1
    assert value(ran, "ivfarm_job_duration_seconds_sum", kind="provision", outcome="done") > 0
    assert value(ran, "ivfarm_jobs", kind="provision", state="queued") == 0
    assert value(ran, "ivfarm_job_oldest_queued_age_seconds", kind="provision") == 0
    for samples in (ran, scrape(api)):  # the API's exporter reads the same store
        assert value(samples, "ivfarm_instances", state="running") == LAUNCHES - 1
        assert value(samples, "ivfarm_instances", state="stopped") == 1
        assert value(samples, "ivfarm_instances", state="pending") == 0
        assert value(samples, "ivfarm_host_vcpus", host="w1", use="used") == LAUNCHES - 1
        assert value(samples, "ivfarm_host_memory_bytes", host="w1", use="used") == (LAUNCHES - 1) * 128 * MIB
