"""The Hubject simulator as an aiohttp application: OICP push and pull over REST under ``/api/oicp``.

It validates every request against Hubject's OpenAPI (``oicp.openapi_schemas``), applies pushes with
the ActionType semantics of ``state.py``, answers pulls from the same state, injects the faults of
``faults.py``, and logs every request. Answers (documented in docs/oicp-simulator.md):

- a valid push: HTTP 200 eRoamingAcknowledgement, Result true, code 000;
- a body that is not JSON, or breaks the OpenAPI schema: HTTP 400 with an Acknowledgement Result false,
  code 022 "Data error", the schema violations in AdditionalInfo;
- a push for EvseIDs without EVSE data (when ``known_evse_ids`` is set): HTTP 200, Result false, 603;
- rate limit exceeded: HTTP 429 with ``Retry-After`` (seconds until the window frees, at least 1);
- every answer carries a ``Process-ID`` header, as Hubject's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from oicp.errors import InvalidIDError
from oicp.ids import EvseID, OperatorID
from oicp.models import (
    Acknowledgement,
    EvseStatus,
    PushEvseStatusRequest,
    StatusCode,
)
from oicp.openapi_schemas import Schema, pull_request_schema, validation_errors
from oicp.simulator import evse_data
from oicp.simulator.evse_data_state import EvseDataState, missing_data
from oicp.simulator.faults import FaultDecider, FaultKind, Faults
from oicp.simulator.state import SimulatorState

API_PREFIX = "/api/oicp"
PUSH_PATH = API_PREFIX + "/evsepush/v21/operators/{operator_id}/status-records"
PULL_PATH = API_PREFIX + "/evsepull/v21/providers/{provider_id}/status-records"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The largest request body the simulator reads. OICP documents no limit; an EVSE data fullLoad is one request
# for the operator's whole set, ~0.8 kB a record, so 100 000 EVSEs are ~83 MB (the status fullLoad of the
# same set ~6 MB). Bounded all the same: the simulator holds a body in memory to validate it.
MAX_BODY_BYTES = 256 * 1024 * 1024


@dataclass
class LoggedRequest:
    """One request as the simulator saw it, and how it answered."""

    method: str
    path: str
    operation: str
    received_at: float
    operator_id: str | None = None
    provider_id: str | None = None
    action_type: str | None = None
    body: Any = None
    http_status: int | None = None
    result_code: str | None = None
    fault: FaultKind | None = None
    process_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_cert_subject: str | None = None


def acknowledgement(
    result: bool, code: str, description: str, additional_info: str | None = None
) -> Acknowledgement:
    return Acknowledgement(
        result=result,
        status_code=StatusCode(code=code, description=description, additional_info=additional_info),
    )


class HubjectSimulator:
    """A faithful stand-in for Hubject QA's EVSE status service (push as CPO, pull as EMP)."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        known_evse_ids: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        require_evse_data: bool = False,
    ) -> None:
        self.faults = faults if faults is not None else Faults()
        self.state = SimulatorState(
            known_evse_ids=None if known_evse_ids is None else frozenset(EvseID(e) for e in known_evse_ids)
        )
        self.evse_data = EvseDataState()  # evse_data.py: the data push and pull endpoints
        if require_evse_data:
            self.state.status_precheck = functools.partial(missing_data, self.evse_data)
        self.request_log: list[LoggedRequest] = []
        self._clock = clock
        self._decider = FaultDecider(self.faults)
        self._closing = asyncio.Event()
        # serialises state changes: Hubject applies one push after the other per operator
        self._lock = asyncio.Lock()
        # OICP 2.3 CPO 01: pushes of one operation MUST be sequential. The simulator records how many
        # were ever in flight at once, per operator and overall, so tests can check a client.
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.max_in_flight_overall = 0

    # --- reading the state (tests, the control endpoint, the SOAP front end) -----------------

    def statuses(self, operator_id: OperatorID | str) -> dict[EvseID, EvseStatus]:
        return self.state.statuses(operator_id)

    def all_statuses(self) -> dict[EvseID, EvseStatus]:
        return self.state.all_statuses()

    def push_count(self, operator_id: OperatorID | str | None = None) -> int:
        pushes = [entry for entry in self.request_log if entry.operation == "push"]
        if operator_id is None:
            return len(pushes)
        key = OperatorID(operator_id).canonical_key
        return sum(1 for entry in pushes if (entry.operator_id or "").replace("*", "") == key)

    # --- transport-independent entry points -----------------------------------------------------

    def handle_push(self, path_operator_id: str, request: PushEvseStatusRequest) -> Acknowledgement:
        """Apply a schema-valid push; what Hubject would acknowledge."""
        status = request.operator_evse_status
        if OperatorID(path_operator_id).canonical_key != status.operator_id.canonical_key:
            return acknowledgement(
                False,
                "022",
                "Data error.",
                f"OperatorID {status.operator_id} in the body differs from {path_operator_id} in the path",
            )
        outcome = self.state.apply_push(
            status.operator_id, request.action_type, status.evse_status_records, status.operator_name
        )
        return acknowledgement(outcome.accepted, outcome.code, outcome.description, outcome.additional_info)

    def handle_pull(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a schema-valid pull body (any of the three forms) as Hubject's JSON."""
        success = {"Code": "000", "Description": "Success"}
        wanted_status = body.get("EVSEStatus")
        if "EvseID" in body:
            held = self.state.all_statuses()
            records = []
            for raw in body["EvseID"]:
                evse_id = EvseID(raw)
                status = held.get(evse_id, EvseStatus.EVSE_NOT_FOUND)
                records.append({"EvseID": str(evse_id), "EvseStatus": status.value})
            return {"EVSEStatusRecords": {"EvseStatusRecord": records}, "StatusCode": success}
        operators = self.state.operators()
        if "OperatorID" in body:
            wanted = {OperatorID(o).canonical_key for o in body["OperatorID"]}
            operators = [(o, name) for o, name in operators if o.canonical_key in wanted]
        blocks = []
        for operator_id, name in operators:
            records = [
                {"EvseID": str(evse_id), "EvseStatus": status.value}
                for evse_id, status in sorted(self.state.statuses(operator_id).items())
                if wanted_status is None or status.value == wanted_status
            ]
            block: dict[str, Any] = {"OperatorID": str(operator_id), "EvseStatusRecord": records}
            if name:
                block["OperatorName"] = name
            blocks.append(block)
        return {"EvseStatuses": {"OperatorEvseStatus": blocks}, "StatusCode": success}

    def decide_fault(self, operation: str) -> FaultKind | None:
        return self._decider.decide(operation, self._clock())

    def retry_after_for(self, fault: FaultKind, operation: str) -> float | None:
        if fault is FaultKind.RATE_LIMIT and self.faults.calls_per_minute is not None:
            waited = self._decider.seconds_until_window_frees(operation, self._clock())
            if waited > 0:
                return max(1.0, waited)
        return self.faults.retry_after

    async def hang(self) -> None:
        """Block until the simulator shuts down (a request that is never answered)."""
        await self._closing.wait()

    # --- the aiohttp application ------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PUSH_PATH, self._push)
        app.router.add_post(PULL_PATH, self._pull)
        evse_data.add_routes(app, self)
        from oicp.simulator.soap import SOAP_PATH, SoapFrontEnd  # imports this module: import late

        app.router.add_post(SOAP_PATH, SoapFrontEnd(self, clock=self._clock).handle)
        app.router.add_get("/_simulator/faults", self._get_faults)
        app.router.add_put("/_simulator/faults", self._put_faults)
        app.router.add_get("/_simulator/state", self._get_state)
        app.router.add_post("/_simulator/reset", self._reset)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()

    @contextlib.contextmanager
    def push_in_flight(self, operator_id: str | None) -> Iterator[None]:
        """Count a push as in flight while it is handled (REST and SOAP front ends alike)."""
        key = (operator_id or "").replace("*", "").upper()
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), self._in_flight[key])
        self.max_in_flight_overall = max(self.max_in_flight_overall, sum(self._in_flight.values()))
        try:
            yield
        finally:
            self._in_flight[key] -= 1

    async def _push(self, request: web.Request) -> web.StreamResponse:
        with self.push_in_flight(request.match_info["operator_id"]):
            return await self._push_in_flight(request)

    async def _push_in_flight(self, request: web.Request) -> web.StreamResponse:
        operator_id = request.match_info["operator_id"]
        entry = self._log(request, "push", operator_id=operator_id)
        body, errors = await _read_json(request)
        entry.body = body
        if isinstance(body, dict):
            entry.action_type = body.get("ActionType")
        fault_response = await self._apply_fault(request, entry, "PushEVSEStatus")
        if fault_response is not None:
            return fault_response
        if not errors:
            errors = validation_errors(Schema.PUSH_EVSE_STATUS, body)
        try:
            OperatorID(operator_id)
        except InvalidIDError as exc:
            errors.append(f"(path) operatorID: {exc}")
        if errors:
            ack = acknowledgement(False, "022", "Data error.", "; ".join(errors)[:1000])
            return self._answer(entry, ack.to_wire(), status=400, result_code="022")
        push = PushEvseStatusRequest.model_validate(body)
        async with self._lock:
            ack = self.handle_push(operator_id, push)
        return self._answer(entry, ack.to_wire(), result_code=ack.status_code.code)

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        entry = self._log(request, "pull", provider_id=request.match_info["provider_id"])
        body, errors = await _read_json(request)
        entry.body = body
        fault_response = await self._apply_fault(request, entry, "PullEVSEStatus")
        if fault_response is not None:
            return fault_response
        if not errors and not isinstance(body, dict):
            errors = ["(body): must be a JSON object"]
        if not errors:
            errors = validation_errors(pull_request_schema(body), body)
        if errors:
            ack = acknowledgement(False, "022", "Data error.", "; ".join(errors)[:1000])
            return self._answer(entry, ack.to_wire(), status=400, result_code="022")
        return self._answer(entry, self.handle_pull(body), result_code="000")

    async def play_fault(
        self, request: web.Request, entry: LoggedRequest, operation: str
    ) -> FaultKind | None:
        """The part of fault injection every front end shares: the added latency, the decision, and the
        faults that need no answer (slow, hang, a dropped connection). Returns the fault the front end must
        still answer in its own format (5xx, 429, reject; drop: nothing reaches the client), or None."""
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        fault = self.decide_fault(operation)
        entry.fault = fault
        if fault is FaultKind.SLOW:
            await asyncio.sleep(self.faults.slow_latency)
            return None
        if fault is FaultKind.HANG:
            await self.hang()
            raise web.HTTPServiceUnavailable(text="simulator shutting down")
        if fault is FaultKind.DROP:
            if request.transport is not None:
                request.transport.abort()
            entry.http_status = 0
        return fault

    async def _apply_fault(
        self, request: web.Request, entry: LoggedRequest, operation: str
    ) -> web.StreamResponse | None:
        """Play the fault chosen for this request; None means answer normally."""
        fault = await self.play_fault(request, entry, operation)
        if fault is None:
            return None
        if fault is FaultKind.DROP:
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if fault is FaultKind.REJECT:
            code = self.faults.reject_code
            ack = acknowledgement(False, code, "Simulated rejection", None)
            return self._answer(entry, ack.to_wire(), result_code=code)
        headers = self.retry_after_headers(fault, operation)
        if fault is FaultKind.RATE_LIMIT:
            return self._answer(entry, {"message": "Too Many Requests"}, status=429, headers=headers)
        status = self.faults.error_5xx_status
        return self._answer(entry, {"message": "Simulated server error"}, status=status, headers=headers)

    def retry_after_headers(self, fault: FaultKind, operation: str) -> dict[str, str]:
        """The Retry-After header of a 429 (whole seconds from one second on) or of a 503, if any."""
        retry_after = self.retry_after_for(fault, operation)
        if retry_after is None:
            return {}
        if fault is FaultKind.RATE_LIMIT:
            return {"Retry-After": str(max(0, round(retry_after)) if retry_after >= 1 else retry_after)}
        if self.faults.error_5xx_status == 503:
            return {"Retry-After": str(retry_after)}
        return {}

    def _answer(
        self,
        entry: LoggedRequest,
        payload: dict[str, Any],
        *,
        status: int = 200,
        result_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        entry.http_status = status
        entry.result_code = result_code
        all_headers = {"Process-ID": entry.process_id, **(headers or {})}
        return web.json_response(payload, status=status, headers=all_headers)

    def _log(
        self,
        request: web.Request,
        operation: str,
        *,
        operator_id: str | None = None,
        provider_id: str | None = None,
    ) -> LoggedRequest:
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            operation=operation,
            received_at=self._clock(),
            client_cert_subject=_client_cert_subject(request),
            operator_id=operator_id,
            provider_id=provider_id,
        )
        self.request_log.append(entry)
        return entry

    # --- control endpoints (for users driving the standalone simulator) -------------------------

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def _put_faults(self, request: web.Request) -> web.Response:
        body, errors = await _read_json(request)
        if errors or not isinstance(body, dict):
            return web.json_response({"errors": errors or ["body must be a JSON object"]}, status=400)
        allowed = set(self.faults.as_dict())
        unknown = sorted(set(body) - allowed)
        if unknown:
            return web.json_response(
                {"errors": [f"unknown fault setting: {name}" for name in unknown]}, status=400
            )
        for name, value in body.items():
            if name == "queue":
                try:
                    self.faults.queue.extend(FaultKind(kind) for kind in value)
                except ValueError as exc:
                    return web.json_response({"errors": [str(exc)]}, status=400)
            else:
                setattr(self.faults, name, value)
        return web.json_response(self.faults.as_dict())

    async def _get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.handle_pull({"ProviderID": "DE-SIM"}))

    async def _reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        self.evse_data.reset()
        self.request_log.clear()
        return web.json_response({"reset": True})


async def _read_json(request: web.Request) -> tuple[Any, list[str]]:
    raw = await request.read()
    try:
        return json.loads(raw), []
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"(body): not valid JSON: {exc}"]


def _client_cert_subject(request: web.Request) -> str | None:
    if request.transport is None:
        return None
    cert = request.transport.get_extra_info("peercert")
    if not cert:
        return None
    parts = [f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn]
    return ",".join(parts) or None
