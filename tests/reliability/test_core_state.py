"""Issue 11, "State diverges for good" and "at start, decisions are recomputed": for each EvseID Hubject
must hold the mapping of the newest accepted OCPI state of the one EVSE that owns it, whatever the order
the CPO's PUTs and PATCHes arrived in. Over real HTTP: an OCPI party -> the bridge -> the Hubject stand-in.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.core_rig import (
    OPERATOR,
    Admin,
    Party,
    Sentinel,
    Stamps,
    accepted,
    config_values,
    evse,
    merged,
    running_bridge,
    wait_until,
)
from tests.reliability.hubject_standin import HubjectStandIn

X = "DE*OBD*E1001*1"


async def hubject_holds(standin: HubjectStandIn, evse_id: str, status: str, *, within: float = 5.0) -> None:
    await wait_until(
        lambda: standin.held(OPERATOR).get(evse_id) == status,
        within=within,
        what=f"Hubject holds {evse_id} as {status}",
        seen=lambda: f"Hubject holds {evse_id} as {standin.held(OPERATOR).get(evse_id)}",
    )


def invalid(reply: object) -> bool:
    """OCPI 2001 Invalid or missing parameters (status_codes.asciidoc); the HTTP status is 200 per
    docs/ocpi.md ("a valid-JSON request MUST NOT get an HTTP error") or 400."""
    return getattr(reply, "status_code", None) == 2001 and getattr(reply, "http_status", None) in (200, 400)


async def test_location_put_with_an_older_evse_status_than_a_patch_is_what_hubject_holds(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    stamps = Stamps()
    t0, t1, t2, t3 = (stamps.next() for _ in range(4))
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", t0)], t0))
        await hubject_holds(standin, X, "Available")
        await accepted(cpo.patch_evse("L1", "L1-1", "CHARGING", t2))
        await hubject_holds(standin, X, "Occupied")
        # The whole Location again, newer than anything stored, carrying the EVSE as it was at t1 (between
        # the PUT and the PATCH): the Location replaces the stored one, EVSE and all (mod_locations PUT).
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", t1)], t3))
        got = await cpo.get("L1", "L1-1")
        assert got.data["status"] == "AVAILABLE", got
        await hubject_holds(standin, X, "Available")


@pytest.mark.parametrize("withdrawal", ["old uid REMOVED", "old Location re-PUT without it"])
async def test_evse_moved_to_another_location_keeps_its_evse_id_on_hubject(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession, withdrawal: str
) -> None:
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        sentinel = Sentinel(cpo, standin, stamps)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await hubject_holds(standin, X, "Available")
        moment = stamps.next()  # the EVSE now belongs to Location L2, under a new uid
        await accepted(cpo.put_location("L2", [evse("L2-1", X, "CHARGING", moment)], moment))
        await hubject_holds(standin, X, "Occupied")
        moment = stamps.next()
        if withdrawal == "old uid REMOVED":
            await accepted(cpo.patch_evse("L1", "L1-1", "REMOVED", moment))
        else:
            await accepted(cpo.put_location("L1", [], moment))
        await sentinel.barrier()
        held = standin.held(OPERATOR).get(X)
        assert held == "Occupied", (
            f"the old uid's withdrawal reached Hubject although L2-1 holds {X}: "
            f"Hubject holds {held}; deletes sent: "
            f"{[p.evse_ids for p in standin.pushes(OPERATOR, action='delete')]}"
        )


async def test_patch_dated_ten_years_ahead_is_refused_and_later_changes_go_through(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await hubject_holds(standin, X, "Available")
        future = stamps.next() + timedelta(days=3653)
        reply = await cpo.patch_evse("L1", "L1-1", "CHARGING", future)
        assert invalid(reply), f"a PATCH dated ten years ahead was not refused with OCPI 2001: {reply}"
        # What follows, dated now, is the CPO's newest word and must be taken
        await accepted(cpo.patch_evse("L1", "L1-1", "OUTOFORDER", stamps.next()))
        await hubject_holds(standin, X, "OutOfService")
        moment = stamps.next()
        reply = await accepted(cpo.put_location("L1", [evse("L1-1", X, "RESERVED", moment)], moment))
        assert reply.message is None or "older" not in reply.message, reply
        await hubject_holds(standin, X, "Reserved")
        assert (await cpo.get("L1", "L1-1")).data["status"] == "RESERVED"


async def test_renamed_evse_withdraws_its_old_evse_id_and_fullload_leaves_it_out(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    old, new = "DE*OBD*E1001*1", "DE*OBD*E1001*9"
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", old, "AVAILABLE", moment)], moment))
        await hubject_holds(standin, old, "Available")
        moment = stamps.next()  # same uid, new evse_id
        await accepted(cpo.put_location("L1", [evse("L1-1", new, "CHARGING", moment)], moment))
        await hubject_holds(standin, new, "Occupied")
        await wait_until(
            lambda: old not in standin.held(OPERATOR),
            within=5,
            what=f"the renamed EVSE's old EvseID {old} is withdrawn from Hubject",
            seen=lambda: f"Hubject holds {standin.held(OPERATOR)}",
        )
        status, body = await Admin(http, bridge.admin_url).resync()
        assert status == 200, body
        fullloads = standin.pushes(OPERATOR, action="fullLoad")
        assert fullloads, "POST /resync sent no fullLoad"
        assert old not in fullloads[-1].evse_ids, (
            f"the fullLoad re-sent the old EvseID: {fullloads[-1].records}"
        )
        assert new in fullloads[-1].evse_ids
        assert old not in standin.held(OPERATOR)


@pytest.mark.parametrize("duplicate", ["one uid twice", "one EvseID on two EVSEs"])
async def test_location_with_a_duplicate_evse_is_refused_and_changes_nothing(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession, duplicate: str
) -> None:
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        sentinel = Sentinel(cpo, standin, stamps)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await hubject_holds(standin, X, "Available")
        moment = stamps.next()
        if duplicate == "one uid twice":
            evses = [evse("L1-1", X, "CHARGING", moment), evse("L1-1", X, "OUTOFORDER", moment)]
        else:
            evses = [evse("L1-1", X, "CHARGING", moment), evse("L1-2", X, "OUTOFORDER", moment)]
        reply = await cpo.put_location("L1", evses, moment)
        assert invalid(reply), f"a Location with {duplicate} was not refused with OCPI 2001: {reply}"
        stored = (await cpo.get("L1")).data
        assert [(e["uid"], e["status"]) for e in stored["evses"]] == [("L1-1", "AVAILABLE")], stored
        await sentinel.barrier()
        assert standin.held(OPERATOR).get(X) == "Available", standin.held(OPERATOR)


async def test_evses_seen_before_their_operator_was_configured_reach_hubject_after_a_restart(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    late = "DE*NEW"
    values = config_values(tmp_path, standin)
    tokens = [
        *values["ocpi"]["receiver"]["tokens"],
        {"token": "core-rig-token-new", "country_code": "DE", "party_id": "NEW"},
    ]
    values = merged(values, ocpi={"receiver": {**values["ocpi"]["receiver"], "tokens": tokens}})
    stamps = Stamps()
    moment = stamps.next()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url, "core-rig-token-new", "DE", "NEW")
        evses = [
            evse("N1-1", "DE*NEW*E1*1", "AVAILABLE", moment),
            evse("N1-2", "DE*NEW*E1*2", "CHARGING", moment),
        ]
        await accepted(cpo.put_location("N1", evses, moment))
    assert standin.held(late) == {}  # DE*NEW was not configured: nothing pushed
    with_operator = merged(values, operators=[*values["operators"], {"operator_id": late}])
    async with running_bridge(with_operator, initial_resync=False):
        # no new OCPI input: the EVSEs the bridge already holds are decided again for the new operator
        await wait_until(
            lambda: standin.held(late) == {"DE*NEW*E1*1": "Available", "DE*NEW*E1*2": "Occupied"},
            within=5,
            what="the EVSEs stored before DE*NEW was configured reach Hubject after the restart",
            seen=lambda: f"Hubject holds {standin.held(late)} for DE*NEW",
        )


async def test_a_mapping_change_is_applied_to_stored_evses_at_restart(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    values = config_values(tmp_path, standin)
    stamps = Stamps()
    moment = stamps.next()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "BLOCKED", moment)], moment))
        await hubject_holds(standin, X, "Occupied")  # BLOCKED -> Occupied by default (docs/mapping.md)
    async with running_bridge(merged(values, mapping={"BLOCKED": "OutOfService"}), initial_resync=False):
        await hubject_holds(standin, X, "OutOfService")
