"""Issue 13, item 3: signed requests cannot be replayed.

A SigV2 ``Expires`` years ahead is refused, and the exact bytes of a signed mutating request
(CreateKeyPair, RunInstances) are accepted once: sent again later, they answer AuthFailure and
make nothing. The client's own repeat within its signing second is served as before. Each test
runs with the in-process guard and with the store's, which several API workers share: a request
one worker served is refused by the other (on SQLite and PostgreSQL).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from botocore.auth import SigV2Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ivfarm.cloud import Cloud
from ivfarm.ec2.app import Ec2App
from ivfarm.ec2.auth import Principal, SignedRequest, authenticate
from ivfarm.ec2.errors import Ec2Error
from ivfarm.ec2.replay import MemoryReplayGuard, ReplayGuard, StoreReplayGuard
from ivfarm.services.compute.hosts import add_host
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.jobs.provisioner import Provisioner
from ivfarm.store.models import Farm, Image, Instance, KeyPair
from tests.security.wsgi import call, signed

ACCESS, SECRET = "AKIAIVFARMREPLAY0000", "r" * 40


def sigv2(expires: dt.datetime) -> tuple[SignedRequest, dict[str, str]]:
    params = {"Action": "CreateKeyPair", "KeyName": "k", "AWSAccessKeyId": ACCESS, "SignatureVersion": "2",
              "SignatureMethod": "HmacSHA256", "Expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    _, params["Signature"] = SigV2Auth(Credentials(ACCESS, SECRET)).calc_signature(
        AWSRequest("POST", "http://ec2.test:8773/"), params)
    return SignedRequest("POST", "ec2.test:8773", "/", "", {"host": "ec2.test:8773"}, b""), params


def test_sigv2_expires_years_ahead_is_refused() -> None:
    def lookup(key: str) -> Principal | None:
        return Principal(1, "alpha", SECRET) if key == ACCESS else None

    request, params = sigv2(dt.datetime(2036, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(Ec2Error) as excinfo:
        authenticate(request, params, lookup)
    assert (excinfo.value.code, excinfo.value.status) == ("RequestExpired", 400)
    request, params = sigv2(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
    assert authenticate(request, params, lookup).principal.farm_name == "alpha"


class Clock:
    """The replay guard's clock, moved on by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def later(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "store"])
def guard(request: pytest.FixtureRequest, cloud: Cloud, clock: Clock) -> ReplayGuard:
    if request.param == "memory":
        return MemoryReplayGuard(1000, clock=clock)
    return StoreReplayGuard(cloud.store, 1000, clock=clock)


@pytest.fixture
def app(cloud: Cloud, guard: ReplayGuard) -> Iterator[Ec2App]:
    provisioner = Provisioner(cloud, 1)
    provisioner.start()
    yield Ec2App(cloud, guard)
    provisioner.stop()


@pytest.fixture
def farm(cloud: Cloud) -> Farm:
    return create_farm(cloud, FarmRequest(name="alpha", quotas={"instances": 10}))


def test_a_replayed_create_key_pair_is_refused_and_creates_nothing(cloud: Cloud, app: Ec2App, farm: Farm,
                                                                   clock: Clock) -> None:
    create = signed(farm.access_key, farm.secret_key, {"Action": "CreateKeyPair", "KeyName": "once"})
    assert call(app, create)[0] == 200
    delete = signed(farm.access_key, farm.secret_key, {"Action": "DeleteKeyPair", "KeyName": "once"})
    assert call(app, delete)[0] == 200
    clock.later(3)  # past the client's own repeats: a capture sent again
    status, body = call(app, create)
    assert status == 401 and b"<Code>AuthFailure</Code>" in body
    with cloud.store.read() as session:
        assert session.query(KeyPair).count() == 0


def test_a_replayed_run_instances_launches_nothing(cloud: Cloud, app: Ec2App, farm: Farm, clock: Clock,
                                                   fake_host: Callable[..., str], base_image: Image) -> None:
    add_host(cloud, "w1", fake_host("w1"), "worker")
    run = signed(farm.access_key, farm.secret_key, {"Action": "RunInstances", "ImageId": base_image.id,
                                                    "InstanceType": "m1.tiny", "MinCount": "1", "MaxCount": "1"})
    assert call(app, run)[0] == 200
    for wait in (3, 60, 600):
        clock.later(wait)
        status, body = call(app, run)
        assert status == 401 and b"<Code>AuthFailure</Code>" in body
    with cloud.store.read() as session:
        assert session.query(Instance).count() == 1


def test_a_client_repeating_itself_within_its_second_is_served(app: Ec2App, farm: Farm) -> None:
    create = signed(farm.access_key, farm.secret_key, {"Action": "CreateKeyPair", "KeyName": "twice"})
    assert call(app, create)[0] == 200
    status, body = call(app, create)  # the same bytes at once: answered as before, not as a replay
    assert status == 400 and b"<Code>InvalidKeyPair.Duplicate</Code>" in body


def test_read_only_requests_may_be_sent_again(app: Ec2App, farm: Farm, clock: Clock) -> None:
    describe = signed(farm.access_key, farm.secret_key, {"Action": "DescribeKeyPairs"})
    assert call(app, describe)[0] == 200
    clock.later(60)
    assert call(app, describe)[0] == 200


def test_a_request_one_worker_served_is_refused_by_another(db_cloud: Cloud, clock: Clock) -> None:
    farm = create_farm(db_cloud, FarmRequest(name="alpha"))
    first, second = (Ec2App(db_cloud, StoreReplayGuard(db_cloud.store, 1000, clock=clock), workers=2)
                     for _ in range(2))
    create = signed(farm.access_key, farm.secret_key, {"Action": "CreateKeyPair", "KeyName": "once"})
    assert call(first, create)[0] == 200
    assert call(first, signed(farm.access_key, farm.secret_key,
                              {"Action": "DeleteKeyPair", "KeyName": "once"}))[0] == 200
    clock.later(3)
    status, body = call(second, create)
    assert status == 401 and b"<Code>AuthFailure</Code>" in body
    with db_cloud.store.read() as session:
        assert session.query(KeyPair).count() == 0


def test_workers_share_a_farms_limits(cloud: Cloud) -> None:
    limits = cloud.config.get("ec2.limits")
    share = Ec2App(cloud, workers=4).limits
    assert (share.concurrent, share.rate, share.burst) == (16, limits["rate_per_s"] / 4, 100)
    assert isinstance(Ec2App(cloud, workers=4).replay, StoreReplayGuard)
    assert isinstance(Ec2App(cloud).replay, MemoryReplayGuard)  # one process on SQLite: its memory suffices


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_the_guard_forgets_signatures_once_they_expire(kind: str, cloud: Cloud, clock: Clock) -> None:
    guard: ReplayGuard = (MemoryReplayGuard(per_farm=2, grace_s=2, clock=clock) if kind == "memory"
                          else StoreReplayGuard(cloud.store, per_farm=2, grace_s=2, clock=clock))
    until = clock.now + dt.timedelta(minutes=15)
    assert guard.admit(1, "sig-a", until)
    clock.later(3)
    assert not guard.admit(1, "sig-a", until)
    assert guard.admit(2, "sig-a", until)  # farms are apart
    assert guard.admit(1, "sig-b", until)
    with pytest.raises(Ec2Error, match="RequestLimitExceeded"):
        guard.admit(1, "sig-c", until)  # full of live signatures: refused, none forgotten
    clock.now = until + dt.timedelta(seconds=1)
    assert guard.admit(1, "sig-a", clock.now + dt.timedelta(minutes=15))
