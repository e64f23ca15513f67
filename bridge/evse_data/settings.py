"""What the EvseDataRecord needs that OCPI does not carry: the ``[evse_data]`` defaults (design §5), their
per-operator overrides (``[operators.evse_data]``) and the operator's hotline.

Every value is validated here, so ``check-config`` names a bad one and the mapping never meets it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.ocpi.v221.models import ParkingType
from oicp.evse_data import (
    HOTLINE_RE,
    LANGUAGE_RE,
    Accessibility,
    AuthenticationMode,
    CalibrationLawDataAvailability,
    DynamicInfoAvailable,
    PaymentOption,
    Plug,
    ValueAddedService,
)
from oicp.ids import OperatorID

# the placeholders station_name_template may use (OCPI Location fields)
TEMPLATE_FIELDS = frozenset({"name", "address", "city", "postal_code", "country", "location_id"})
_PHONE_SEPARATORS = re.compile(r"[\s\-/().]")


class StationIdSource(StrEnum):
    """Where ChargingStationID comes from (design §3.2)."""

    PHYSICAL_REFERENCE = "physical_reference"
    LOCATION_ID = "location_id"
    EVSE_UID = "evse_uid"
    NONE = "none"


class AddressSplit(StrEnum):
    """Whether to take a house number out of OCPI's one-line ``address`` (design [A-11])."""

    AUTO = "auto"
    OFF = "off"


def normalise_hotline(raw: str) -> str:
    """``"+49 (30) 123-456"`` → ``"+4930123456"``; ``00`` → ``+``. Raises ValueError if the result is not
    Hubject's ``^\\+[0-9]{5,15}$`` (EvseDataRecord.yaml HotlinePhoneNumber)."""
    text = _PHONE_SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    if not HOTLINE_RE.fullmatch(text):
        raise ValueError(
            f"hotline_phone_number {raw!r} is not an international number: '+' then 5 to 15 digits "
            "(spaces, '-', '/', '(' and ')' are allowed and removed; a leading 00 counts as '+')"
        )
    return text


Modes = Annotated[tuple[AuthenticationMode, ...], Field(min_length=1)]


class EvseDataSettings(BaseModel):
    """``[evse_data]`` (and, with any subset of the keys, ``[operators.evse_data]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str = "en"
    station_name_template: str = "{address}, {city}"
    renewable_energy: bool = False
    calibration_law: CalibrationLawDataAvailability = CalibrationLawDataAvailability.NOT_AVAILABLE
    authentication_modes: Modes = (AuthenticationMode.NFC_RFID_CLASSIC, AuthenticationMode.REMOTE)
    authentication_modes_extra: tuple[AuthenticationMode, ...] = ()
    rfid_desfire: bool = False
    payment_options: tuple[PaymentOption, ...] = Field(default=(PaymentOption.CONTRACT,), min_length=1)
    value_added_services: tuple[ValueAddedService, ...] = ()
    accessibility: Accessibility = Accessibility.FREE_PUBLICLY_ACCESSIBLE
    accessibility_by_parking_type: dict[ParkingType, Accessibility] = Field(default_factory=dict)
    open_24h_when_unknown: bool = True
    hubject_compatible: bool = True
    hubject_reservation: bool = False
    dynamic_info: DynamicInfoAvailable = DynamicInfoAvailable.TRUE
    time_zone: str | None = None
    charging_station_id_from: StationIdSource = StationIdSource.PHYSICAL_REFERENCE
    address_split: AddressSplit = AddressSplit.AUTO
    hub_operator_id: OperatorID | None = None
    plugs: dict[str, Plug] = Field(default_factory=dict)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not LANGUAGE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a language code such as 'en' or 'de' (ISO 639, lower case)")
        return value

    @field_validator("station_name_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            fields = [
                (name, spec, conv)
                for _, name, spec, conv in string.Formatter().parse(value)
                if name is not None
            ]
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a template: {exc}") from None
        if any(spec or conv for _, spec, conv in fields):  # "{address:999999999}" would build a huge name
            raise ValueError(f"{value!r}: plain placeholders only, without format specs or conversions")
        unknown = {name for name, _, _ in fields} - TEMPLATE_FIELDS
        if unknown:
            allowed = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_FIELDS))
            raise ValueError(f"unknown placeholder {sorted(unknown)} (allowed: {allowed})")
        return value

    @field_validator("payment_options")
    @classmethod
    def _payment(cls, value: tuple[PaymentOption, ...]) -> tuple[PaymentOption, ...]:
        if PaymentOption.NO_PAYMENT in value and len(set(value)) > 1:
            raise ValueError(
                "'No Payment' cannot be combined with other payment options (PaymentOption.yaml)"
            )
        return value

    @field_validator("value_added_services")
    @classmethod
    def _services(cls, value: tuple[ValueAddedService, ...]) -> tuple[ValueAddedService, ...]:
        if ValueAddedService.NONE in value:
            raise ValueError("leave 'None' out: it is sent by itself when no service applies")
        if ValueAddedService.RESERVATION in value:
            raise ValueError(
                "'Reservation' comes from the RESERVABLE capability with hubject_reservation = true"
            )
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin'") from None
        return value

    @field_validator("plugs")
    @classmethod
    def _plugs(cls, value: dict[str, Plug]) -> dict[str, Plug]:
        from bridge.evse_data.tables import PLUGS  # the table imports nothing from here

        unknown = sorted(set(value) - set(PLUGS))
        if unknown:
            raise ValueError(f"{unknown} are not OCPI connector standards (e.g. GBT_DC, IEC_62196_T2)")
        return value

    def overridden_by(self, override: EvseDataSettings | None) -> EvseDataSettings:
        """These defaults with the keys ``override`` set explicitly (``[operators.evse_data]``)."""
        if override is None:
            return self
        changes: dict[str, Any] = {name: getattr(override, name) for name in override.model_fields_set}
        return self.model_copy(update=changes)


@dataclass(frozen=True, slots=True)
class RecordSettings:
    """Everything ``map_evse`` needs besides the OCPI objects, for one operator."""

    hotline_phone_number: str
    data: EvseDataSettings
    # follow the status side: OCPI publish=false ([push] include_unpublished) and PLANNED ([mapping])
    include_unpublished: bool = False
    push_planned: bool = False

    @classmethod
    def of(
        cls,
        hotline_phone_number: str,
        defaults: EvseDataSettings,
        override: EvseDataSettings | None = None,
        *,
        include_unpublished: bool = False,
        push_planned: bool = False,
    ) -> RecordSettings:
        return cls(
            hotline_phone_number=normalise_hotline(hotline_phone_number),
            data=defaults.overridden_by(override),
            include_unpublished=include_unpublished,
            push_planned=push_planned,
        )
