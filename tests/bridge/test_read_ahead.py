"""Reads made ahead (``Engine.write_reading``): on PostgreSQL a write group sends the status fast path's reads
of all its PATCHes at its start, before any of the group's writes ran. Whatever the group holds — the same
EVSE twice, EVSEs of one Location, two EVSEs holding one EvseID, stale PATCHes, PUTs and general PATCHes
between, PATCHes of unknown EVSEs (which fail, and send the group through its run in savepoints) — the
writes made together in one group must leave exactly what they leave made one by one, each in a group of
its own: the same answers, Location documents, EVSE rows, outbox rows and not-pushed notes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.intake import Intake
from bridge.ocpi.errors import OcpiError
from bridge.ocpi.locations import ObjectPath
from bridge.ocpi.store import OcpiStore, WriteResult
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine
from bridge.store.outbox import COLUMNS
from bridge.store.port import GroupChanges, ReadAhead, Tx
from tests.bridge.conftest import make_intake
from tests.engines import build_engine

V = OcpiVersion.V2_2_1
PARTY = ("DE", "ABC")
T0 = datetime(2025, 3, 1, tzinfo=UTC)
STATUSES = ["AVAILABLE", "CHARGING", "OUTOFORDER", "BLOCKED", "REMOVED", "PLANNED"]
# L1/U1 and L2/U1 hold one EvseID; the others one each (so a group may touch an EvseID through two EVSEs)
EVSES = {
    ("L1", "U1"): "DE*ABC*E1", ("L1", "U2"): "DE*ABC*E2", ("L1", "U3"): "DE*ABC*E3",
    ("L2", "U1"): "DE*ABC*E1", ("L2", "U2"): "DE*ABC*E4",
}  # fmt: skip
# outbox columns that hold the wall-clock time of the run, not a decision (the version is compared: the
# same writes in the same order take the same values of the sequence, together or one by one)
CLOCK_COLUMNS = {"pending_since", "unsure_until", "dead_at", "delivered_at"}


def stamp(second: int) -> str:
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def location(location_id: str, statuses: dict[str, str], second: int) -> dict[str, Any]:
    connector = {
        "id": "1", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
        "max_voltage": 230, "max_amperage": 16, "last_updated": stamp(second),
    }  # fmt: skip
    return {
        "country_code": PARTY[0], "party_id": PARTY[1], "id": location_id, "publish": True,
        "address": "Street 1", "city": "City", "country": "DEU",
        "coordinates": {"latitude": "50.00000", "longitude": "8.00000"}, "time_zone": "Europe/Berlin",
        "evses": [
            {"uid": uid, "evse_id": EVSES[(location_id, uid)], "status": status, "connectors": [connector],
             "last_updated": stamp(second)}
            for uid, status in statuses.items()
        ],
        "last_updated": stamp(second),
    }  # fmt: skip


class CountingStore(OcpiStore):
    """The store as shipped, counting the status PATCHes handed a read made ahead."""

    handed = 0

    def _patch_evse_status(self, *args: Any, **kwargs: Any) -> WriteResult | None:
        ahead: ReadAhead | None = kwargs.get("ahead", args[5] if len(args) > 5 else None)
        CountingStore.handed += ahead is not None
        return super()._patch_evse_status(*args, **kwargs)


# mostly status PATCHes (the fast path), of known EVSEs and now and then of an unknown one (U9); seconds
# close together, so that PATCHes of one EVSE often arrive out of order (the later one stale)
status_patch = st.tuples(
    st.just("status"), st.sampled_from([*EVSES, *EVSES, ("L1", "U9")]), st.sampled_from(STATUSES),
    st.integers(-2, 12),
)  # fmt: skip
operation = st.one_of(
    status_patch, status_patch, status_patch, status_patch, status_patch,
    # a PATCH the general path takes (another field too), and a PUT of a whole Location
    st.tuples(st.just("general"), st.sampled_from(list(EVSES)), st.sampled_from(STATUSES),
              st.integers(-2, 12)),
    st.tuples(st.just("put"), st.sampled_from([("L1", ""), ("L2", "")]), st.sampled_from(STATUSES),
              st.integers(-2, 12)),
)  # fmt: skip


async def apply(intake: Intake, step: tuple[str, tuple[str, str], str, int]) -> Any:
    kind, (location_id, uid), status, second = step
    try:
        if kind == "put":
            uids = [u for (loc, u) in EVSES if loc == location_id]
            body = location(location_id, dict.fromkeys(uids, status), second)
            result = await intake.put(V, ObjectPath(*PARTY, location_id), body)
        else:
            patch: dict[str, Any] = {"status": status, "last_updated": stamp(second)}
            if kind == "general":
                patch["floor_level"] = str(second % 7)
            result = await intake.patch(V, ObjectPath(*PARTY, location_id, uid), patch)
    except OcpiError as exc:
        return ("refused", type(exc).__name__)
    return (
        result.outcome,
        [(t.state.evse_uid, t.state.status, t.state.last_updated) for t in result.touched],
    )


async def stored(db: Engine, intake: Intake) -> Any:
    documents = [await intake.ocpi.get_location(*PARTY, location_id) for location_id in ("L1", "L2")]
    kept = [c for c in COLUMNS if c not in CLOCK_COLUMNS]

    def read(tx: Tx) -> Any:
        evses = [tuple(r) for r in tx.execute("SELECT * FROM ocpi_evse ORDER BY location_id, evse_uid")]
        outbox = [
            tuple(r) for r in tx.execute(f"SELECT evse_id, {', '.join(kept)} FROM outbox ORDER BY evse_id")
        ]
        notes = [
            tuple(r)
            for r in tx.execute("SELECT source, evse_id, ocpi_status, reason FROM not_pushed ORDER BY source")
        ]
        return evses, outbox, notes

    return documents, await db.read(read)


async def run(url: str, steps: list[Any], *, together: bool) -> tuple[Any, Any, int]:
    db = build_engine(url)
    await db.open()
    try:
        intake = make_intake(db)
        intake = Intake(db, CountingStore(db), intake.outbox, intake.decider)
        for location_id in ("L1", "L2"):
            uids = [u for (loc, u) in EVSES if loc == location_id]
            await intake.put(
                V, ObjectPath(*PARTY, location_id), location(location_id, dict.fromkeys(uids, "AVAILABLE"), 0)
            )
        commits = db.commits
        if together:
            answers = await asyncio.gather(*(apply(intake, step) for step in steps))
        else:
            answers = [await apply(intake, step) for step in steps]
        return answers, await stored(db, intake), db.commits - commits
    finally:
        await db.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=2, max_size=16))
# each kind of conflict once for sure: a sibling moved the Location's last_updated past the second PATCH;
# the same EVSE, the second PATCH stale; the EvseID's outbox row changed through the other EVSE holding it
@example([("status", ("L1", "U1"), "CHARGING", 5), ("status", ("L1", "U2"), "BLOCKED", 3)])
@example([("status", ("L1", "U1"), "AVAILABLE", 2), ("status", ("L1", "U1"), "CHARGING", 1)])
@example([("status", ("L1", "U1"), "CHARGING", 5), ("status", ("L2", "U1"), "AVAILABLE", 6)])
async def test_writes_made_together_leave_what_they_leave_one_by_one(
    emptied_engine_url: Callable[[], str], steps: list[Any]
) -> None:
    one_by_one = await run(emptied_engine_url(), steps, together=False)
    together = await run(emptied_engine_url(), steps, together=True)
    assert together[0] == one_by_one[0]
    assert together[1] == one_by_one[1]


async def test_a_group_of_conflicting_status_patches_uses_its_reads_made_ahead(
    new_engine_url: Callable[[], str],
) -> None:
    """A fixed group (so the property is known not to be vacuous on PostgreSQL): the same EVSE twice, two
    EVSEs of one Location, two EVSEs holding one EvseID, a stale PATCH, then a general PATCH after which no
    read made ahead holds."""
    steps = [
        ("status", ("L1", "U1"), "CHARGING", 5),
        ("status", ("L1", "U2"), "CHARGING", 6),  # same Location as the first: its last_updated moved
        ("status", ("L1", "U1"), "BLOCKED", 7),  # same EVSE as the first
        ("status", ("L2", "U1"), "OUTOFORDER", 8),  # same EvseID as L1/U1
        ("status", ("L2", "U2"), "CHARGING", 2),
        ("status", ("L1", "U3"), "CHARGING", -1),  # stale
        ("general", ("L1", "U3"), "AVAILABLE", 9),
        ("status", ("L2", "U2"), "AVAILABLE", 10),
    ]
    first, second = new_engine_url(), new_engine_url()
    CountingStore.handed = 0
    one_by_one = await run(first, steps, together=False)
    handed_alone = CountingStore.handed
    CountingStore.handed = 0
    together = await run(second, steps, together=True)
    assert together[0] == one_by_one[0]
    assert together[1] == one_by_one[1]
    on_postgresql = first.startswith("postgresql")
    assert handed_alone == (7 if on_postgresql else 0)  # each in a group of its own
    if on_postgresql:
        assert together[2] == 1  # one group
        # the seven status PATCHes before the general one get reads made ahead; the one after it gets none
        assert CountingStore.handed == 6


async def test_a_status_patch_that_takes_the_general_path_leaves_no_read_ahead_holding(
    new_engine_url: Callable[[], str],
) -> None:
    """The fast path gives way to the general path (here: an EVSE the Location does not have), which may
    rewrite the whole Location: every later write of the group must read again."""
    db = build_engine(new_engine_url())
    await db.open()
    intake = make_intake(db)
    store = intake.ocpi
    path = ObjectPath(*PARTY, "L1", "U7")
    try:
        await intake.put(V, ObjectPath(*PARTY, "L1"), location("L1", {"U1": "AVAILABLE"}, 0))

        def write(tx: Tx) -> tuple[bool, bool]:
            ahead = ReadAhead(tx.execute(*store.status_read(path)), GroupChanges())
            try:
                store.patch_in(tx, V, path, {"status": "CHARGING", "last_updated": stamp(1)}, T0, ahead)
            except OcpiError:
                return True, ahead.changes.everything
            return False, ahead.changes.everything

        refused, everything = await db.write(write)
    finally:
        await db.close()
    assert refused
    assert everything
