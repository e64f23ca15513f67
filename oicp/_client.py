"""What every OICP transport (REST 2.3, SOAP 2.2) offers, and the settings they share.

``EvseStatusClient`` is the interface the bridge codes against; ``oicp.RestClient`` and
``oicp.SoapClient`` implement it with the same models, errors and retry policy (both compose the one
HTTP core, ``oicp._http.HubjectSession``). ``EvseDataClient`` (EVSE data) is REST only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import Acknowledgement, ActionType, EvseStatus, EvseStatusRecord

QA_URL = "https://service-qa.hubject.com/api/oicp"
PRODUCTION_URL = "https://service.hubject.com/api/oicp"


class ClientSettings(BaseModel):
    """Connection settings shared by the REST and SOAP clients. Defaults to Hubject QA."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt key is an error, not a default

    url: str = QA_URL
    client_cert: Path | None = None
    client_key: Path | None = None
    key_password: SecretStr | None = None
    ca_cert: Path | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=30.0, gt=0, description="read timeout for one request, seconds")
    max_calls_per_minute: int = Field(default=2000, gt=0)  # PushEVSEStatus (Acceptable Use Policy)
    max_data_calls_per_minute: int = Field(default=375, gt=0)  # PushEVSEData (Acceptable Use Policy)
    max_retry_interval: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_budget: float = Field(default=300.0, gt=0, description="seconds one call may spend retrying")


@dataclass(frozen=True, slots=True)
class PushResult:
    """A push Hubject accepted (Result true)."""

    acknowledgement: Acknowledgement
    process_id: str | None
    attempts: int


class EvseStatusClient(Protocol):
    """Push EVSE status as a CPO; pull it back as an EMP (for tools and tests)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def push_evse_status(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Send one eRoamingPushEvseStatus, retrying per the policy; raise an ``oicp.errors`` type."""
        ...

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """The same push with records read page by page (``pages()`` once per attempt); for fullLoads of
        any size in bounded memory."""
        ...

    async def pull_evse_status(
        self,
        provider_id: ProviderID,
        *,
        operator_ids: Sequence[OperatorID] | None = None,
        evse_ids: Sequence[EvseID] | None = None,
    ) -> dict[EvseID, EvseStatus]:
        """eRoamingPullEvseStatus (or ByOperatorID / ByID): what Hubject holds, as a flat map."""
        ...


class WireRecord(Protocol):
    """A record that writes itself in Hubject's wire names: ``oicp.evse_data.EvseDataRecord``. (The client
    does not import that module: its validation needs the OpenAPI extras, PyYAML and jsonschema.)"""

    def to_wire(self) -> dict[str, Any]: ...


class EvseDataClient(Protocol):
    """Push EVSE data as a CPO (OICP 2.3 REST eRoamingPushEvseData; the SOAP client does not offer it)."""

    async def push_evse_data(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[WireRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Send one eRoamingPushEvseData, retrying per the policy; raise an ``oicp.errors`` type. Never in
        parallel with another data push of the same client (OICP 2.3 CPO 01)."""
        ...

    async def push_evse_data_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[str]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """The same push with the records as wire JSON texts (``EvseDataRecord.canonical_json()``) read page
        by page (``pages()`` once per attempt): a data fullLoad of any size in bounded memory."""
        ...
