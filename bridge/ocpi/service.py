"""What the OCPI receiver and the sender poller need from the bridge: the Locations it holds and a way to
change them (``bridge.intake.Intake`` implements it; the store's engine holds the tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bridge.ocpi.locations import Document, ObjectPath, WriteResult
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine


class LocationsService(Protocol):
    @property
    def db(self) -> Engine: ...

    async def get_object(self, path: ObjectPath) -> Document | None: ...

    async def resolve_path(self, version: OcpiVersion, path: ObjectPath) -> ObjectPath: ...

    async def put(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult: ...

    async def patch(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult: ...

    async def apply_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> int: ...
