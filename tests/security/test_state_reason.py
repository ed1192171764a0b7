"""Issue 13, item 7: a failed launch tells the farm nothing about the site's hosts.

The hypervisor fails with a message naming a host URI and a path; DescribeInstances shows only
AWS's generic reason, and the log has the detail with the instance id and the request id.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from drivers.errors import HypervisorError
from ivfarm.cloud import Cloud
from ivfarm.ec2.app import Ec2App
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store import jobs
from ivfarm.store.models import Image, Instance
from tests.security.wsgi import call, signed

SECRET_DETAIL = "virDomainCreateXML on qemu+ssh://root@hv7.site.internal/system: cannot open /srv/site/secret.qcow2"


def test_a_failed_launch_shows_only_a_generic_reason(cloud: Cloud, fake_host: Callable[..., str], base_image: Image,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    add_host(cloud, "w1", fake_host("w1"), "worker")
    farm = create_farm(cloud, FarmRequest(name="alpha", quotas={"instances": 4}))

    def fail(*_: Any, **__: Any) -> None:
        raise HypervisorError(SECRET_DETAIL)

    monkeypatch.setattr(cloud.hypervisor._target, "define_and_start", fail)  # type: ignore[attr-defined]
    provisioner = Provisioner(cloud, 1)
    provisioner.start()
    app = Ec2App(cloud)
    caplog.set_level(logging.ERROR)
    try:
        status, body = call(app, signed(farm.access_key, farm.secret_key, {
            "Action": "RunInstances", "ImageId": base_image.id, "InstanceType": "m1.tiny",
            "MinCount": "1", "MaxCount": "1"}))
        assert status == 200, body
        instance_id = re.search(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", body).group(1).decode()  # type: ignore[union-attr]
        request_id = re.search(rb"<requestId>([^<]+)</requestId>", body).group(1).decode()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while jobs.outstanding(cloud.store) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        provisioner.stop()
    with cloud.store.read() as session:
        assert session.get(Instance, instance_id).state == "terminated"  # type: ignore[union-attr]
    status, body = call(app, signed(farm.access_key, farm.secret_key, {"Action": "DescribeInstances"}))
    assert status == 200
    assert b"<message>Server.InternalError: Internal error on launch</message>" in body
    assert b"hv7" not in body and b"/srv/site" not in body and b"qemu+ssh" not in body
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    logged += "\n".join(str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert instance_id in logged and request_id in logged and "hv7.site.internal" in logged
