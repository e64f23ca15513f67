"""The SOAP front end of the Hubject simulator: the OICP 2.x EvseStatus service, SOAP 1.1.

Served at ``/ws/HubjectEvseStatus_V2.1`` (``oicp.wsdl.SOAP_PATH``).

It shares state, request log, fault injection and rate-limit windows with the REST side (it calls the
``HubjectSimulator``'s public methods), and validates the payload of every envelope against the XSD shipped in
``oicp.wsdl``. Answers:

- a valid push: HTTP 200, ``CommonTypes:eRoamingAcknowledgement``, Result true, code 000 (or what
  ``handle_push`` decides, e.g. 603);
- a valid pull: HTTP 200, ``eRoamingEvseStatus`` or ``eRoamingEvseStatusById``;
- not XML, not a SOAP 1.1 envelope, an unknown operation, a SOAPAction that names another operation, or a
  payload that breaks the XSD: HTTP 500 with a SOAP Fault ``soap:Client`` "Validation error: The request
  message is invalid", the violations in ``detail/Validation/Errors/Error`` (the shape of Hubject's own
  validation faults);
- fault injection as on REST: ``reject`` is an Acknowledgement with Result false (HTTP 200); ``5xx`` with
  status 500 is a SOAP Fault ``soap:Server`` (the service failed), other 5xx and ``429`` are plain answers of
  the gateway in front of the service (503 and 429 with ``Retry-After``); ``hang``, ``drop`` and ``slow``
  behave as on REST;
- every answer carries a ``Process-ID`` header.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from lxml import etree
from pydantic import ValidationError

from oicp.models import Acknowledgement, PushEvseStatusRequest
from oicp.simulator.app import LoggedRequest, acknowledgement
from oicp.simulator.faults import FaultKind
from oicp.wsdl import (
    MESSAGES,
    NS_COMMON_TYPES,
    NS_EVSE_STATUS,
    NS_SOAP_ENV,
    OPERATION_BY_REQUEST,
    SOAP_PATH,
    ServiceSchema,
    SoapOperation,
    safe_parser,
)

if TYPE_CHECKING:
    from oicp.simulator.app import HubjectSimulator

__all__ = ["SOAP_PATH", "SoapFrontEnd", "SoapRequestError"]

XML_CONTENT_TYPE = "text/xml"
VALIDATION_FAULT = "Validation error: The request message is invalid"
# The fault-injection operation names of the REST side, so both front ends share rate-limit windows.
FAULT_OPERATION = {
    SoapOperation.PUSH: "PushEVSEStatus",
    SoapOperation.PULL: "PullEVSEStatus",
    SoapOperation.PULL_BY_OPERATOR_ID: "PullEVSEStatus",
    SoapOperation.PULL_BY_ID: "PullEVSEStatus",
}

_ENV = f"{{{NS_SOAP_ENV}}}"
_ES = f"{{{NS_EVSE_STATUS}}}"
_CT = f"{{{NS_COMMON_TYPES}}}"


class SoapRequestError(Exception):
    """The request is not a valid SOAP EvseStatus message: answered with a soap:Client fault."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    operation: SoapOperation
    payload: etree._Element


# --- building answers -----------------------------------------------------------------------------------


def envelope(payload: etree._Element) -> bytes:
    root = etree.Element(f"{_ENV}Envelope", nsmap={"soapenv": NS_SOAP_ENV})
    etree.SubElement(root, f"{_ENV}Header")
    etree.SubElement(root, f"{_ENV}Body").append(payload)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return data


def fault_element(code: str, string: str, errors: list[str] | None = None) -> etree._Element:
    # SOAP 1.1, 4.4: faultcode, faultstring and detail are unqualified.
    fault = etree.Element(f"{_ENV}Fault", nsmap={"soapenv": NS_SOAP_ENV})
    etree.SubElement(fault, "faultcode").text = f"soapenv:{code}"
    etree.SubElement(fault, "faultstring").text = string
    if errors:
        listed = etree.SubElement(etree.SubElement(etree.SubElement(fault, "detail"), "Validation"), "Errors")
        for error in errors:
            etree.SubElement(listed, "Error").text = error
    return fault


def _status_code(
    parent: etree._Element, tag: str, code: str, description: str | None, info: str | None
) -> None:
    node = etree.SubElement(parent, tag)
    etree.SubElement(node, f"{_CT}Code").text = code
    if description is not None:
        etree.SubElement(node, f"{_CT}Description").text = description
    if info is not None:
        etree.SubElement(node, f"{_CT}AdditionalInfo").text = info


def acknowledgement_element(ack: Acknowledgement) -> etree._Element:
    root = etree.Element(f"{_CT}eRoamingAcknowledgement", nsmap={"CommonTypes": NS_COMMON_TYPES})
    etree.SubElement(root, f"{_CT}Result").text = "true" if ack.result else "false"
    status = ack.status_code
    _status_code(root, f"{_CT}StatusCode", status.code, status.description, status.additional_info)
    return root


def _record(parent: etree._Element, record: dict[str, Any]) -> None:
    node = etree.SubElement(parent, f"{_ES}EvseStatusRecord")
    etree.SubElement(node, f"{_ES}EvseId").text = record["EvseID"]
    etree.SubElement(node, f"{_ES}EvseStatus").text = record["EvseStatus"]


def pull_answer_element(operation: SoapOperation, answer: dict[str, Any]) -> etree._Element:
    """``HubjectSimulator.handle_pull``'s JSON answer as the SOAP answer element of ``operation``."""
    nsmap = {"EVSEStatus": NS_EVSE_STATUS, "CommonTypes": NS_COMMON_TYPES}
    root = etree.Element(MESSAGES[operation][1].text, nsmap=nsmap)
    if operation is SoapOperation.PULL_BY_ID:
        held = etree.SubElement(root, f"{_ES}EvseStatusRecords")
        for record in answer["EVSEStatusRecords"]["EvseStatusRecord"]:
            _record(held, record)
    else:
        statuses = etree.SubElement(root, f"{_ES}EvseStatuses")
        for block in answer["EvseStatuses"]["OperatorEvseStatus"]:
            node = etree.SubElement(statuses, f"{_ES}OperatorEvseStatus")
            etree.SubElement(node, f"{_ES}OperatorID").text = block["OperatorID"]
            if block.get("OperatorName"):
                etree.SubElement(node, f"{_ES}OperatorName").text = block["OperatorName"]
            for record in block["EvseStatusRecord"]:
                _record(node, record)
    code = answer["StatusCode"]
    _status_code(root, f"{_ES}StatusCode", code["Code"], code.get("Description"), None)
    return root


# --- reading requests -----------------------------------------------------------------------------------


def parse_request(raw: bytes, soap_action: str | None, schema: ServiceSchema) -> ParsedRequest:
    """The operation and payload of a SOAP 1.1 EvseStatus request, or ``SoapRequestError``."""
    try:
        root = etree.fromstring(raw, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapRequestError([f"not well-formed XML: {exc}"]) from exc
    if root.tag != f"{_ENV}Envelope":
        raise SoapRequestError([f"the root element is {root.tag}, not a SOAP 1.1 Envelope"])
    body = root.find(f"{_ENV}Body")
    children = [] if body is None else [child for child in body if isinstance(child.tag, str)]
    if len(children) != 1:
        raise SoapRequestError(["the SOAP Body must hold exactly one request element"])
    payload = children[0]
    operation = OPERATION_BY_REQUEST.get(payload.tag)
    if operation is None:
        raise SoapRequestError([f"{payload.tag} is not an operation of the EvseStatus service"])
    action = (soap_action or "").strip().strip('"')
    if action and action != operation.value:
        raise SoapRequestError([f"SOAPAction {action!r} does not match the request {operation.value}"])
    errors = schema.errors(payload)
    if errors:
        raise SoapRequestError(errors)
    return ParsedRequest(operation, payload)


def push_request(payload: etree._Element) -> PushEvseStatusRequest:
    """A schema-valid eRoamingPushEvseStatus element as the model ``handle_push`` takes."""
    block = payload.find(f"{_ES}OperatorEvseStatus")
    assert block is not None  # guaranteed by the XSD
    body: dict[str, Any] = {
        "ActionType": payload.findtext(f"{_ES}ActionType"),
        "OperatorEvseStatus": {
            "OperatorID": block.findtext(f"{_ES}OperatorID"),
            "EvseStatusRecord": [
                {"EvseID": record.findtext(f"{_ES}EvseId"), "EvseStatus": record.findtext(f"{_ES}EvseStatus")}
                for record in block.iterfind(f"{_ES}EvseStatusRecord")
            ],
        },
    }
    name = block.findtext(f"{_ES}OperatorName")
    if name is not None:
        body["OperatorEvseStatus"]["OperatorName"] = name
    try:
        return PushEvseStatusRequest.model_validate(body)
    except ValidationError as exc:  # e.g. an ID the XSD pattern allows but the model rejects
        raise SoapRequestError([str(exc)]) from exc


def pull_body(operation: SoapOperation, payload: etree._Element) -> dict[str, Any]:
    """A schema-valid pull element as the REST-shaped body ``handle_pull`` takes."""
    body: dict[str, Any] = {"ProviderID": payload.findtext(f"{_ES}ProviderID")}
    if operation is SoapOperation.PULL_BY_ID:
        body["EvseID"] = [node.text for node in payload.iterfind(f"{_ES}EvseId")]
    elif operation is SoapOperation.PULL_BY_OPERATOR_ID:
        body["OperatorID"] = [node.text for node in payload.iterfind(f"{_ES}OperatorID")]
    elif (wanted := payload.findtext(f"{_ES}EvseStatus")) is not None:
        body["EVSEStatus"] = wanted
    return body


# --- the aiohttp handler --------------------------------------------------------------------------------


class SoapFrontEnd:
    """Serves the EvseStatus SOAP endpoint for one ``HubjectSimulator``."""

    def __init__(
        self,
        simulator: HubjectSimulator,
        *,
        clock: Callable[[], float] = time.monotonic,
        schema: ServiceSchema | None = None,
    ) -> None:
        self.simulator = simulator
        self.schema = schema or ServiceSchema.load()
        self._clock = clock  # the simulator's clock, so request_log times compare across front ends

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed: ParsedRequest | None = parse_request(raw, request.headers.get("SOAPAction"), self.schema)
        except SoapRequestError as exc:
            parsed, invalid = None, exc
        operation = parsed.operation if parsed is not None else None
        entry = self._log(request, operation, raw)
        if parsed is None:
            await self._wait_latency()
            return self._fault(entry, "Client", VALIDATION_FAULT, invalid.errors)
        if parsed.operation is not SoapOperation.PUSH:
            return await self._pull(request, entry, parsed)
        operator_id = parsed.payload.findtext(f"{_ES}OperatorEvseStatus/{_ES}OperatorID")
        with self.simulator.push_in_flight(operator_id):
            return await self._push(request, entry, parsed.payload)

    async def _push(
        self, request: web.Request, entry: LoggedRequest, payload: etree._Element
    ) -> web.StreamResponse:
        entry.action_type = payload.findtext(f"{_ES}ActionType")
        entry.operator_id = payload.findtext(f"{_ES}OperatorEvseStatus/{_ES}OperatorID")
        fault_response = await self._apply_fault(request, entry, SoapOperation.PUSH)
        if fault_response is not None:
            return fault_response
        try:
            push = push_request(payload)
        except SoapRequestError as exc:
            return self._fault(entry, "Client", VALIDATION_FAULT, exc.errors)
        # SOAP has no OperatorID in the path: the body's is the one the request is for.
        ack = self.simulator.handle_push(str(push.operator_evse_status.operator_id), push)
        return self._answer(entry, acknowledgement_element(ack), result_code=ack.status_code.code)

    async def _pull(
        self, request: web.Request, entry: LoggedRequest, parsed: ParsedRequest
    ) -> web.StreamResponse:
        entry.provider_id = parsed.payload.findtext(f"{_ES}ProviderID")
        fault_response = await self._apply_fault(request, entry, parsed.operation)
        if fault_response is not None:
            return fault_response
        answer = pull_answer_element(
            parsed.operation, self.simulator.handle_pull(pull_body(parsed.operation, parsed.payload))
        )
        errors = self.schema.errors(answer)
        if errors:  # the simulator's own answer must be what a client may rely on
            return self._fault(entry, "Server", "Simulator answer breaks the schema", errors)
        return self._answer(entry, answer, result_code="000")

    async def _wait_latency(self) -> None:
        if self.simulator.faults.latency > 0:
            await asyncio.sleep(self.simulator.faults.latency)

    async def _apply_fault(
        self, request: web.Request, entry: LoggedRequest, operation: SoapOperation
    ) -> web.StreamResponse | None:
        """Play the fault chosen for this request, as ``HubjectSimulator._apply_fault`` does for REST."""
        simulator, name = self.simulator, FAULT_OPERATION[operation]
        fault = await simulator.play_fault(request, entry, name)
        if fault is None:
            return None
        if fault is FaultKind.DROP:
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if fault is FaultKind.REJECT:
            code = simulator.faults.reject_code
            ack = acknowledgement(False, code, "Simulated rejection", None)
            return self._answer(entry, acknowledgement_element(ack), result_code=code)
        headers = simulator.retry_after_headers(fault, name)
        if fault is FaultKind.RATE_LIMIT:
            return self._plain(entry, 429, "Too Many Requests", headers)
        status = simulator.faults.error_5xx_status
        if status == 500:
            return self._fault(entry, "Server", "Simulated server error")
        return self._plain(entry, status, "Simulated server error", headers)

    def _answer(
        self, entry: LoggedRequest, payload: etree._Element, *, result_code: str | None
    ) -> web.Response:
        entry.http_status = 200
        entry.result_code = result_code
        return self._xml(entry, 200, envelope(payload))

    def _fault(
        self, entry: LoggedRequest, code: str, string: str, errors: list[str] | None = None
    ) -> web.Response:
        entry.http_status = 500  # SOAP 1.1, 6.2: a fault travels with HTTP 500
        return self._xml(entry, 500, envelope(fault_element(code, string, errors)))

    def _xml(self, entry: LoggedRequest, status: int, body: bytes) -> web.Response:
        return web.Response(
            status=status,
            body=body,
            content_type=XML_CONTENT_TYPE,
            charset="utf-8",
            headers={"Process-ID": entry.process_id},
        )

    def _plain(self, entry: LoggedRequest, status: int, text: str, headers: dict[str, str]) -> web.Response:
        entry.http_status = status
        return web.Response(status=status, text=text, headers={"Process-ID": entry.process_id, **headers})

    def _log(self, request: web.Request, operation: SoapOperation | None, raw: bytes) -> LoggedRequest:
        kind = "invalid" if operation is None else "push" if operation is SoapOperation.PUSH else "pull"
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            operation=kind,
            received_at=self._clock(),
            body=raw.decode("utf-8", errors="replace"),
            client_cert_subject=_client_cert_subject(request),
        )
        self.simulator.request_log.append(entry)
        return entry


def _client_cert_subject(request: web.Request) -> str | None:
    if request.transport is None:
        return None
    cert = request.transport.get_extra_info("peercert")
    if not cert:
        return None
    parts = [f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn]
    return ",".join(parts) or None
