"""Wave distribution: rounds grow as log(fanout+1) of the hosts, failed copies retry elsewhere."""
from __future__ import annotations

import math
import threading

import pytest

from ivfarm.services.images.waves import REPOSITORY, spread


def recording(fail: set[tuple[str, str]] | None = None):  # type: ignore[no-untyped-def]
    """A transfer that records (source, target) pairs and fails the given ones."""
    done: list[tuple[str, str]] = []
    lock = threading.Lock()

    def transfer(source: str, target: str) -> None:
        with lock:
            done.append((source, target))
        if fail and (source, target) in fail:
            raise RuntimeError("checksum mismatch")

    return transfer, done


@pytest.mark.parametrize("count", [1, 2, 4, 8, 16, 100])
@pytest.mark.parametrize("fanout", [1, 2, 3])
def test_rounds_grow_logarithmically(count: int, fanout: int) -> None:
    targets = [f"h{i}" for i in range(count)]
    transfer, _ = recording()
    outcomes = spread(targets, [], transfer, fanout=fanout)
    assert all(o.status == "copied" and o.attempts == 1 for o in outcomes)
    assert max(o.round for o in outcomes) == math.ceil(math.log(count + 1, fanout + 1) - 1e-9)
    for round_no in range(1, max(o.round for o in outcomes) + 1):
        sources = [o.source for o in outcomes if o.round == round_no]
        assert max(sources.count(s) for s in sources) <= fanout
        earlier = {o.host for o in outcomes if o.round < round_no} | {REPOSITORY}
        assert set(sources) <= earlier  # only hosts that already had a verified copy serve


def test_hosts_that_already_hold_the_file_seed_from_round_one() -> None:
    transfer, _ = recording()
    outcomes = spread(["a", "b", "c"], ["old1", "old2"], transfer)
    assert {o.source for o in outcomes} == {REPOSITORY, "old1", "old2"} and {o.round for o in outcomes} == {1}


def test_a_failed_copy_is_retried_from_another_source() -> None:
    transfer, _ = recording(fail={(REPOSITORY, "a")})
    [a, b] = spread(["a", "b"], ["old"], transfer)
    assert (a.status, a.attempts, a.round, a.source) == ("copied", 2, 2, "old")
    assert (b.status, b.source) == ("copied", "old") or b.source == REPOSITORY


def test_a_host_fails_after_its_attempts_or_when_no_source_is_left() -> None:
    transfer, _ = recording(fail={(s, "bad") for s in (REPOSITORY, "good", "old")})
    outcomes = {o.host: o for o in spread(["bad", "good"], ["old"], transfer, attempts=3)}
    assert outcomes["good"].status == "copied"
    assert outcomes["bad"].status == "failed" and outcomes["bad"].attempts == 3
    assert "checksum mismatch" in outcomes["bad"].error
    transfer, _ = recording(fail={(REPOSITORY, "lonely")})
    [lonely] = spread(["lonely"], [], transfer, attempts=5)
    assert lonely.status == "failed" and lonely.attempts == 1
