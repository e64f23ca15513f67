"""A simulated charge point operator speaking OCPI 2.1.1 / 2.2.1, for tests, the demo and integrators.

``SimulatedCpo`` holds the truth (a seeded fleet of locations and EVSEs whose statuses change with
``step()``), serves it as a Locations sender (``build_sender_app()``, which the bridge polls) and pushes it
to a Locations receiver (``push_all`` / ``push_changes``). The standalone tool is ``oicp-bridge ocpi-sim``.

The simulator keeps its own OCPI client and server code on purpose, apart from the bridge's
(``bridge.ocpi.client``, ``bridge.ocpi.receiver``): a fake that shared the code under test could not catch
its mistakes. It shares only ``bridge.ocpi.auth.token_header``, the header's definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import aiohttp
from aiohttp import web

from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim.errors import CpoSimError
from bridge.ocpi.cpo_sim.model import Clock, CpoFleet, EvseChange, system_clock
from bridge.ocpi.cpo_sim.pusher import CpoPusher, PushError
from bridge.ocpi.cpo_sim.sender import CpoSender, SenderFaults
from bridge.ocpi.versions import OcpiVersion

__all__ = ["CpoFleet", "CpoPusher", "CpoSender", "CpoSimError", "EvseChange", "PushError", "SimulatedCpo"]


class SimulatedCpo:
    """One CPO party: the fleet (truth), its sender app and its pusher. ``await aclose()`` when done."""

    def __init__(
        self,
        seed: int = 0,
        locations: int = 10,
        evses_per_location: int = 2,
        country_code: str = "DE",
        party_id: str = "OBD",
        version: OcpiVersion = OcpiVersion.V2_2_1,
        *,
        operator_id: str | None = None,
        clock: Clock = system_clock,
        tokens: Iterable[str] = (),
        registration_tokens: Iterable[str] = (),
        max_limit: int = 100,
        push_concurrency: int = 16,
    ) -> None:
        self.version = version
        self.fleet = CpoFleet(
            seed=seed,
            locations=locations,
            evses_per_location=evses_per_location,
            country_code=country_code,
            party_id=party_id,
            operator_id=operator_id,
            clock=clock,
        )
        self.sender = CpoSender(
            self.fleet,
            versions=(version,),
            tokens=tokens,
            registration_tokens=registration_tokens,
            max_limit=max_limit,
            clock=clock,
        )
        self._push_concurrency = push_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._pusher: CpoPusher | None = None

    # --- the truth -------------------------------------------------------------------------------

    def current_statuses(self) -> dict[str, OcpiEvseStatus]:
        """Every EVSE's status by evse uid (``LOC1001-1``)."""
        return self.fleet.current_statuses()

    def statuses_by_evse_id(self) -> dict[str, OcpiEvseStatus]:
        """Every EVSE's status by EvseID (``DE*OBD*E1001*1``)."""
        return self.fleet.statuses_by_evse_id()

    def step(self, changes: int | None = None) -> list[EvseChange]:
        return self.fleet.step(changes)

    # --- serve mode ------------------------------------------------------------------------------

    @property
    def faults(self) -> SenderFaults:
        return self.sender.faults

    def build_sender_app(self) -> web.Application:
        return self.sender.app()

    # --- push mode -------------------------------------------------------------------------------

    def pusher(self) -> CpoPusher:
        if self._pusher is None:
            self._session = aiohttp.ClientSession()
            self._pusher = CpoPusher(
                self.fleet, self.version, self._session, concurrency=self._push_concurrency
            )
        return self._pusher

    async def register(
        self, receiver_versions_url: str, token_a: str, *, own_versions_url: str, own_token: str
    ) -> str:
        """Register with the receiver (credentials handshake); returns the token used from now on."""
        return await self.pusher().register(
            receiver_versions_url, token_a, own_versions_url=own_versions_url, own_token=own_token
        )

    async def push_all(self, receiver_versions_url: str, token: str | None = None) -> int:
        """Discover the receiver's locations endpoint and PUT every location. ``token`` defaults to the one
        obtained by ``register``."""
        pusher = self.pusher()
        chosen = token or pusher.token
        if chosen is None:
            raise PushError("push_all needs a token (or register() first)")
        await pusher.discover(receiver_versions_url, chosen)
        return await pusher.push_all()

    async def push_changes(self, changes: Sequence[EvseChange]) -> int:
        """PATCH these changes (from ``step()``) to the receiver found by ``push_all``."""
        return await self.pusher().push_changes(changes)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = self._pusher = None
