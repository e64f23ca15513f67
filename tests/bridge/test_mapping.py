"""The status mapping of docs/mapping.md, including every row of the GreenFlux seed note."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.mapping import (
    DEFAULT_TABLE,
    Action,
    Push,
    Skip,
    SkipReason,
    StatusMapper,
    Withdrawal,
    map_ocpp_status,
    normalise_evse_id,
    parse_overrides,
)
from bridge.observation import OcpiEvseStatus
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus
from tests.bridge.conftest import observation

SEED = Path(__file__).resolve().parents[1] / "data" / "seed-greenflux-status-mapping.txt"
MAPPER = StatusMapper([OperatorID("DE*ABC")])

# The bridge's answer where the note's Hubject column is empty (docs/mapping.md, "Default table").
BRIDGE_CHOICE_FOR_EMPTY_CELL: dict[OcpiEvseStatus, EvseStatus | Withdrawal] = {
    OcpiEvseStatus.RESERVED: EvseStatus.RESERVED,
    OcpiEvseStatus.REMOVED: Withdrawal.DELETE,
    OcpiEvseStatus.PLANNED: Withdrawal.SKIP,
    OcpiEvseStatus.BLOCKED: EvseStatus.OCCUPIED,
    OcpiEvseStatus.UNKNOWN: EvseStatus.UNKNOWN,
    OcpiEvseStatus.CHARGING: EvseStatus.OCCUPIED,
}


def seed_rows() -> list[tuple[str, str, str, str]]:
    """The note's "Mapping Status GreenFlux, OCPI and OCPP" table: (GreenFlux, OCPP, OCPI, Hubject)."""
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = lines.index("GreenFlux (in EV Portal) | OCPP | OCPI (EVSE status) | Hubject |") + 2
    rows = []
    for line in lines[start:]:
        if "|" not in line:
            break
        cells = [cell.strip() for cell in line.split("|")][:4]
        rows.append((cells + [""] * 4)[:4])
    return [(a, b, c, d) for a, b, c, d in rows]


def decide_for(ocpi_status: OcpiEvseStatus) -> EvseStatus | Withdrawal:
    decision = MAPPER.decide(observation("1", ocpi_status))
    if isinstance(decision, Push):
        return decision.status if decision.action is Action.UPDATE and decision.status else Withdrawal.DELETE
    return Withdrawal.SKIP


def test_the_seed_table_has_all_sixteen_rows() -> None:
    assert len(seed_rows()) == 16


@pytest.mark.parametrize("row", seed_rows(), ids=lambda row: "/".join(row))
def test_every_row_of_the_seed_note(row: tuple[str, str, str, str]) -> None:
    greenflux, ocpp, ocpi, hubject = row
    ocpi_status: OcpiEvseStatus | None = None
    if ocpi:
        ocpi_status = OcpiEvseStatus(ocpi.upper())
    elif ocpp and ocpp in ("Preparing", "Finishing", "Unknown"):
        ocpi_status = map_ocpp_status(ocpp)
    if ocpp and not ocpp.startswith(("not existing", "*")):
        # the OCPP column maps through OCPI to the same answer as the OCPI column
        through_ocpp = decide_for(map_ocpp_status(ocpp))
        assert ocpi_status is None or through_ocpp == decide_for(ocpi_status)
    if ocpi_status is None:
        # "EvseNotFound" is a Hubject answer, not an input: the bridge never pushes it
        assert greenflux == "EvseNotFound"
        assert all(target is not EvseStatus.EVSE_NOT_FOUND for target in DEFAULT_TABLE.values())
        return
    answer = decide_for(ocpi_status)
    if hubject:
        assert answer == EvseStatus(hubject)
    else:
        assert answer == BRIDGE_CHOICE_FOR_EMPTY_CELL[ocpi_status]


def test_default_table_covers_every_ocpi_status() -> None:
    assert set(DEFAULT_TABLE) == set(OcpiEvseStatus)


@given(st.sampled_from(list(OcpiEvseStatus)), st.sampled_from([*EvseStatus, *Withdrawal]))
def test_an_override_replaces_exactly_its_row(
    status: OcpiEvseStatus, target: EvseStatus | Withdrawal
) -> None:
    mapper = StatusMapper([OperatorID("DE*ABC")], parse_overrides({status.value.lower(): target.value}))
    for other in OcpiEvseStatus:
        assert mapper.table[other] == (target if other is status else DEFAULT_TABLE[other])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"BROKEN": "Available"}, "not an OCPI status"), ({"BLOCKED": "Busy"}, "not one of")],
)
def test_bad_overrides_are_refused_with_the_entry_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_overrides(overrides)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BE-BEC-E041503001", "BE*BEC*E041503001"),
        ("de*abc*e123", "DE*ABC*E123"),
        ("DEABCE123", "DEABCE123"),
        ("+49*810*000*438", "+49*810*000*438"),
        ("  DE*ABC*E1 ", "DE*ABC*E1"),
        ("3256", None),
        ("DE*ABC*123", None),
        ("", None),
        (None, None),
    ],
)
def test_evse_id_normalisation(raw: str | None, expected: str | None) -> None:
    assert normalise_evse_id(raw) == (EvseID(expected) if expected else None)


def test_operator_routing_by_evse_id_prefix() -> None:
    mapper = StatusMapper([OperatorID("DE*ABC"), OperatorID("DEDEF")])
    routed = mapper.decide(observation("DE*DEF*E9", OcpiEvseStatus.AVAILABLE))
    assert isinstance(routed, Push)
    assert routed.operator_id == OperatorID("DEDEF")
    unrouted = mapper.decide(observation("NL*XYZ*E1", OcpiEvseStatus.AVAILABLE))
    assert unrouted == Skip(SkipReason.NO_OPERATOR, EvseID("NL*XYZ*E1"))


def test_evse_without_evse_id_is_not_pushed() -> None:
    assert MAPPER.decide(observation("1", OcpiEvseStatus.AVAILABLE, evse_id=None)) == Skip(
        SkipReason.NO_EVSE_ID
    )
    assert MAPPER.decide(observation("1", OcpiEvseStatus.AVAILABLE, evse_id="3256")) == Skip(
        SkipReason.INVALID_EVSE_ID
    )


def test_unpublished_location_withdraws_unless_configured_to_push() -> None:
    hidden = observation("1", OcpiEvseStatus.AVAILABLE, publish=False)
    assert MAPPER.decide(hidden) == Push(OperatorID("DE*ABC"), EvseID("DE*ABC*E1"), Action.DELETE, None)
    pushing = StatusMapper([OperatorID("DE*ABC")], push_unpublished=True)
    assert pushing.decide(hidden) == Push(
        OperatorID("DE*ABC"), EvseID("DE*ABC*E1"), Action.UPDATE, EvseStatus.AVAILABLE
    )


@given(st.sampled_from(list(OcpiEvseStatus)))
def test_every_decision_follows_the_table(status: OcpiEvseStatus) -> None:
    decision = MAPPER.decide(observation("7", status))
    target = DEFAULT_TABLE[status]
    if isinstance(target, EvseStatus):
        assert decision == Push(OperatorID("DE*ABC"), EvseID("DE*ABC*E7"), Action.UPDATE, target)
    elif target is Withdrawal.DELETE:
        assert decision == Push(OperatorID("DE*ABC"), EvseID("DE*ABC*E7"), Action.DELETE, None)
    else:
        assert isinstance(decision, Skip)
        assert decision.reason is SkipReason.STATUS_SKIPPED


EVSE_IDS = st.sampled_from(
    [
        "DE*ABC*E1",
        "de*abc*e1",
        "DE-ABC-E1",
        "DEABCE1",
        "DE*DEF*E2",
        "NL*XYZ*E3",
        "3256",
        " DE*ABC*E4 ",
        "DE*ABC",
    ]
)


@given(st.lists(st.tuples(EVSE_IDS, st.sampled_from(list(OcpiEvseStatus)), st.booleans()), max_size=30))
def test_a_mapper_that_remembers_evse_ids_decides_as_a_fresh_one(
    seen: list[tuple[str, OcpiEvseStatus, bool]],
) -> None:
    """StatusMapper keeps each evse_id's check; whatever it saw before, it answers as a fresh mapper."""
    remembering = StatusMapper([OperatorID("DE*ABC"), OperatorID("DE*DEF")])
    for evse_id, status, publish in seen:
        change = observation("1", status, publish=publish, evse_id=evse_id)
        fresh = StatusMapper([OperatorID("DE*ABC"), OperatorID("DE*DEF")])
        assert remembering.decide(change) == fresh.decide(change)


def test_the_memory_of_evse_ids_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.mapping.IDS_KEPT", 10)
    mapper = StatusMapper([OperatorID("DE*ABC")])
    for number in range(25):
        decision = mapper.decide(observation(str(number), OcpiEvseStatus.AVAILABLE))
        assert decision == Push(
            OperatorID("DE*ABC"), EvseID(f"DE*ABC*E{number}"), Action.UPDATE, EvseStatus.AVAILABLE
        )
        assert len(mapper._ids) <= 10
