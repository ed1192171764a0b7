"""The real cloud-init (Debian's package, run by /usr/bin/python3) reads our metadata service.

Its Ec2 datasource does what it does in a guest: waits for ``2009-04-04/meta-data/instance-id``,
picks the newest API version it knows that answers, crawls ``meta-data/`` with its
MetadataMaterializer (directories, ``public-keys`` ``0=name`` entries) and fetches ``user-data``.
Then, as on AWS, it gets an IMDSv2 token and crawls again with it.
"""
from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vrouter.metadata_server import MetadataServer, Records

SYSTEM_PYTHON = "/usr/bin/python3"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5 alice@login"
TREE = {
    "ami-id": "ami-00000000000000070", "hostname": "wn-003", "instance-id": "i-0a1b2c3d4e5f60718",
    "instance-type": "m1.small", "local-hostname": "wn-003", "local-ipv4": "10.0.5.3",
    "mac": "02:00:0a:00:05:03", "placement": {"availability-zone": "ivfarm-1-worker"},
    "public-ipv4": "198.51.100.20", "public-keys": {"0=alice": {"openssh-key": KEY}},
    "reservation-id": "r-0f0e0d0c0b0a09080",
}
USER_DATA = b"#!/bin/sh\necho IVFARM-MARKER from user-data\n"

DRIVER = '''
import json, sys, tempfile
from cloudinit import helpers, log
from cloudinit.sources import DataSourceEc2
from cloudinit.sources.helpers import ec2

log.setupBasicLogging()
url = sys.argv[1]
tmp = tempfile.mkdtemp()
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
cfg = {"datasource": {"Ec2": {"metadata_urls": [url], "max_wait": 10, "timeout": 5}}}
ds = DataSourceEc2.DataSourceEc2(cfg, None, paths)
ds._cloud_name = "unknown"  # not AWS hardware: IMDSv1, as in a guest of this cloud
crawled = ds.crawl_metadata()
result = {
    "version": crawled["_metadata_api_version"],
    "meta_data": crawled["meta-data"],
    "user_data": crawled["user-data"].decode(),
}
ds._cloud_name = "aws"  # now the IMDSv2 way: PUT a token, send it on every GET
result["token_base"] = ds._maybe_fetch_api_token([url])
result["token_header"] = sorted(ds._get_headers())
result["meta_data_v2"] = ec2.get_instance_metadata(result["version"], url, headers_cb=ds._get_headers)
json.dump(result, sys.stdout)
'''


def have_cloud_init() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import cloudinit.sources.DataSourceEc2"],
                          capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not have_cloud_init(), reason="Debian's cloud-init package is not installed")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    records = tmp_path / "metadata.json"
    records.write_text(json.dumps({"127.0.0.1": {"meta-data": TREE, "user-data": base64.b64encode(USER_DATA).decode()}}))
    server = MetadataServer(("127.0.0.1", 0), Records(records))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_cloud_init_ec2_datasource_crawls_our_service(url: str, tmp_path: Path) -> None:
    proc = subprocess.run([SYSTEM_PYTHON, "-c", DRIVER, url], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["version"] == "2021-03-23"  # the newest version cloud-init asks for
    expected = {**TREE, "public-keys": {"alice": KEY}}  # the materializer names keys by 0=<name>
    assert result["meta_data"] == expected
    assert result["user_data"] == USER_DATA.decode()
    assert result["token_base"] == url and result["token_header"] == ["X-aws-ec2-metadata-token"]
    assert result["meta_data_v2"] == expected  # a rejected token would have left it empty
