"""The simulator's EVSE data endpoints (OICP 2.3): the CPO push and the EMP pull.

- ``POST /api/oicp/evsepush/v23/operators/{OperatorID}/data-records`` (eRoamingPushEvseData): validated
  against Hubject's OpenAPI (``eRoamingPushEvseData.yaml``, a 400 with code 022 listing the violations as
  for status), then applied with the ActionType semantics of ``evse_data_state.py``; faults are played
  for the operation ``PushEVSEData`` (its own rate-limit window, as the Acceptable Use Policy counts
  each operation separately).
- ``POST /api/oicp/evsepull/v23/providers/{ProviderID}/data-records?page=0&size=20`` (eRoamingPullEvseData):
  the held records as ``eRoamingEVSEData`` pages (EMP 02: default size 20; Release Notes: at most 2000),
  filtered by OperatorIds, CountryCodes and the list/boolean filters, GeoCoordinates written in the
  requested ``GeoCoordinatesResponseFormat``. ``SearchCenter`` and ``LastCall`` are accepted and ignored
  (documented in docs/evse-data.md): the simulator keeps no history to compute deltas from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from oicp.errors import InvalidIDError
from oicp.ids import OperatorID
from oicp.models import ActionType
from oicp.openapi_schemas import Schema, validation_errors

if TYPE_CHECKING:
    from oicp.simulator.app import HubjectSimulator

DATA_PUSH_PATH = "/api/oicp/evsepush/v23/operators/{operator_id}/data-records"
DATA_PULL_PATH = "/api/oicp/evsepull/v23/providers/{provider_id}/data-records"
PUSH_OPERATION = "PushEVSEData"
PULL_OPERATION = "PullEVSEData"
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 20, 2000

# pull filters that compare one record field with a list (or a boolean) in the request
_LIST_FILTERS = {
    "AuthenticationModes": "AuthenticationModes",
    "Accessibility": "Accessibility",
    "CalibrationLawDataAvailability": "CalibrationLawDataAvailability",
}
_BOOL_FILTERS = ("RenewableEnergy", "IsHubjectCompatible", "IsOpen24Hours")


def add_routes(app: web.Application, simulator: HubjectSimulator) -> None:
    endpoints = EvseDataEndpoints(simulator)
    app.router.add_post(DATA_PUSH_PATH, endpoints.push)
    app.router.add_post(DATA_PULL_PATH, endpoints.pull)


class EvseDataEndpoints:
    def __init__(self, simulator: HubjectSimulator) -> None:
        self.simulator = simulator

    async def push(self, request: web.Request) -> web.StreamResponse:
        with self.simulator.push_in_flight("data:" + request.match_info["operator_id"]):
            return await self._push(request)

    async def _push(self, request: web.Request) -> web.StreamResponse:
        from oicp.simulator.app import _read_json, acknowledgement  # app imports this module

        sim = self.simulator
        path_operator = request.match_info["operator_id"]
        entry = sim._log(request, "data-push", operator_id=path_operator)
        body, errors = await _read_json(request)
        entry.body = body
        if isinstance(body, dict):
            entry.action_type = body.get("ActionType")
        fault_response = await sim._apply_fault(request, entry, PUSH_OPERATION)
        if fault_response is not None:
            return fault_response
        if not errors:
            errors = validation_errors(Schema.PUSH_EVSE_DATA, body)
        try:
            operator_id = OperatorID(path_operator)
        except InvalidIDError as exc:
            errors.append(f"(path) operatorID: {exc}")
        if errors:
            ack = acknowledgement(False, "022", "Data error.", "; ".join(errors)[:1000])
            return sim._answer(entry, ack.to_wire(), status=400, result_code="022")
        data = body["OperatorEvseData"]
        if OperatorID(data["OperatorID"]).canonical_key != operator_id.canonical_key:
            ack = acknowledgement(
                False,
                "022",
                "Data error.",
                f"OperatorID {data['OperatorID']} in the body differs from the path",
            )
            return sim._answer(entry, ack.to_wire(), result_code="022")
        async with sim._lock:
            outcome = sim.evse_data.apply_push(
                OperatorID(data["OperatorID"]),
                data["OperatorName"],
                ActionType(body["ActionType"]),
                data["EvseDataRecord"],
            )
        ack = acknowledgement(outcome.accepted, outcome.code, outcome.description, outcome.additional_info)
        return sim._answer(entry, ack.to_wire(), result_code=outcome.code)

    async def pull(self, request: web.Request) -> web.StreamResponse:
        from oicp.simulator.app import _read_json, acknowledgement

        sim = self.simulator
        entry = sim._log(request, "data-pull", provider_id=request.match_info["provider_id"])
        body, errors = await _read_json(request)
        entry.body = body
        fault_response = await sim._apply_fault(request, entry, PULL_OPERATION)
        if fault_response is not None:
            return fault_response
        if not errors:
            errors = validation_errors(Schema.PULL_EVSE_DATA, body)
        page, size = (
            _int_query(request, "page", 0, errors),
            _int_query(request, "size", PAGE_SIZE_DEFAULT, errors),
        )
        if size is not None and not 1 <= size <= PAGE_SIZE_MAX:
            errors.append(f"(query) size: {size} is not within 1..{PAGE_SIZE_MAX}")
        if page is not None and page < 0:
            errors.append(f"(query) page: {page} is negative")
        if errors or page is None or size is None:
            ack = acknowledgement(False, "022", "Data error.", "; ".join(errors)[:1000])
            return sim._answer(entry, ack.to_wire(), status=400, result_code="022")
        return sim._answer(entry, pull_page(sim, body, page, size), result_code="000")


def _int_query(request: web.Request, name: str, default: int, errors: list[str]) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        errors.append(f"(query) {name}: {raw!r} is not an integer")
        return None


def _matches(record: dict[str, Any], body: dict[str, Any]) -> bool:
    countries = body.get("CountryCodes")
    if countries and record["Address"]["Country"] not in countries:
        return False
    for request_key, record_key in _LIST_FILTERS.items():
        wanted = body.get(request_key)
        if wanted:
            held = record[record_key]
            values = held if isinstance(held, list) else [held]
            if not set(values) & set(wanted):
                return False
    return all(body.get(key) is None or record[key] == body[key] for key in _BOOL_FILTERS)


def pull_page(sim: HubjectSimulator, body: dict[str, Any], page: int, size: int) -> dict[str, Any]:
    """One ``eRoamingEVSEData`` page of the records the pull asks for (sorted by EvseID: pages are stable)."""
    wanted = {OperatorID(o).canonical_key for o in body.get("OperatorIds") or ()}
    selected: list[dict[str, Any]] = []
    for operator_id, name in sim.evse_data.operators():
        if wanted and operator_id.canonical_key not in wanted:
            continue
        for _, record in sorted(sim.evse_data.records(operator_id).items()):
            if _matches(record, body):
                shown = {**record, "OperatorID": str(operator_id), "OperatorName": name}
                shown["GeoCoordinates"] = geo_as(
                    record["GeoCoordinates"], body["GeoCoordinatesResponseFormat"]
                )
                selected.append(shown)
    content = selected[page * size : (page + 1) * size]
    total_pages = max(1, math.ceil(len(selected) / size))
    return {
        "content": content,
        "number": page,
        "size": size,
        "totalElements": len(selected),
        "totalPages": total_pages,
        "first": page == 0,
        "last": page >= total_pages - 1,
        "numberOfElements": len(content),
        "StatusCode": {"Code": "000", "Description": "Success"},
    }


def _latitude_longitude(geo: dict[str, Any]) -> tuple[float, float] | None:
    if "DecimalDegree" in geo:
        point = geo["DecimalDegree"]
        return float(point["Latitude"]), float(point["Longitude"])
    if "Google" in geo:
        latitude, longitude = geo["Google"]["Coordinates"].replace(",", " ").split()
        return float(latitude), float(longitude)
    return None


def _dms(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return f"{sign}{degrees}°{minutes}'{seconds:.2f}''"


def geo_as(geo: dict[str, Any], response_format: str) -> dict[str, Any]:
    """The coordinates in the format an EMP asked for (``GeoCoordinatesResponseFormat``); as stored if
    they cannot be converted (DegreeMinuteSeconds input)."""
    point = _latitude_longitude(geo)
    if point is None or response_format in geo:
        return {response_format: geo[response_format]} if response_format in geo else geo
    latitude, longitude = point
    if response_format == "Google":
        return {"Google": {"Coordinates": f"{latitude:.6f} {longitude:.6f}"}}
    if response_format == "DegreeMinuteSeconds":
        return {"DegreeMinuteSeconds": {"Latitude": _dms(latitude), "Longitude": _dms(longitude)}}
    return {"DecimalDegree": {"Latitude": f"{latitude:.6f}", "Longitude": f"{longitude:.6f}"}}
