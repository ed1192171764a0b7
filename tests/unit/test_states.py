"""The instance state machine: the transition table, pair by pair, and the compare-and-set."""
from __future__ import annotations

import itertools

import pytest

from ivfarm.cloud import Cloud
from ivfarm.errors import InvalidState, NotFound, TransitionLost
from ivfarm.services.compute import hosts, instances
from ivfarm.services.compute.instances import LaunchRequest
from ivfarm.services.images.catalog import add_image
from ivfarm.services.runtime import journal
from ivfarm.store.models import ACTIVE_STATES, IN_FLIGHT, LIVE_STATES, Instance
from ivfarm.store.states import TRANSITIONS, InstanceState, allowed, sources
from ivfarm.store.transitions import compare_and_set

S = InstanceState
P, R, SG, SD, RB, SH, T = (S.PENDING, S.RUNNING, S.STOPPING, S.STOPPED, S.REBOOTING, S.SHUTTING_DOWN,
                           S.TERMINATED)

# Written out independently of the module: every pair not listed here must be refused.
EXPECTED = {
    P: {P, R, SD, SH, T},
    R: {R, SG, RB, SD, SH, P},
    SG: {SG, SD, R, SH},
    SD: {SD, P, R, SH},
    RB: {RB, R, SG, SD, SH, P},
    SH: {SH, T},
    T: set(),
}


@pytest.mark.parametrize("current,new", list(itertools.product(S, S)), ids=lambda s: str(s))
def test_every_pair_of_the_table(current: InstanceState, new: InstanceState) -> None:
    assert allowed(current, new) is (new in EXPECTED[current])
    assert (current in sources(new)) is (new in EXPECTED[current])


def test_the_table_covers_every_state_and_terminated_is_final() -> None:
    assert set(TRANSITIONS) == set(S) == set(EXPECTED)
    assert TRANSITIONS[T] == frozenset()
    assert all(allowed(s, SH) for s in S if s is not T)  # terminate works from anywhere but the end
    assert sources(T) == (P, SH)
    assert set(IN_FLIGHT) == {P, SG, RB, SH} and set(ACTIVE_STATES) < set(LIVE_STATES) == set(S) - {T}
    assert S("shutting-down") == "shutting-down"  # stored and compared as its string value


@pytest.fixture
def launched(db_cloud: Cloud, fake_host, raw_disk) -> tuple[Cloud, str]:  # type: ignore[no-untyped-def]
    hosts.add_host(db_cloud, "w", fake_host("w"), "worker")
    add_image(db_cloud, "base", raw_disk, public=True)
    [instance] = instances.launch(db_cloud, LaunchRequest(image="base", flavor="m1.small"))
    return db_cloud, instance.id


def row(cloud: Cloud, instance_id: str) -> Instance:
    with cloud.store.read() as session:
        found = session.get(Instance, instance_id)
        assert found is not None
        return found


def test_compare_and_set_applies_side_effects_in_the_same_statement(launched) -> None:  # type: ignore[no-untyped-def]
    cloud, instance_id = launched
    assert row(cloud, instance_id).owner == journal.me() and row(cloud, instance_id).heartbeat_at is not None
    with cloud.store.write() as session:
        assert compare_and_set(session, instance_id, R, expect=(P,)) == P
    first = row(cloud, instance_id).launched_at
    assert first is not None
    instances.set_state(cloud, instance_id, SD)
    instances.set_state(cloud, instance_id, R)
    assert row(cloud, instance_id).launched_at == first  # only the first time it runs
    assert row(cloud, instance_id).ip is None  # (no farm: no private address to give back)
    with cloud.store.write() as session:
        compare_and_set(session, instance_id, SH, owner="elsewhere:1")
        compare_and_set(session, instance_id, T, reason="done")
    final = row(cloud, instance_id)
    assert (final.state, final.state_reason, final.owner) == ("terminated", "done", "elsewhere:1")
    assert final.terminated_at is not None


def test_a_lost_compare_and_set_names_the_state_found_and_changes_nothing(launched) -> None:  # type: ignore[no-untyped-def]
    cloud, instance_id = launched
    with pytest.raises(TransitionLost) as lost:
        instances.set_state(cloud, instance_id, SD, expect=(R,))  # pending is not what was expected
    assert isinstance(lost.value, InvalidState) and lost.value.found == "pending" and lost.value.wanted == "stopped"
    with pytest.raises(TransitionLost):
        instances.set_state(cloud, instance_id, SG)  # not allowed from pending at all
    instances.set_state(cloud, instance_id, SH)
    instances.set_state(cloud, instance_id, T)
    for state in S:
        with pytest.raises(TransitionLost) as lost:
            instances.set_state(cloud, instance_id, state)
        assert lost.value.found == "terminated"
    assert row(cloud, instance_id).state == "terminated"
    with pytest.raises(NotFound):
        instances.set_state(cloud, "i-00000000000000000", R)


def test_a_guard_refuses_a_takeover_when_the_owner_renewed_meanwhile(launched) -> None:  # type: ignore[no-untyped-def]
    cloud, instance_id = launched
    judged = row(cloud, instance_id)
    journal.renew(cloud.store, set())  # the owner's heartbeat moves on after the row was judged
    with cloud.store.write() as session, pytest.raises(TransitionLost):
        compare_and_set(session, instance_id, SH, expect=(P,), owner="reconciler:1", guard=journal.stale_guard(judged))
    assert row(cloud, instance_id).state == "pending" and row(cloud, instance_id).owner == journal.me()
