"""The outbox's rules as pure functions (bridge.outbox), without a database: every cell of the transition
table, and properties over any interleaving of changes, pushes, answers, timeouts and restarts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import outbox as rules
from bridge.mapping import Action
from bridge.outbox import TRANSITIONS, Desired, Event, Record, RecordState, Row, TransitionError
from oicp.ids import EvseID
from oicp.models import EvseStatus

E1 = EvseID("DE*ABC*E1")
CONTENTS: list[tuple[Action, EvseStatus | None]] = [
    (Action.UPDATE, EvseStatus.AVAILABLE),
    (Action.UPDATE, EvseStatus.OCCUPIED),
    (Action.UPDATE, EvseStatus.OUT_OF_SERVICE),
    (Action.DELETE, None),
]


def desired(content: tuple[Action, EvseStatus | None], at: int = 0) -> Desired:
    return Desired(content[0], content[1], "X", at, "DE/ABC/L/1")


def row_in(state: RecordState, **fields: object) -> Row:
    base = Row(Action.UPDATE, EvseStatus.AVAILABLE, "AVAILABLE", 0, "s", 5, state)
    if state is RecordState.IN_FLIGHT:
        base = replace(base, sent_version=5)
    return replace(base, **fields)  # type: ignore[arg-type]


# --- the table ---------------------------------------------------------------------------------------------


def test_transition_refuses_every_move_the_table_does_not_list() -> None:
    for state in RecordState:
        for event in Event:
            for to in RecordState:
                allowed = to in TRANSITIONS.get((state, event), frozenset())
                if allowed:
                    assert rules.transition(state, event, to) is to
                else:
                    with pytest.raises(TransitionError):
                        rules.transition(state, event, to)


@pytest.mark.parametrize("state", list(RecordState))
def test_observe_of_new_content_follows_the_table(state: RecordState) -> None:
    row = row_in(state)
    new = rules.observe(row, desired((Action.UPDATE, EvseStatus.OCCUPIED)), 6, 1.0)
    assert new is not None
    assert new.state in TRANSITIONS[(state, Event.OBSERVE)]
    assert (new.version, new.status) == (6, EvseStatus.OCCUPIED)


@pytest.mark.parametrize("state", list(RecordState))
def test_observe_of_the_same_content_keeps_state_and_version(state: RecordState) -> None:
    row = row_in(state)
    new = rules.observe(row, desired((Action.UPDATE, EvseStatus.AVAILABLE), at=9), 6, 1.0)
    assert new == replace(row, ocpi_status="X", last_updated_us=9, source="DE/ABC/L/1")


def test_a_delete_for_an_evse_id_never_seen_keeps_no_row() -> None:
    assert rules.observe(None, desired((Action.DELETE, None)), 1, 0.0) is None


def test_a_change_back_to_what_hubject_holds_is_delivered_without_a_push() -> None:
    row = row_in(RecordState.PENDING, delivered_action=Action.UPDATE, delivered_status=EvseStatus.OCCUPIED)
    new = rules.observe(row, desired((Action.UPDATE, EvseStatus.OCCUPIED)), 6, 1.0)
    assert new is not None
    assert new.state is RecordState.DELIVERED


def test_an_unsure_row_never_skips_a_change_as_already_held() -> None:
    row = row_in(
        RecordState.DELIVERED,
        delivered_action=Action.UPDATE,
        delivered_status=EvseStatus.AVAILABLE,
        status=EvseStatus.OCCUPIED,
        unsure=True,
        unsure_until=100.0,
    )
    new = rules.observe(row, desired((Action.UPDATE, EvseStatus.AVAILABLE)), 6, 1.0)
    assert new is not None
    assert new.state is RecordState.PENDING


def test_delivered_only_when_the_row_still_holds_the_sent_version() -> None:
    row = rules.claimed(row_in(RecordState.PENDING))
    sent = Record(E1, row.action, row.status, row.version)
    changed = rules.observe(row, desired((Action.UPDATE, EvseStatus.OCCUPIED)), 6, 1.0)
    assert changed is not None
    assert rules.delivered(changed, sent, 2.0, 2.0).state is RecordState.PENDING
    assert rules.delivered(row, sent, 2.0, 2.0).state is RecordState.DELIVERED


def test_a_doubt_is_settled_only_by_a_push_sent_after_its_quiet_period() -> None:
    row = rules.claimed(row_in(RecordState.PENDING))
    doubtful = rules.released(row, "timeout", 10.0, unsure_until=70.0)
    again = rules.claimed(doubtful)
    sent = Record(E1, again.action, again.status, again.version)
    early = rules.delivered(again, sent, sent_at=20.0, now=20.0)
    assert (early.state, early.unsure) == (RecordState.DELIVERED, True)
    assert not rules.settle_due(early, 69.0)
    assert rules.settle_due(early, 70.0)
    settled = rules.settle(early, 70.0)
    assert settled.state is RecordState.PENDING
    late = rules.delivered(rules.claimed(settled), sent, sent_at=70.0, now=71.0)
    assert (late.state, late.unsure, late.unsure_until) == (RecordState.DELIVERED, False, None)


def test_a_parked_row_leaves_only_by_a_fullload() -> None:
    row = row_in(RecordState.PARKED, dead_code="603")
    for content in CONTENTS:
        new = rules.observe(row, desired(content), 9, 1.0)
        assert new is not None
        assert new.state is RecordState.PARKED
    assert rules.recovered(row, 1.0, 2.0).state is RecordState.PARKED
    assert rules.fullload_delivered(row, watermark=5, sent_at=1.0, now=1.0).state is RecordState.DELIVERED


def test_a_fullload_gives_a_dead_letter_its_second_chance_but_not_a_row_changed_since() -> None:
    dead = row_in(RecordState.DEAD, dead_code="018", dead_at=1.0)
    after = rules.fullload_delivered(dead, watermark=5, sent_at=2.0, now=2.0)
    assert (after.state, after.dead_code, after.delivered_status) == (
        RecordState.DELIVERED,
        None,
        EvseStatus.AVAILABLE,
    )
    newer = replace(row_in(RecordState.PENDING), version=7)
    assert rules.fullload_delivered(newer, watermark=5, sent_at=2.0, now=2.0) == newer


# --- properties ------------------------------------------------------------------------------------------


@dataclass
class Model:
    """One EvseID: the row, what Hubject really holds, and pushes whose outcome is unknown (they may land
    later, in any order, until their quiet period is over)."""

    row: Row | None = None
    hubject: tuple[Action, EvseStatus | None] = (Action.DELETE, None)
    lost: list[tuple[tuple[Action, EvseStatus | None], float]] = field(default_factory=list)
    now: float = 0.0
    version: int = 0
    sent: Record | None = None
    sent_at: float = 0.0


QUIET = 10.0
steps = st.lists(
    st.tuples(
        st.sampled_from(["change", "claim", "ack", "timeout", "land", "restart", "settle", "wait"]),
        st.integers(0, len(CONTENTS) - 1),
    ),
    max_size=60,
)


def apply(model: Model, step: str, pick: int) -> None:
    row = model.row
    if step == "change":
        model.version += 1
        before = row
        model.row = rules.observe(row, desired(CONTENTS[pick]), model.version, model.now)
        if before is not None and before.unsure and model.row is not None:
            # an unsure row never becomes delivered without a push
            assert not (model.row.state is RecordState.DELIVERED and model.row.content != before.content)
    elif step == "claim" and row is not None and row.state is RecordState.PENDING and model.sent is None:
        model.row = rules.claimed(row)
        model.sent = Record(E1, row.action, row.status, row.version)
        model.sent_at = model.now
    elif step == "ack" and model.sent is not None and row is not None:
        model.hubject = (model.sent.action, model.sent.status)
        before = row
        model.row = rules.delivered(row, model.sent, model.sent_at, model.now)
        if before.version != model.sent.version:  # a stale version never becomes delivered
            assert model.row.state is not RecordState.DELIVERED
        model.sent = None
    elif step == "timeout" and model.sent is not None and row is not None:
        model.lost.append(((model.sent.action, model.sent.status), model.now + QUIET))
        model.row = rules.released(row, "timeout", model.now, model.now + QUIET)
        model.sent = None
    elif step == "land" and model.lost:
        content, _ = model.lost.pop(pick % len(model.lost))
        model.hubject = content
    elif step == "restart" and row is not None:
        if model.sent is not None:
            model.lost.append(((model.sent.action, model.sent.status), model.now + QUIET))
            model.sent = None
        model.row = rules.recovered(row, model.now, model.now + QUIET)
    elif step == "settle" and row is not None and rules.settle_due(row, model.now):
        model.row = rules.settle(row, model.now)
    elif step == "wait":
        model.now += QUIET / 4 * (pick + 1)
        model.lost = [(c, until) for c, until in model.lost if until > model.now]  # too late to land now


def drain(model: Model) -> None:
    """Hubject behaves: the dispatcher claims, pushes and settles until nothing is left to do."""
    for _ in range(10):
        model.now += QUIET * 2
        model.lost.clear()  # past every quiet period: nothing lost can land any more
        row = model.row
        if row is not None and rules.settle_due(row, model.now):
            model.row = row = rules.settle(row, model.now)
        if row is not None and row.state is RecordState.PENDING:
            apply(model, "claim", 0)
            apply(model, "ack", 0)
            continue
        return


@settings(max_examples=400, deadline=None)
@given(steps, st.integers(0, len(CONTENTS) - 1))
def test_after_draining_hubject_holds_the_newest_content(sequence: list[tuple[str, int]], last: int) -> None:
    """Whatever the interleaving of changes, pushes, acknowledgements, timeouts, late landings and
    restarts: once Hubject behaves and the quiet periods are over, Hubject holds the newest content."""
    model = Model()
    for step, pick in sequence:
        apply(model, step, pick)
    if model.sent is not None:
        apply(model, "timeout", 0)
    apply(model, "change", last)
    drain(model)
    wanted = CONTENTS[last]
    if model.row is None:
        assert wanted[0] is Action.DELETE
        assert model.hubject[0] is Action.DELETE
        return
    assert model.row.state is RecordState.DELIVERED
    assert model.row.content == wanted
    held = model.hubject if model.hubject[0] is Action.UPDATE else (Action.DELETE, None)
    assert held == wanted or (wanted[0] is Action.DELETE and held[0] is Action.DELETE)
    assert not model.row.unsure
