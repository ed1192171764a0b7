"""Issue 6: 50 concurrent RunInstances (real boto3, threads) at a farm whose instance quota is 10.

Runs on SQLite, and on PostgreSQL when ``IVFARM_TEST_POSTGRES_URL`` names a server (each run in a
schema of its own, dropped afterwards).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ivfarm.services.tenancy import quotas
from tests.e2e.ec2_support import NO_RETRIES
from tests.support.localsite import LocalSite
from tests.support.postgres import scratch_schema

REQUESTS = 50
QUOTA = 10


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the site's state directory) or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    with scratch_schema(os.environ["IVFARM_TEST_POSTGRES_URL"], "ivfarm_ec2") as url:
        yield url


def test_fifty_concurrent_runs_respect_an_instance_quota_of_ten(tmp_path: Path, database_url: str | None) -> None:
    site = LocalSite(tmp_path / "site", database_url)
    try:
        site.add_host("w1", cpus=256, memory_mb=262144)
        ami = site.add_image("base")
        keys = site.add_farm("x", instances=QUOTA, vcpus=1000, memory_mb=10**6, disk_gb=10**5)
        endpoint = site.start(threads=16)
        barrier = threading.Barrier(REQUESTS)
        outcomes: list[Any] = []
        lock = threading.Lock()

        def one() -> None:
            client = boto3.client("ec2", endpoint_url=endpoint, region_name=site.region, config=NO_RETRIES,
                                  aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key)
            barrier.wait()
            try:
                result: Any = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.tiny")
                outcome: Any = [i["InstanceId"] for i in result["Instances"]]
            except ClientError as exc:
                outcome = exc.response["Error"]["Code"]
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=one) for _ in range(REQUESTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

        launched = [i for o in outcomes if isinstance(o, list) for i in o]
        refused = [o for o in outcomes if o == "InstanceLimitExceeded"]
        assert len(outcomes) == REQUESTS
        assert len(launched) == QUOTA and len(refused) == REQUESTS - QUOTA
        client = boto3.client("ec2", endpoint_url=endpoint, region_name=site.region,
                              aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key)
        shown = [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]]
        assert sorted(shown) == sorted(launched)
        with site.cloud.store.read() as session:
            assert quotas.usage(session, keys.farm_id).instances == QUOTA
    finally:
        site.close()


def test_thirty_concurrent_create_volumes_respect_a_volume_gb_quota(tmp_path: Path, database_url: str | None) -> None:
    site = LocalSite(tmp_path / "site", database_url)
    try:
        site.add_host("w1")
        keys = site.add_farm("x", volumes=100, volume_gb=QUOTA * 2)
        endpoint = site.start(threads=16)
        barrier = threading.Barrier(30)
        outcomes: list[str] = []
        lock = threading.Lock()

        def one() -> None:
            client = boto3.client("ec2", endpoint_url=endpoint, region_name=site.region, config=NO_RETRIES,
                                  aws_access_key_id=keys.access_key, aws_secret_access_key=keys.secret_key)
            barrier.wait()
            try:
                outcome = str(client.create_volume(AvailabilityZone="ivfarm-1-worker", Size=2)["VolumeId"])
            except ClientError as exc:
                outcome = str(exc.response["Error"]["Code"])
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=one) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        made = [o for o in outcomes if o.startswith("vol-")]
        assert len(outcomes) == 30 and len(made) == QUOTA
        assert sorted(set(outcomes) - set(made)) == ["VolumeLimitExceeded"]
        with site.cloud.store.read() as session:
            assert quotas.usage(session, keys.farm_id).volume_gb == QUOTA * 2
    finally:
        site.close()
