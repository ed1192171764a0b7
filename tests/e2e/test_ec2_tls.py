"""``ivfarm ec2 serve --cert --key``: HTTPS that boto3 and awscli verify against the site's CA."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import SSLError

from tests.e2e.ec2_support import Ec2Site, start_site
from tests.support.tls import Pki, make_pki

AWS = Path(sys.executable).with_name("aws")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Ec2Site]:
    built = start_site(tmp_path_factory.mktemp("tlssite"),
                       serve_args=("--cert", str(pki.cert), "--key", str(pki.key), "--workers", "2"))
    yield built
    built.site.close()


def test_boto3_verifies_the_server_against_the_ca(tls_site: Ec2Site, pki: Pki) -> None:
    assert tls_site.endpoint.startswith("https://127.0.0.1:")
    client = tls_site.client("alpha", verify=str(pki.ca))
    run = client.run_instances(ImageId=tls_site.ami, MinCount=1, MaxCount=1)
    shown = client.describe_instances(InstanceIds=[run["Instances"][0]["InstanceId"]])
    assert shown["Reservations"][0]["Instances"][0]["ImageId"] == tls_site.ami


def test_a_client_without_the_ca_refuses_the_server(tls_site: Ec2Site, tmp_path: Path) -> None:
    with pytest.raises(SSLError):
        tls_site.client("alpha").describe_instances()
    other = make_pki(tmp_path / "other", common="some other CA")
    with pytest.raises(SSLError):
        tls_site.client("alpha", verify=str(other.ca)).describe_instances()


def _aws(site: Ec2Site, ca_bundle: Path) -> subprocess.CompletedProcess[str]:
    keys = site.farms["alpha"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": keys.access_key, "AWS_SECRET_ACCESS_KEY": keys.secret_key,
           "AWS_DEFAULT_REGION": site.site.region, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1", "AWS_CA_BUNDLE": str(ca_bundle)}
    return subprocess.run([str(AWS), "--endpoint-url", site.endpoint, "--output", "json", "ec2", "describe-regions"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.skipif(not AWS.exists(), reason="awscli is not installed in this environment")
def test_awscli_verifies_with_aws_ca_bundle(tls_site: Ec2Site, pki: Pki, tmp_path: Path) -> None:
    done = _aws(tls_site, pki.ca)
    assert done.returncode == 0, done.stderr
    assert '"RegionName": "ivfarm-1"' in done.stdout
    refused = _aws(tls_site, make_pki(tmp_path / "other", common="some other CA").ca)
    assert refused.returncode != 0 and "SSL" in refused.stderr
