"""The pure lease rules (bridge.leases): examples, then hypothesis over random histories of claims,
renewals, releases, request delays and clocks that disagree by a constant offset."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.leases import NOBODY, HeldLease, Lease, LeasePolicy, claim, fence_ok, release


def test_a_free_lease_goes_to_the_first_claimant_and_is_refused_to_the_next() -> None:
    first = claim(None, "operator:DE*ABC", "a", now=100.0, duration=10.0)
    assert first == Lease("operator:DE*ABC", "a", 1, 110.0)
    assert claim(first, "operator:DE*ABC", "b", now=109.9, duration=10.0) is None
    renewed = claim(first, "operator:DE*ABC", "a", now=105.0, duration=10.0)
    assert renewed == Lease("operator:DE*ABC", "a", 1, 115.0)


def test_an_expired_lease_passes_on_with_the_next_token() -> None:
    held = Lease("n", "a", 4, 110.0)
    assert claim(held, "n", "b", now=110.0, duration=10.0) == Lease("n", "b", 5, 120.0)
    # its own holder, too late, starts anew: writes under token 4 are fenced off
    assert claim(held, "n", "a", now=111.0, duration=10.0) == Lease("n", "a", 5, 121.0)
    assert not fence_ok(Lease("n", "a", 5, 121.0), "a", 4, now=111.0)


def test_release_lets_the_next_claim_in_at_once_with_a_new_token() -> None:
    held = Lease("n", "a", 1, 110.0)
    assert release(held, "b", 1, now=101.0) is None  # not b's to release
    released = release(held, "a", 1, now=101.0)
    assert released == Lease("n", "a", 1, 101.0)
    assert claim(released, "n", "b", now=101.0, duration=10.0) == Lease("n", "b", 2, 111.0)


def test_the_fence_wants_holder_token_and_time() -> None:
    row = Lease("n", "a", 3, 110.0)
    assert fence_ok(row, "a", 3, now=109.0)
    assert not fence_ok(row, "a", 3, now=110.0)
    assert not fence_ok(row, "a", 2, now=109.0)
    assert not fence_ok(row, "b", 3, now=109.0)
    assert not fence_ok(None, "a", 3, now=0.0)
    assert not fence_ok(Lease("n", NOBODY, 0, 0.0), NOBODY, 0, now=-1.0)


def test_the_policy_counts_from_the_request_and_renews_in_time() -> None:
    policy = LeasePolicy(duration=9.0)
    held = policy.held(Lease("n", "a", 1, 1009.0), asked_at=50.0)
    assert held == HeldLease("n", "a", 1, 59.0)
    assert policy.renew_interval == 3.0
    assert not policy.renew_due(held, 52.9)
    assert policy.renew_due(held, 53.0)
    assert policy.may_act(held, 58.0)
    assert not policy.may_act(held, 59.0 - policy.safety_margin)
    assert not policy.may_act(None, 0.0)


@pytest.mark.parametrize(
    "kwargs", [{"duration": 0.0}, {"duration": -1.0}, {"renewals": 1}, {"margin": 10.0}, {"margin": -0.1}]
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"lease|margin"):
        LeasePolicy(**kwargs)  # type: ignore[arg-type]


def test_claims_need_a_time_and_a_name() -> None:
    with pytest.raises(ValueError, match="positive"):
        claim(None, "n", "a", now=0.0, duration=0.0)
    with pytest.raises(ValueError, match="name"):
        claim(None, "n", NOBODY, now=0.0, duration=1.0)


# --- random histories -------------------------------------------------------------------------------

HOLDERS = ("a", "b", "c")


@dataclass
class World:
    """One lease row judged on the server's clock, and each holder's view on its own clock (the server's
    plus a constant offset: monotonic clocks of different hosts agree on rates, not on values)."""

    policy: LeasePolicy
    offsets: dict[str, float]
    server_now: float = 1000.0
    row: Lease | None = None
    held: dict[str, HeldLease] = field(default_factory=dict)
    tokens_seen: list[int] = field(default_factory=list)

    def local(self, holder: str) -> float:
        return self.server_now + self.offsets[holder]

    def acting(self) -> list[str]:
        return [h for h in HOLDERS if self.policy.may_act(self.held.get(h), self.local(h))]


# amounts of time are fractions of the lease's duration, so that histories reach its edges often
ops = st.one_of(
    st.tuples(st.just("wait"), st.sampled_from(HOLDERS), st.floats(0, 1.2)),
    st.tuples(st.just("claim"), st.sampled_from(HOLDERS), st.floats(0, 0.3)),  # the request's travel time
    st.tuples(st.just("release"), st.sampled_from(HOLDERS), st.just(0.0)),
)


@settings(max_examples=500)
@given(
    duration=st.floats(1, 20),
    offsets=st.tuples(*(st.floats(-1e6, 1e6) for _ in HOLDERS)),
    history=st.lists(ops, max_size=40),
)
def test_at_most_one_holder_acts_and_the_server_always_agrees_with_it(
    duration: float, offsets: tuple[float, ...], history: list[tuple[str, str, float]]
) -> None:
    world = World(LeasePolicy(duration=duration), dict(zip(HOLDERS, offsets, strict=True)))
    for op, holder, fraction in history:
        amount = fraction * duration
        if op == "wait":
            world.server_now += amount
        elif op == "claim":
            asked_at = world.local(holder)
            world.server_now += amount  # the claim reaches the server later than it was sent
            before = world.row
            granted = claim(before, "n", holder, world.server_now, duration)
            if granted is None:
                world.held.pop(holder, None)
                assert before is not None
                assert before.holder != holder
            else:
                world.row = granted
                world.held[holder] = world.policy.held(granted, asked_at)
                if before is not None and before.token != granted.token:
                    assert granted.token == before.token + 1
                    # whoever held the old token is fenced off from now on
                    assert not fence_ok(granted, before.holder, before.token, world.server_now)
        elif op == "release" and holder in world.held and world.row is not None:
            mine = world.held.pop(holder)
            released = release(world.row, holder, mine.token, world.server_now)
            if released is not None:
                world.row = released
        if world.row is not None:
            world.tokens_seen.append(world.row.token)

        acting = world.acting()
        assert len(acting) <= 1, f"{acting} act at once"
        for h in acting:
            # a holder that believes it may act passes the fence on the server at that very moment
            assert world.row is not None
            assert fence_ok(world.row, h, world.held[h].token, world.server_now)
    assert world.tokens_seen == sorted(world.tokens_seen)
