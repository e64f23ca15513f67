"""Issue 11, "Any OCPI party can set or withdraw another operator's statuses": only the parties bound to an
operator (``[[operators]] ocpi_parties``, by default the party named by the OperatorID's two parts,
``DE*OBD`` -> ``DE/OBD``) publish that operator's EVSEs; anything else is not pushed, and counted."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.reliability.core_rig import (
    OPERATOR,
    OTHER_TOKEN,
    Admin,
    Party,
    Sentinel,
    Stamps,
    accepted,
    config_values,
    evse,
    merged,
    metric,
    running_bridge,
    wait_until,
)
from tests.reliability.hubject_standin import HubjectStandIn

X = "DE*OBD*E1001*1"  # published by DE/OBD, the operator's own party
FOREIGN_NEW = "DE*OBD*E6660*1"  # an EvseID with the operator's prefix, published only by DE/XYZ
NOT_PUSHED = "oicp_bridge_observations_not_pushed_total"


async def test_party_not_bound_to_an_operator_cannot_set_or_withdraw_its_statuses(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        owner = Party(http, bridge.receiver_url)
        other = Party(http, bridge.receiver_url, OTHER_TOKEN, "DE", "XYZ")
        admin = Admin(http, bridge.admin_url)
        sentinel = Sentinel(owner, standin, stamps)
        moment = stamps.next()
        await accepted(owner.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await sentinel.barrier()
        assert standin.held(OPERATOR).get(X) == "Available"
        before = metric(await admin.metrics(), NOT_PUSHED)
        # DE/XYZ writes its own Locations (its token allows that), naming DE*OBD's EvseIDs: set, add, withdraw
        moment = stamps.next()
        evses = [evse("B1-1", X, "CHARGING", moment), evse("B1-2", FOREIGN_NEW, "AVAILABLE", moment)]
        await other.put_location("B1", evses, moment)
        await other.patch_evse("B1", "B1-1", "OUTOFORDER", stamps.next())
        await other.patch_evse("B1", "B1-1", "REMOVED", stamps.next())
        await sentinel.barrier()
        held = standin.held(OPERATOR)
        touching = [(p.action, p.records) for p in standin.pushes(OPERATOR) if p.has(X) or p.has(FOREIGN_NEW)]
        foreign = touching[1:]  # after the owner's own first push
        now = held.get(X)
        assert now == "Available", (
            f"DE/XYZ changed DE*OBD's {X}: Hubject holds {now}; pushes since: {foreign}"
        )
        assert FOREIGN_NEW not in held, f"DE/XYZ published {FOREIGN_NEW} for DE*OBD: Hubject holds {held}"
        after = metric(await admin.metrics(), NOT_PUSHED)
        assert after > before, f"{NOT_PUSHED} did not grow ({before} -> {after})"


async def test_party_named_in_ocpi_parties_publishes_for_the_operator(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    values = config_values(tmp_path, standin)
    hub = {"operator_id": OPERATOR, "operator_name": "OBD Charging", "ocpi_parties": ["DE/OBD", "DE/XYZ"]}
    stamps = Stamps()
    async with running_bridge(merged(values, operators=[hub]), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        other = Party(http, bridge.receiver_url, OTHER_TOKEN, "DE", "XYZ")
        moment = stamps.next()
        await accepted(other.put_location("B1", [evse("B1-2", FOREIGN_NEW, "CHARGING", moment)], moment))
        await wait_until(
            lambda: standin.held(OPERATOR).get(FOREIGN_NEW) == "Occupied",
            within=5,
            what=f"DE/XYZ, listed in ocpi_parties, publishes {FOREIGN_NEW}",
            seen=lambda: standin.held(OPERATOR),
        )
        await accepted(other.patch_evse("B1", "B1-2", "REMOVED", stamps.next()))
        await wait_until(
            lambda: FOREIGN_NEW not in standin.held(OPERATOR),
            within=5,
            what=f"DE/XYZ, listed in ocpi_parties, withdraws {FOREIGN_NEW}",
            seen=lambda: standin.held(OPERATOR),
        )
