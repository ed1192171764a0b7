"""Issue 13, item 1: one farm must not stall the API for the others.

A backtracking filter pattern answers at once while another farm is served, a flooding farm
gets RequestLimitExceeded (503) while another farm still gets 200, and one request's filter work
is bounded.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from ivfarm.ec2.errors import Ec2Error
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.limits import FarmLimits
from ivfarm.ec2.params import Params
from tests.e2e.ec2_support import Ec2Site, start_site

LONG_NAME = "a" * 255
EVIL = "*a" * 14 + "*b"  # fullmatch of (.*a){14}.*b on 255 'a' backtracks for minutes


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., Ec2Site]]:
    sites: list[Ec2Site] = []

    def build(**limits: Any) -> Ec2Site:
        site = start_site(tmp_path / f"site{len(sites)}", settings={"ec2": {"limits": limits}} if limits else None)
        sites.append(site)
        return site

    yield build
    for site in sites:
        site.site.close()


def test_backtracking_filter_answers_fast_while_another_farm_is_served(make_site: Callable[..., Ec2Site]) -> None:
    site = make_site()
    patient = Config(retries={"total_max_attempts": 1}, read_timeout=20)
    attacker, bystander = site.client("alpha", config=patient), site.client("beta", config=patient)
    attacker.create_key_pair(KeyName=LONG_NAME)
    bystander.describe_instances()  # connections and clients warmed up
    took: dict[str, float] = {}

    def attack() -> None:
        started = time.monotonic()
        found = attacker.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [EVIL]}])["KeyPairs"]
        took["attack"] = time.monotonic() - started
        assert found == []

    thread = threading.Thread(target=attack)
    thread.start()
    time.sleep(0.3)  # the attacker's filter is being matched now
    started = time.monotonic()
    bystander.describe_instances()
    took["bystander"] = time.monotonic() - started
    thread.join(30)
    assert took.get("attack", 99.0) < 1.0 and took["bystander"] < 1.0, took
    matching = [{"Name": "key-name", "Values": ["*a*a?a*"]}]
    assert [k["KeyName"] for k in attacker.describe_key_pairs(Filters=matching)["KeyPairs"]] == [LONG_NAME]


def test_a_flooding_farm_is_throttled_while_another_farm_is_served(make_site: Callable[..., Ec2Site]) -> None:
    site = make_site(rate_per_s=5, burst=10)
    flood = site.raw("alpha")
    answers = [flood.call({"Action": "DescribeInstances"}) for _ in range(40)]
    throttled = [body for status, body in answers if status == 503]
    assert throttled and all(b"<Code>RequestLimitExceeded</Code>" in body for body in throttled)
    assert sum(1 for status, _ in answers if status == 200) <= 10 + 5 * 5  # the burst, and what refilled meanwhile
    status, body = site.raw("beta").call({"Action": "DescribeInstances"})
    assert status == 200, body


def test_requests_in_flight_are_capped_per_farm() -> None:
    limits = FarmLimits(concurrent=2, rate=1000, burst=1000)
    with limits.admit(1), limits.admit(1):
        with pytest.raises(Ec2Error) as excinfo, limits.admit(1):
            pass
        assert (excinfo.value.code, excinfo.value.status) == ("RequestLimitExceeded", 503)
        with limits.admit(2):  # another farm is not affected
            pass
    with limits.admit(1):  # slots come back when requests end
        pass


def test_a_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limits = FarmLimits(concurrent=64, rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        with limits.admit(1):
            pass
    with pytest.raises(Ec2Error, match="RequestLimitExceeded"), limits.admit(1):
        pass
    now[0] += 0.5  # one token back
    with limits.admit(1):
        pass


@pytest.mark.parametrize(("params", "code"), [
    ({f"Filter.{n}.Name": "key-name" for n in range(1, 52)} | {f"Filter.{n}.Value.1": "x" for n in range(1, 52)},
     "FilterLimitExceeded"),
    ({"Filter.1.Name": "key-name"} | {f"Filter.1.Value.{n}": "x" for n in range(1, 202)}, "FilterLimitExceeded"),
    ({f"Filter.{f}.Name": "key-name" for f in range(1, 7)}
     | {f"Filter.{f}.Value.{n}": "x" for f in range(1, 7) for n in range(1, 201)}, "FilterLimitExceeded"),
    ({"Filter.1.Name": "key-name", "Filter.1.Value.1": "*" * 1025}, "InvalidParameterValue"),
])
def test_the_filter_work_of_one_request_is_bounded(params: dict[str, str], code: str) -> None:
    with pytest.raises(Ec2Error) as excinfo:
        parse_filters(Params(params), {"key-name": lambda pair: [pair]})
    assert (excinfo.value.code, excinfo.value.status) == (code, 400)
