"""Push mode: the simulated CPO calls a Locations *receiver* (the bridge), as a real CPO backend would.

It discovers the receiver's locations endpoint through ``/ocpi/versions`` and the version details (OCPI
version_information_endpoint), PUTs every location (mod_locations, receiver interface, PUT), then PATCHes
EVSE status changes (``{"status", "last_updated"}``: OCPI requires ``last_updated`` in every PATCH).
Optionally it first registers with the receiver through the credentials handshake (``register``).

This client is independent of the bridge's own (``bridge.ocpi.client``) on purpose: a fake that shared
the client's code could not catch the client's mistakes. It reuses only ``auth.token_header``, the one
definition of the header's two encodings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp

from bridge.ocpi.auth import token_header
from bridge.ocpi.cpo_sim.errors import CpoSimError
from bridge.ocpi.cpo_sim.model import CpoFleet, EvseChange, Json
from bridge.ocpi.versions import OcpiVersion


class PushError(CpoSimError):
    """The receiver refused a request, answered something that is not OCPI, or could not be reached."""


authorization = token_header  # ``Token <token>``: base64 under 2.2.1, plain under 2.1.1


class CpoPusher:
    """Pushes a fleet to one receiver over ``session`` (owned by the caller)."""

    def __init__(
        self, fleet: CpoFleet, version: OcpiVersion, session: aiohttp.ClientSession, *, concurrency: int = 16
    ) -> None:
        self.fleet = fleet
        self.version = version
        self.session = session
        self.concurrency = concurrency
        self.token: str | None = None
        self.locations_url: str | None = None
        self.requests = 0

    async def _call(self, method: str, url: str, token: str, body: Json | None = None) -> Any:
        """One OCPI request; the envelope's ``data`` on success (status_code 1xxx), else PushError."""
        headers = {"Authorization": authorization(token, self.version)}
        self.requests += 1
        try:
            async with self.session.request(method, url, json=body, headers=headers) as response:
                text = await response.text()
                try:
                    envelope = await response.json(content_type=None)
                except ValueError:
                    envelope = None
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PushError(f"{method} {url}: {exc!r}") from exc
        code = envelope.get("status_code") if isinstance(envelope, dict) else None
        if status >= 300 or not isinstance(code, int) or not 1000 <= code < 2000:
            raise PushError(f"{method} {url}: HTTP {status}: {text[:300]}")
        return envelope.get("data")

    async def _version_details(self, versions_url: str, token: str) -> list[Json]:
        versions = await self._call("GET", versions_url, token)
        chosen = next(
            (v for v in versions or [] if isinstance(v, dict) and v.get("version") == self.version.value),
            None,
        )
        if chosen is None:
            raise PushError(f"{versions_url} does not offer OCPI {self.version}")
        details = await self._call("GET", str(chosen["url"]), token)
        endpoints = details.get("endpoints") if isinstance(details, dict) else None
        if not isinstance(endpoints, list):
            raise PushError(f"{chosen['url']}: version details without endpoints")
        return [e for e in endpoints if isinstance(e, dict)]

    @staticmethod
    def _endpoint(endpoints: Sequence[Json], identifier: str, role: str) -> str | None:
        for endpoint in endpoints:
            if endpoint.get("identifier") == identifier and endpoint.get("role", role) == role:
                return str(endpoint["url"]).rstrip("/")
        return None

    async def discover(self, versions_url: str, token: str) -> str:
        """Find the receiver's locations endpoint; remember it and the token for later pushes."""
        endpoints = await self._version_details(versions_url, token)
        url = self._endpoint(endpoints, "locations", "RECEIVER")
        if url is None:
            raise PushError(f"{versions_url}: no locations receiver endpoint for OCPI {self.version}")
        self.locations_url, self.token = url, token
        return url

    async def register(
        self, versions_url: str, token_a: str, *, own_versions_url: str, own_token: str
    ) -> str:
        """Credentials handshake: POST our credentials (``own_token``: the receiver's token for calling us)
        with ``token_a``; the receiver answers with the token we use from now on, which is returned."""
        endpoints = await self._version_details(versions_url, token_a)
        url = self._endpoint(endpoints, "credentials", "RECEIVER") or self._endpoint(
            endpoints, "credentials", "SENDER"
        )
        if url is None:
            raise PushError(f"{versions_url}: no credentials endpoint")
        fleet = self.fleet
        business = {"name": fleet.operator_name}
        body: Json
        if self.version is OcpiVersion.V2_1_1:
            body = {
                "token": own_token,
                "url": own_versions_url,
                "business_details": business,
                "party_id": fleet.party_id,
                "country_code": fleet.country_code,
            }
        else:
            role = {
                "role": "CPO",
                "party_id": fleet.party_id,
                "country_code": fleet.country_code,
                "business_details": business,
            }
            body = {"token": own_token, "url": own_versions_url, "roles": [role]}
        answer = await self._call("POST", url, token_a, body)
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise PushError(f"{url}: credentials answer without a token")
        self.token = str(answer["token"])
        return self.token

    def _target(self) -> tuple[str, str]:
        if self.locations_url is None or self.token is None:
            raise PushError("discover() the receiver first")
        fleet = self.fleet
        return f"{self.locations_url}/{fleet.country_code}/{fleet.party_id}", self.token

    async def _bounded(self, calls: Iterable[tuple[str, str, Json]]) -> int:
        token = self._target()[1]
        gate = asyncio.Semaphore(self.concurrency)
        done = 0

        async def one(method: str, url: str, body: Json) -> None:
            nonlocal done
            async with gate:
                await self._call(method, url, token, body)
                done += 1

        async with asyncio.TaskGroup() as group:
            for method, url, body in calls:
                group.create_task(one(method, url, body))
        return done

    async def push_all(self) -> int:
        """PUT every location (with its EVSEs and connectors); returns how many were accepted."""
        base, _ = self._target()
        calls = (
            ("PUT", f"{base}/{loc.id}", self.fleet.location_json(loc, self.version))
            for loc in self.fleet.locations()
        )
        return await self._bounded(calls)

    async def push_changes(self, changes: Sequence[EvseChange]) -> int:
        """PATCH each change's EVSE status; returns how many were accepted."""
        base, _ = self._target()
        calls = (
            ("PATCH", f"{base}/{c.location_id}/{c.evse_uid}", CpoFleet.evse_patch_json(c)) for c in changes
        )
        return await self._bounded(calls)
