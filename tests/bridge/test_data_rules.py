"""The EVSE data outbox's pure rules (``bridge.evse_data.decide``): tables for the ActionType choice, the
batch order and the refusals, and a property test that drives one row through random changes, pushes,
failures, lost acknowledgements and 603s against a model of what Hubject holds:

- the latest record wins: once the pushes go through, Hubject holds exactly the last mapped record (or
  nothing after a withdrawal);
- a delete sends the record Hubject acknowledged last (the schema wants a full record);
- a status is never released before its data is acknowledged: ``held`` (which gates the status lane) is
  true exactly when the last acknowledgement for the EvseID was of a record, not a delete, and no 603 said
  otherwise since.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.evse_data import decide
from bridge.evse_data.decide import DataDesired, DataRecord, DataRow
from bridge.mapping import Action
from bridge.outbox import RecordState, TransitionError, settle_due
from oicp.models import ActionType

NOW = 1_000_000.0


def desired(content: str | None) -> DataDesired:
    if content is None:
        return DataDesired(Action.DELETE, None, None, "DE/OBD/L1/e1")
    return DataDesired(Action.UPDATE, f'{{"r":"{content}"}}', f"hash-{content}", "DE/OBD/L1/e1")


def row(**changes: object) -> DataRow:
    base = DataRow(
        Action.UPDATE, '{"r":"a"}', "hash-a", "DE/OBD/L1/e1", 1, RecordState.PENDING, pending_since=NOW
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "held", "reclassified", "expected"),
    [
        (Action.UPDATE, False, False, ActionType.INSERT),  # Hubject does not hold it
        (Action.UPDATE, True, False, ActionType.UPDATE),  # it does
        (Action.UPDATE, False, True, ActionType.UPDATE),  # an insert was refused 009: flipped once
        (Action.UPDATE, True, True, ActionType.INSERT),  # an update was refused 009: flipped once
        (Action.DELETE, True, False, ActionType.DELETE),
        (Action.DELETE, False, True, ActionType.DELETE),
    ],
)
def test_the_action_type_follows_what_hubject_holds(
    action: Action, held: bool, reclassified: bool, expected: ActionType
) -> None:
    assert decide.wire_action(row(action=action, held=held, reclassified=reclassified)) is expected


def record(evse_id: str, action: ActionType) -> DataRecord:
    return DataRecord(evse_id, action, "{}", None, 1)


@pytest.mark.parametrize(
    ("given_", "max_batch", "expected"),
    [
        ([], 3, []),
        (
            [("d1", ActionType.DELETE), ("u1", ActionType.UPDATE), ("i1", ActionType.INSERT)],
            3,
            [(ActionType.INSERT, ["i1"]), (ActionType.UPDATE, ["u1"]), (ActionType.DELETE, ["d1"])],
        ),
        (
            [(f"i{n}", ActionType.INSERT) for n in range(5)] + [("d1", ActionType.DELETE)],
            2,
            [
                (ActionType.INSERT, ["i0", "i1"]),
                (ActionType.INSERT, ["i2", "i3"]),
                (ActionType.INSERT, ["i4"]),
                (ActionType.DELETE, ["d1"]),
            ],
        ),
    ],
)
def test_batches_are_inserts_then_updates_then_deletes_each_bounded(
    given_: list[tuple[str, ActionType]], max_batch: int, expected: list[tuple[ActionType, list[str]]]
) -> None:
    planned = decide.batches([record(e, a) for e, a in given_], max_batch)
    assert [(action, [r.evse_id for r in group]) for action, group in planned] == expected


def test_a_first_009_reclassifies_and_a_second_is_dead_with_hubjects_code() -> None:
    start, sent = decide.claimed(row(), "DE*OBD*E1")
    assert sent.action is ActionType.INSERT
    once = decide.refused(start, sent, "009", "exists", NOW)
    assert once.state is RecordState.PENDING
    assert once.reclassified
    again, resent = decide.claimed(once, "DE*OBD*E1")
    assert resent.action is ActionType.UPDATE
    dead = decide.refused(again, resent, "009", "missing", NOW)
    assert dead.state is RecordState.DEAD
    assert dead.dead_code == "009"


def test_any_other_refusal_is_dead_with_its_code_and_a_changed_row_is_pending() -> None:
    start, sent = decide.claimed(row(), "DE*OBD*E1")
    assert decide.refused(start, sent, "018", "inconsistent", NOW).dead_code == "018"
    changed = decide.observe(start, desired("b"), 7, NOW)
    assert changed is not None
    assert decide.refused(changed, sent, "018", "inconsistent", NOW).state is RecordState.PENDING


def test_an_unchanged_record_pushes_nothing_and_a_delivered_one_stays_delivered() -> None:
    start, sent = decide.claimed(row(), "DE*OBD*E1")
    delivered = decide.delivered(start, sent, NOW, NOW)
    assert delivered.state is RecordState.DELIVERED
    assert decide.observe(delivered, desired("a"), 9, NOW) == delivered
    back = decide.observe(delivered, desired("b"), 9, NOW)
    assert back is not None
    assert back.state is RecordState.PENDING
    assert decide.wire_action(back) is ActionType.UPDATE


def test_a_withdrawal_of_an_evse_hubject_never_held_needs_no_request() -> None:
    assert decide.observe(None, desired(None), 1, NOW) is None
    never_sent = decide.observe(row(), desired(None), 2, NOW)
    assert never_sent is not None
    assert never_sent.state is RecordState.DELIVERED


def test_a_doubtful_delivered_record_goes_once_more_only_after_its_quiet_period() -> None:
    """``settle_due``/``settle``: a record acknowledged while an earlier attempt may still land is pushed
    once more when its quiet period is over (as an update: Hubject holds a record of it), and never before;
    a row with no doubt, or one already pending, is left alone."""
    doubtful = row(state=RecordState.DELIVERED, held=True, acked_record='{"r":"a"}', acked_hash="hash-a",
                   pending_since=None, unsure=True, unsure_until=NOW + 60)  # fmt: skip
    assert not settle_due(doubtful, NOW + 59)
    assert settle_due(doubtful, NOW + 60)
    settled = decide.settle(doubtful, NOW + 60)
    assert (settled.state, settled.pending_since, settled.unsure) == (RecordState.PENDING, NOW + 60, True)
    assert decide.wire_action(settled) is ActionType.UPDATE
    assert not settle_due(replace(doubtful, unsure=False, unsure_until=None), NOW + 60)
    assert not settle_due(replace(doubtful, state=RecordState.PENDING), NOW + 60)
    with pytest.raises(TransitionError):
        decide.settle(replace(doubtful, state=RecordState.IN_FLIGHT), NOW + 60)


def test_moves_outside_the_outbox_table_are_refused() -> None:
    with pytest.raises(TransitionError):
        decide.claimed(row(state=RecordState.DELIVERED), "DE*OBD*E1")


# --- the property test ----------------------------------------------------------------------------------

CONTENTS = st.sampled_from(["a", "b", "c", None])  # None: withdrawn (REMOVED, unpublished, renamed away)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), CONTENTS),
        st.tuples(st.just("push"), st.sampled_from(["ack", "fail", "landed_unacknowledged"])),
        st.tuples(st.just("603"), st.none()),
    ),
    max_size=40,
)


class Hubject:
    """What the simulated Hubject holds for the EvseID, and its ActionType rules (OICP 2.3 EMP 02)."""

    def __init__(self) -> None:
        self.record: str | None = None

    def apply(self, sent: DataRecord) -> str | None:
        """None if accepted, else the refusal code."""
        if sent.action is ActionType.INSERT and self.record is not None:
            return "009"
        if sent.action is ActionType.UPDATE and self.record is None:
            return "009"
        self.record = None if sent.action is ActionType.DELETE else sent.record
        return None


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_latest_record_wins_deletes_use_the_acknowledged_record_and_status_waits_for_data(
    steps: list[tuple[str, object]],
) -> None:
    hubject = Hubject()
    current: DataRow | None = None
    version = 0
    acked: str | None = None  # the model: the last record Hubject acknowledged (None after a delete)
    latest: str | None = None
    for kind, arg in steps:
        version += 1
        if kind == "observe":
            latest = None if arg is None else desired(str(arg)).record
            current = decide.observe(current, desired(None if arg is None else str(arg)), version, NOW)
        elif kind == "603" and current is not None:
            current = decide.unknown_to_hubject(current, NOW)
            hubject.record = None  # Hubject says it holds no data
            acked = None
        elif kind == "push" and current is not None and current.state is RecordState.PENDING:
            if not decide.claimable(current):
                current = decide.nothing_to_withdraw(current)
                continue
            current, sent = decide.claimed(current, "DE*OBD*E1")
            if sent.action is ActionType.DELETE and acked is not None:
                assert sent.record == acked  # the full record Hubject acknowledged
            if arg == "fail":
                current = decide.released(current, "timeout", NOW, NOW + 60)
            elif arg == "landed_unacknowledged":
                hubject.apply(sent)
                current = decide.released(current, "timeout", NOW, NOW + 60)
            else:
                code = hubject.apply(sent)
                if code is None:
                    current = decide.delivered(current, sent, NOW, NOW)
                    acked = None if sent.action is ActionType.DELETE else sent.record
                else:
                    current = decide.refused(current, sent, code, "refused", NOW)
        if current is not None:
            # the status gate: held exactly when the last acknowledgement was of a record
            assert current.held == (acked is not None)
    # settle: every push goes through (a 009 re-classifies; a dead row is retried as an operator would)
    for _ in range(6):
        if current is None:
            break
        if current.state is RecordState.DEAD:
            current = replace(current, state=RecordState.PENDING, reclassified=False)
        if current.state is not RecordState.PENDING:
            break
        if not decide.claimable(current):
            current = decide.nothing_to_withdraw(current)
            break
        current, sent = decide.claimed(current, "DE*OBD*E1")
        code = hubject.apply(sent)
        if code is None:
            current = decide.delivered(current, sent, NOW, NOW)
        else:
            current = decide.refused(current, sent, code, "refused", NOW)
    if current is None:
        assert hubject.record is None
        return
    assert current.state is RecordState.DELIVERED
    if current.action is Action.UPDATE:
        assert hubject.record == latest  # the latest record wins
    elif not current.unsure:
        assert hubject.record is None or current.held is False
