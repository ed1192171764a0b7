"""Issue 13, item 9: a farm can turn IMDSv1 off, and the metadata service enforces it.

The attack: an SSRF-style plain GET (no token) of the instance's user-data and metadata from the
instance's own address. Launched with ``MetadataOptions.HttpTokens=required`` it gets 401 while a
PUT-then-GET client is served; after ``ModifyInstanceMetadataOptions HttpEndpoint=disabled``
every request gets 403. The records are those the control plane publishes to the farm's router
(from the store), served by the router's real metadata server on loopback.
Before the fix RunInstances refused ``MetadataOptions`` (UnknownParameter), there was no
ModifyInstanceMetadataOptions, and the plain GET was answered.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fileops.atomic import atomic_write
from ivfarm.cloud import Cloud
from ivfarm.ec2.app import Ec2App
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.images.catalog import add_image
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.services.network.metadata_records import metadata_records
from ivfarm.services.network.routers import router_spec
from ivfarm.store.models import Farm, Image, Instance
from tests.security.wsgi import call, signed
from vrouter.metadata_server import MetadataServer, Records

USER_DATA = b"#!/bin/sh\necho site-password=hunter2\n"


@pytest.fixture
def app(cloud: Cloud) -> Iterator[Ec2App]:
    provisioner = Provisioner(cloud, 1)
    provisioner.start()
    yield Ec2App(cloud)
    provisioner.stop()


@pytest.fixture
def farm(cloud: Cloud, fake_host: Callable[..., str]) -> Farm:
    add_host(cloud, "w1", fake_host("w1"), "worker")
    return create_farm(cloud, FarmRequest(name="alpha", quotas={"instances": 4}))


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The router's metadata server on loopback, serving the records file given."""
    records = tmp_path / "records.json"
    server = MetadataServer(("127.0.0.1", 0), Records(records))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield records, server.server_address[1]
    server.shutdown()
    server.server_close()


def ec2(app: Ec2App, farm: Farm, **params: str) -> bytes:
    status, body = call(app, signed(farm.access_key, farm.secret_key, params))
    assert status == 200, body
    return body


def run(app: Ec2App, farm: Farm, image: Image, **options: str) -> str:
    body = ec2(app, farm, Action="RunInstances", ImageId=image.id, InstanceType="m1.tiny", MinCount="1",
               MaxCount="1", UserData=base64.b64encode(USER_DATA).decode(),
               **{f"MetadataOptions.{name}": value for name, value in options.items()})
    return re.search(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", body).group(1).decode()  # type: ignore[union-attr]


def publish_as_loopback(cloud: Cloud, farm: Farm, instance_id: str, path: Path) -> None:
    """What the control plane publishes for this instance, keyed by the address the test asks from."""
    with cloud.store.read() as session:
        row = session.get(Farm, farm.id)
        records = metadata_records(cloud, session, row, router_spec(cloud, session, row))  # type: ignore[arg-type]
        ip = session.get(Instance, instance_id).ip  # type: ignore[union-attr]
    atomic_write(path, json.dumps({"127.0.0.1": records[ip]}), 0o600)


def ask(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def token(port: int) -> str:
    status, body = ask(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200
    return body.decode()


def test_required_tokens_refuse_plain_gets_and_a_disabled_endpoint_answers_nothing(
        cloud: Cloud, app: Ec2App, farm: Farm, base_image: Image, router: tuple[Path, int]) -> None:
    records, port = router
    instance_id = run(app, farm, base_image, HttpTokens="required", HttpPutResponseHopLimit="2")
    publish_as_loopback(cloud, farm, instance_id, records)

    assert ask(port, "GET", "/latest/user-data")[0] == 401  # the attack: IMDSv1
    assert ask(port, "GET", "/latest/meta-data/instance-id")[0] == 401
    v2 = {"X-aws-ec2-metadata-token": token(port)}
    assert ask(port, "GET", "/latest/user-data", v2) == (200, USER_DATA)

    described = ec2(app, farm, Action="DescribeInstances", **{"InstanceId.1": instance_id})
    assert re.search(rb"<metadataOptions>\s*<state>applied</state>\s*<httpTokens>required</httpTokens>\s*"
                     rb"<httpPutResponseHopLimit>2</httpPutResponseHopLimit>\s*<httpEndpoint>enabled</httpEndpoint>",
                     described), described

    answer = ec2(app, farm, Action="ModifyInstanceMetadataOptions", InstanceId=instance_id, HttpEndpoint="disabled")
    assert b"<httpEndpoint>disabled</httpEndpoint>" in answer and b"<httpTokens>required</httpTokens>" in answer
    publish_as_loopback(cloud, farm, instance_id, records)
    assert ask(port, "GET", "/latest/user-data", v2)[0] == 403
    assert ask(port, "GET", "/latest/user-data")[0] == 403
    assert ask(port, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})[0] == 403

    ec2(app, farm, Action="ModifyInstanceMetadataOptions", InstanceId=instance_id, HttpEndpoint="enabled",
        HttpTokens="optional")
    publish_as_loopback(cloud, farm, instance_id, records)
    assert ask(port, "GET", "/latest/user-data") == (200, USER_DATA)


def test_the_site_default_applies_to_launches_that_do_not_choose(
        cloud_factory: Callable[..., Cloud], fake_host: Callable[..., str], raw_disk: Path,
        router: tuple[Path, int]) -> None:
    site = cloud_factory(ec2={"metadata_options": {"imdsv2": "required"}})
    add_host(site, "w1", fake_host("w1"), "worker")
    farm = create_farm(site, FarmRequest(name="beta", quotas={"instances": 4}))
    image = add_image(site, "base", raw_disk, public=True)
    provisioner = Provisioner(site, 1)
    provisioner.start()
    try:
        site_app = Ec2App(site)
        instance_id = run(site_app, farm, image)
        records, port = router
        publish_as_loopback(site, farm, instance_id, records)
        assert ask(port, "GET", "/latest/user-data")[0] == 401
        chosen = run(site_app, farm, image, HttpTokens="optional")
        publish_as_loopback(site, farm, chosen, records)
        assert ask(port, "GET", "/latest/user-data") == (200, USER_DATA)
    finally:
        provisioner.stop()


@pytest.mark.parametrize("params,code", [
    ({"HttpTokens": "sometimes"}, b"InvalidParameterValue"),
    ({"HttpPutResponseHopLimit": "65"}, b"InvalidParameterValue"),
    ({"HttpEndpoint": "off"}, b"InvalidParameterValue"),
])
def test_bad_options_get_aws_errors(app: Ec2App, farm: Farm, base_image: Image, params: dict[str, str],
                                    code: bytes) -> None:
    instance_id = run(app, farm, base_image)
    status, body = call(app, signed(farm.access_key, farm.secret_key, {
        "Action": "ModifyInstanceMetadataOptions", "InstanceId": instance_id, **params}))
    assert status == 400 and code in body
    status, body = call(app, signed(farm.access_key, farm.secret_key, {
        "Action": "ModifyInstanceMetadataOptions", "InstanceId": "i-00000000000000000", "HttpTokens": "required"}))
    assert status == 400 and b"InvalidInstanceID.NotFound" in body
