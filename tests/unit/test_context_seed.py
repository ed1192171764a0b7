"""NoCloud seed ISOs: what a guest's cloud-init finds on the ``cidata`` volume."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
import yaml

from contextualization.errors import ContextError
from contextualization.metadata import meta_data, network_config_v2
from contextualization.seed import build_seed, read_seed, volume_label

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5 user@login"
LEASE = {"mac": "02:00:0a:00:05:07", "address": "10.0.5.7", "prefix": 24,
         "gateway": "10.0.5.1", "nameservers": ["10.0.5.1", "192.0.2.53"]}


def _meta() -> dict:
    return meta_data("i-0123456789abcdef0", "wn-007", {"farm-key": KEY})


def _mime_user_data() -> bytes:
    archive = MIMEMultipart()
    archive.attach(MIMEText("#cloud-config\nruncmd: [[touch, /marker]]\n", "cloud-config"))
    archive.attach(MIMEText("#!/bin/sh\necho hi\n", "x-shellscript"))
    return archive.as_bytes()


USER_DATA = {
    "cloud-config": b"#cloud-config\nhostname: wn-007\n",
    "shell script": b"#!/bin/sh\nprintf '\\xc3\\xa9t\\xc3\\xa9\\n' > /tmp/x\r\n",
    "mime": _mime_user_data(),
    "gzip": gzip.compress(b"#cloud-config\npackages: [htop]\n" * 50),
    "binary": bytes(range(256)) * 9,
}


@pytest.mark.parametrize("kind", sorted(USER_DATA))
def test_user_data_bytes_survive_exactly(kind: str) -> None:
    files = read_seed(build_seed(_meta(), USER_DATA[kind], None))
    assert files["user-data"] == USER_DATA[kind]


def test_round_trip_of_every_file() -> None:
    network = network_config_v2(**LEASE)
    iso = build_seed(_meta(), b"#cloud-config\n", network, vendor_data=b"#cloud-config\n{}\n")
    files = read_seed(iso)
    assert set(files) == {"meta-data", "user-data", "network-config", "vendor-data"}
    assert yaml.safe_load(files["meta-data"]) == _meta()
    assert yaml.safe_load(files["network-config"]) == network
    assert files["vendor-data"] == b"#cloud-config\n{}\n"


def test_missing_user_data_is_an_empty_file_and_no_network_config() -> None:
    files = read_seed(build_seed(_meta(), None, None))
    assert files["user-data"] == b""
    assert "network-config" not in files


def test_network_config_carries_the_lease() -> None:
    files = read_seed(build_seed(_meta(), None, network_config_v2(**LEASE)))
    document = yaml.safe_load(files["network-config"])
    assert document["version"] == 2
    (ethernet,) = document["ethernets"].values()
    assert ethernet["match"]["macaddress"] == LEASE["mac"]
    assert ethernet["addresses"] == [f"{LEASE['address']}/{LEASE['prefix']}"]
    assert ethernet["routes"] == [{"to": "default", "via": LEASE["gateway"]}]
    assert ethernet["nameservers"]["addresses"] == LEASE["nameservers"]


def test_volume_label_is_cidata() -> None:
    assert volume_label(build_seed(_meta(), None, None)) == "cidata"


def _missing(tool: str) -> bool:
    """Skip when ``tool`` is absent, except under ``make test`` (IVFARM_REQUIRE_ALL=1): fail there."""
    return shutil.which(tool) is None and os.environ.get("IVFARM_REQUIRE_ALL") != "1"


@pytest.mark.skipif(_missing("isoinfo"), reason="isoinfo (genisoimage) not installed")
def test_isoinfo_sees_label_and_long_names(tmp_path) -> None:
    iso = tmp_path / "seed.iso"
    iso.write_bytes(build_seed(_meta(), b"#cloud-config\n", network_config_v2(**LEASE)))
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True,
                          check=True).stdout
    assert "Volume id: cidata" in info
    assert "Rock Ridge" in info and "Joliet" in info
    listing = subprocess.run(["isoinfo", "-R", "-l", "-i", str(iso)], capture_output=True,
                             text=True, check=True).stdout
    for name in ("meta-data", "user-data", "network-config"):
        assert f" {name}" in listing
    extracted = subprocess.run(["isoinfo", "-R", "-x", "/user-data", "-i", str(iso)],
                               capture_output=True, check=True).stdout
    assert extracted == b"#cloud-config\n"


@pytest.mark.skipif(_missing("blkid"), reason="blkid not installed")
def test_blkid_finds_the_cidata_label_cloud_init_looks_for(tmp_path) -> None:
    iso = tmp_path / "seed.iso"
    iso.write_bytes(build_seed(_meta(), None, None))
    probe = subprocess.run(["blkid", "-o", "export", str(iso)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert "LABEL=cidata" in probe and "TYPE=iso9660" in probe


@pytest.mark.parametrize("bad_meta", [{}, {"instance-id": ""}, "instance-id: x"])
def test_meta_data_needs_an_instance_id(bad_meta) -> None:
    with pytest.raises(ContextError, match="instance-id"):
        build_seed(bad_meta, None, None)


def test_user_data_must_be_bytes() -> None:
    with pytest.raises(ContextError, match="user-data must be bytes"):
        build_seed(_meta(), "#cloud-config\n", None)  # type: ignore[arg-type]


def test_reading_something_that_is_not_an_iso_is_a_context_error() -> None:
    with pytest.raises(ContextError, match="ISO 9660"):
        read_seed(b"not an iso" * 1000)
