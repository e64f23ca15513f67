"""Pydantic models of the OICP messages used for EVSE status exchange.

Field names on the wire are exactly those of Hubject's OpenAPI (``oicp/openapi/cpo-2.3`` and
``emp-2.3``); Python attributes are snake_case with the wire name as alias. Models accept both
forms on input and serialise with aliases (``to_wire``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oicp.codes import CodeInfo, classify
from oicp.ids import EvseID, OperatorID, ProviderID


class ActionType(StrEnum):
    """How Hubject applies a push (OICP 2.3 CPO 02, eRoamingPushEvseStatus, ActionType)."""

    FULL_LOAD = "fullLoad"
    UPDATE = "update"
    INSERT = "insert"
    DELETE = "delete"


class EvseStatus(StrEnum):
    """OICP 2.3 CPO 03, EvseStatusType: all six values."""

    AVAILABLE = "Available"
    RESERVED = "Reserved"
    OCCUPIED = "Occupied"
    OUT_OF_SERVICE = "OutOfService"
    EVSE_NOT_FOUND = "EvseNotFound"
    UNKNOWN = "Unknown"


class OICPModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict Hubject expects: wire names, optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class EvseStatusRecord(OICPModel):
    evse_id: EvseID = Field(alias="EvseID")
    evse_status: EvseStatus = Field(alias="EvseStatus")


class OperatorEvseStatus(OICPModel):
    operator_id: OperatorID = Field(alias="OperatorID")
    operator_name: str | None = Field(default=None, alias="OperatorName", max_length=100)
    evse_status_records: tuple[EvseStatusRecord, ...] = Field(alias="EvseStatusRecord")


class PushEvseStatusRequest(OICPModel):
    """eRoamingPushEvseStatus (CPO OpenAPI schema ``eRoamingPushEvseStatus.yaml``)."""

    action_type: ActionType = Field(alias="ActionType")
    operator_evse_status: OperatorEvseStatus = Field(alias="OperatorEvseStatus")

    @classmethod
    def of(
        cls,
        operator_id: OperatorID,
        action: ActionType,
        records: Iterable[EvseStatusRecord],
        operator_name: str | None = None,
    ) -> PushEvseStatusRequest:
        """The request for one operator's records (validated: IDs, name length)."""
        return cls(
            action_type=action,
            operator_evse_status=OperatorEvseStatus(
                operator_id=operator_id, operator_name=operator_name, evse_status_records=tuple(records)
            ),
        )


class StatusCode(OICPModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    code: str = Field(alias="Code")
    description: str | None = Field(default=None, alias="Description")
    additional_info: str | None = Field(default=None, alias="AdditionalInfo")

    @property
    def info(self) -> CodeInfo:
        return classify(self.code)


class Acknowledgement(OICPModel):
    """eRoamingAcknowledgement (schema file ``eRoamingAcknowledgment.yaml``)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    result: bool = Field(alias="Result")
    status_code: StatusCode = Field(alias="StatusCode")
    session_id: str | None = Field(default=None, alias="SessionID")
    cpo_partner_session_id: str | None = Field(default=None, alias="CPOPartnerSessionID")
    emp_partner_session_id: str | None = Field(default=None, alias="EMPPartnerSessionID")


# --- EMP side: eRoamingPullEvseStatus (EMP OpenAPI, /evsepull/v21/providers/{providerID}/status-records)


class PullEvseStatusRequest(OICPModel):
    """eRoamingPullEVSEStatus: every status the provider may see, optionally one status only."""

    provider_id: ProviderID = Field(alias="ProviderID")
    evse_status: EvseStatus | None = Field(default=None, alias="EVSEStatus")


class PullEvseStatusByIDRequest(OICPModel):
    provider_id: ProviderID = Field(alias="ProviderID")
    evse_ids: tuple[EvseID, ...] = Field(alias="EvseID", max_length=100)


class PullEvseStatusByOperatorIDRequest(OICPModel):
    provider_id: ProviderID = Field(alias="ProviderID")
    operator_ids: tuple[OperatorID, ...] = Field(alias="OperatorID")


class PulledOperatorEvseStatus(OICPModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    operator_id: OperatorID = Field(alias="OperatorID")
    operator_name: str | None = Field(default=None, alias="OperatorName")
    evse_status_records: tuple[EvseStatusRecord, ...] = Field(alias="EvseStatusRecord")


class EvseStatuses(OICPModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    operator_evse_status: tuple[PulledOperatorEvseStatus, ...] = Field(alias="OperatorEvseStatus")


class PullEvseStatusResponse(OICPModel):
    """eRoamingEVSEStatus: the answer to PullEvseStatus and PullEvseStatusByOperatorID."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    evse_statuses: EvseStatuses = Field(alias="EvseStatuses")
    status_code: StatusCode | None = Field(default=None, alias="StatusCode")

    def statuses(self) -> dict[EvseID, EvseStatus]:
        """Every operator's records as one flat map (what the clients' ``pull_evse_status`` returns)."""
        return {
            record.evse_id: record.evse_status
            for block in self.evse_statuses.operator_evse_status
            for record in block.evse_status_records
        }


class EvseStatusRecords(OICPModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    evse_status_records: tuple[EvseStatusRecord, ...] = Field(alias="EvseStatusRecord")


class PullEvseStatusByIDResponse(OICPModel):
    """eRoamingEVSEStatusByID: the answer to PullEvseStatusByID."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    evse_status_records: EvseStatusRecords = Field(alias="EVSEStatusRecords")
    status_code: StatusCode | None = Field(default=None, alias="StatusCode")

    def statuses(self) -> dict[EvseID, EvseStatus]:
        return {record.evse_id: record.evse_status for record in self.evse_status_records.evse_status_records}
