"""The real awscli (``aws --endpoint-url ... ec2 ...``) against ``ivfarm ec2 serve``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ec2_support import Ec2Site

AWS = Path(sys.executable).with_name("aws")


def aws(site: Ec2Site, *args: str, farm: str = "alpha", check: bool = True) -> Any:
    """Run ``aws ec2 ARGS`` with the farm's credentials in the environment; JSON output parsed."""
    keys = site.farms[farm]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": keys.access_key, "AWS_SECRET_ACCESS_KEY": keys.secret_key,
           "AWS_DEFAULT_REGION": site.site.region, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1"}
    done = subprocess.run([str(AWS), "--endpoint-url", site.endpoint, "--output", "json", "ec2", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}
    return done


@pytest.mark.skipif(not AWS.exists(), reason="awscli is not installed in this environment")
def test_awscli_runs_describes_and_terminates(ec2_site: Ec2Site) -> None:
    regions = aws(ec2_site, "describe-regions")["Regions"]
    assert [r["RegionName"] for r in regions] == ["ivfarm-1"]
    images = aws(ec2_site, "describe-images")["Images"]
    assert [i["ImageId"] for i in images] == [ec2_site.ami]
    ids = sorted(i["InstanceId"] for _ in range(2) for i in aws(
        ec2_site, "run-instances", "--image-id", ec2_site.ami, "--instance-type", "m1.tiny", "--count", "1",
        "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=cli}]")["Instances"])
    aws(ec2_site, "wait", "instance-running", "--instance-ids", *ids)
    shown = aws(ec2_site, "describe-instances", "--filters", "Name=tag:Name,Values=cli")
    assert sorted(i["InstanceId"] for r in shown["Reservations"] for i in r["Instances"]) == ids
    key = aws(ec2_site, "create-key-pair", "--key-name", "cli-key")
    assert key["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert [k["KeyName"] for k in aws(ec2_site, "describe-key-pairs")["KeyPairs"]] == ["cli-key"]
    ended = aws(ec2_site, "terminate-instances", "--instance-ids", *ids)["TerminatingInstances"]
    assert {i["CurrentState"]["Name"] for i in ended} == {"shutting-down"}
    aws(ec2_site, "wait", "instance-terminated", "--instance-ids", *ids)


@pytest.mark.skipif(not AWS.exists(), reason="awscli is not installed in this environment")
def test_awscli_reports_ec2_errors(ec2_site: Ec2Site) -> None:
    done = aws(ec2_site, "describe-instances", "--instance-ids", "i-0123456789abcdef0", check=False)
    assert done.returncode != 0 and "InvalidInstanceID.NotFound" in done.stderr
    done = aws(ec2_site, "run-instances", "--image-id", ec2_site.ami, "--instance-type", "t9.huge", check=False)
    assert done.returncode != 0 and "InvalidParameterValue" in done.stderr
