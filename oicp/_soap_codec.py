"""OICP 2.2 SOAP codec: envelopes built and read by zeep from the shipped WSDL, checked against the XSD.

Pure apart from reading the shipped WSDL/XSD once (``SoapCodec.load``, blocking file I/O: call it off the
event loop). ``decode`` is the one place where SOAP Faults, HTTP statuses and zeep/lxml errors become
``oicp.errors`` types; transport failures are the HTTP core's (``oicp._http``). Needs the ``soap`` extra
(zeep, lxml); ``oicp._soap`` imports this module only when a ``SoapClient`` is entered.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import zeep.exceptions
import zeep.helpers
from lxml import etree
from pydantic import ValidationError

from oicp._http import Answer, accept_acknowledgement, excerpt, status_error
from oicp.codes import classify
from oicp.errors import ConfigurationError, HTTPStatusError, RejectedError, RequestError, ResponseDecodeError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import (
    Acknowledgement,
    ActionType,
    EvseStatus,
    EvseStatusRecord,
    PullEvseStatusByIDResponse,
    PullEvseStatusResponse,
    PushEvseStatusRequest,
)
from oicp.wsdl import MESSAGES, NS_SOAP_ENV, ServiceSchema, SoapOperation, load_zeep_client, safe_parser

PULL_MAX_IDS = 100  # eRoamingPullEvseStatusById: EvseId, eRoamingPullEvseStatusByOperatorID: at most 100
_RECORD_PREFIX = re.compile(r"<([A-Za-z_][\w.-]*):EvseStatusRecord>")


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A SOAP 1.1 Fault: ``code`` is the faultcode's local name (Client, Server, ...)."""

    code: str
    string: str
    detail: str | None

    @property
    def is_client(self) -> bool:
        # SOAP 1.1, 4.4.1: dotted subcodes refine the class, e.g. "Client.Authentication"
        return self.code.split(".", 1)[0] == "Client"


def read_fault(fault: etree._Element) -> SoapFault:
    code = (fault.findtext("faultcode") or "").strip()
    detail_node = fault.find("detail")
    detail = None
    if detail_node is not None:
        detail = "; ".join(str(t).strip() for t in detail_node.itertext() if str(t).strip()) or None
    return SoapFault(code.rsplit(":", 1)[-1], (fault.findtext("faultstring") or "").strip(), detail)


def fault_error(fault: SoapFault, answer: Answer, url: str, operator_id: str | None) -> RequestError:
    """A SOAP Fault as the error REST would raise for the same situation.

    Client faults (the request is invalid: Hubject's schema validation answers these) are Hubject's
    "022 Data error", permanent, like the REST simulator's 400 + 022; Server faults are HTTP 5xx errors,
    retryable (SOAP 1.1 sends faults with HTTP 500).
    """
    if fault.is_client:
        return RejectedError(
            "022",
            f"SOAP Fault {fault.code}: {fault.string}",
            excerpt(fault.detail or ""),
            info=classify("022"),
            url=url,
            process_id=answer.process_id,
        )
    status = answer.status if answer.status >= 500 else 500
    detail = f" ({excerpt(fault.detail)})" if fault.detail else ""
    return HTTPStatusError(
        status,
        f"SOAP Fault {fault.code}: {fault.string}{detail}",
        url=url,
        process_id=answer.process_id,
        retry_after=answer.retry_after,
    )


def _without_none(value: Any) -> Any:
    """zeep fills absent optional elements with None; pydantic's models expect them absent."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def push_fields(request: PushEvseStatusRequest) -> dict[str, Any]:
    """zeep's keyword arguments for an eRoamingPushEvseStatus (SOAP 2.x names: EvseId)."""
    block = request.operator_evse_status
    fields: dict[str, Any] = {
        "OperatorID": str(block.operator_id),
        "EvseStatusRecord": [
            {"EvseId": str(r.evse_id), "EvseStatus": r.evse_status.value} for r in block.evse_status_records
        ],
    }
    if block.operator_name is not None:
        fields["OperatorName"] = block.operator_name
    return {"ActionType": request.action_type.value, "OperatorEvseStatus": fields}


def _record_xml(ns: str, record: EvseStatusRecord) -> str:
    """One EvseStatusRecord as zeep writes it, for streamed pushes (values are escaped)."""
    return (
        f"<{ns}:EvseStatusRecord><{ns}:EvseId>{escape(str(record.evse_id))}</{ns}:EvseId>"
        f"<{ns}:EvseStatus>{escape(record.evse_status.value)}</{ns}:EvseStatus></{ns}:EvseStatusRecord>"
    )


def _records_to_rest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # SOAP 2.x spells the element EvseId; the models use the REST name EvseID.
    return [{"EvseID": record["EvseId"], "EvseStatus": record["EvseStatus"]} for record in records]


@dataclass(frozen=True)
class SoapCodec:
    """Envelopes for the EvseStatus service, and their answers read back, from the shipped WSDL/XSD."""

    zeep_client: Any  # zeep is untyped
    schema: ServiceSchema

    @classmethod
    def load(cls) -> SoapCodec:
        """Read the shipped WSDL and XSD (blocking file I/O, no network)."""
        return cls(load_zeep_client(), ServiceSchema.load())

    # --- requests --------------------------------------------------------------------------------------

    def envelope(self, operation: SoapOperation, **fields: Any) -> bytes:
        """The SOAP envelope zeep builds for ``operation`` from the shipped WSDL, as UTF-8 bytes."""
        try:
            envelope = self.zeep_client.create_message(self.zeep_client.service, operation.value, **fields)
        except (zeep.exceptions.Error, TypeError) as exc:
            raise ConfigurationError(f"cannot build a SOAP {operation.value}: {exc}") from exc
        data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return data

    def encode_push(self, request: PushEvseStatusRequest) -> bytes:
        return self.envelope(SoapOperation.PUSH, **push_fields(request))

    def stream_push(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        operator_name: str | None = None,
    ) -> Callable[[], AsyncIterator[bytes]]:
        """The push envelope written page by page, so a fullLoad never sits in memory whole."""
        prefix, suffix, ns = self._envelope_around_records(operator_id, action, operator_name)

        async def body() -> AsyncIterator[bytes]:
            yield prefix
            async for page in pages():
                if page:
                    yield "".join(_record_xml(ns, record) for record in page).encode()
            yield suffix

        return body

    def _envelope_around_records(
        self, operator_id: OperatorID, action: ActionType, operator_name: str | None
    ) -> tuple[bytes, bytes, str]:
        """The push envelope zeep builds, cut where its records go: (before, after, records' prefix)."""
        din = str(operator_id)[0] in "+0123456789"  # DIN EvseIDs carry no "E" (CPO 03, EvseIDType)
        marker_id = EvseID(f"{operator_id}*0" if din else f"{operator_id}*E0")
        marker = EvseStatusRecord(evse_id=marker_id, evse_status=EvseStatus.UNKNOWN)
        request = PushEvseStatusRequest.of(operator_id, action, (marker,), operator_name)
        text = self.encode_push(request).decode()
        ns = _RECORD_PREFIX.search(text)
        if ns is None:
            raise ConfigurationError("zeep's push envelope has no EvseStatusRecord")
        start = ns.start()
        closing = f"</{ns.group(1)}:EvseStatusRecord>"
        end = text.index(closing, start) + len(closing)
        return text[:start].encode(), text[end:].encode(), ns.group(1)

    def encode_pulls(
        self,
        provider_id: ProviderID,
        operator_ids: Sequence[OperatorID] | None,
        evse_ids: Sequence[EvseID] | None,
    ) -> list[tuple[SoapOperation, bytes]]:
        """The pull requests for one ``pull_evse_status`` call (ID lists split into chunks of 100)."""
        provider = str(provider_id)
        if evse_ids is not None:
            ids = [str(e) for e in evse_ids]
            return [
                (
                    SoapOperation.PULL_BY_ID,
                    self.envelope(
                        SoapOperation.PULL_BY_ID, ProviderID=provider, EvseId=ids[i : i + PULL_MAX_IDS]
                    ),
                )
                for i in range(0, len(ids), PULL_MAX_IDS)
            ]
        if operator_ids is None:
            return [(SoapOperation.PULL, self.envelope(SoapOperation.PULL, ProviderID=provider))]
        wanted = [str(o) for o in operator_ids]
        by_operator = SoapOperation.PULL_BY_OPERATOR_ID
        return [
            (
                by_operator,
                self.envelope(by_operator, ProviderID=provider, OperatorID=wanted[i : i + PULL_MAX_IDS]),
            )
            for i in range(0, len(wanted), PULL_MAX_IDS)
        ]

    # --- answers ---------------------------------------------------------------------------------------

    def decode(
        self, answer: Answer, operation: SoapOperation, url: str, operator_id: str | None = None
    ) -> dict[str, Any]:
        """The answer's payload as a dict with zeep's (= the XSD's) element names, or the matching error."""
        try:
            envelope = etree.fromstring(answer.body, safe_parser())
        except etree.XMLSyntaxError as exc:
            if answer.status != 200:
                raise status_error(answer, url, operator_id=operator_id, protocol="soap") from exc
            raise ResponseDecodeError(
                f"Hubject's answer is not XML: {excerpt(answer.text)}", url=url, process_id=answer.process_id
            ) from exc
        body = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
        payload = body[0] if body is not None and len(body) else None
        if payload is not None and payload.tag == f"{{{NS_SOAP_ENV}}}Fault":
            raise fault_error(read_fault(payload), answer, url, operator_id)
        expected = MESSAGES[operation][1]
        if payload is None or payload.tag != expected.text:
            if answer.status != 200:
                raise status_error(answer, url, operator_id=operator_id, protocol="soap")
            raise ResponseDecodeError(
                f"Hubject's answer is not a SOAP {expected.localname}: {excerpt(answer.text)}",
                url=url,
                process_id=answer.process_id,
            )
        errors = self.schema.errors(payload)
        if errors:
            raise ResponseDecodeError(
                f"Hubject's {expected.localname} breaks the schema: {excerpt('; '.join(errors))}",
                url=url,
                process_id=answer.process_id,
            )
        try:
            result = self._operation(operation).process_reply(envelope)
        except zeep.exceptions.Error as exc:
            raise ResponseDecodeError(
                f"Hubject's {expected.localname} cannot be read: {exc}", url=url, process_id=answer.process_id
            ) from exc
        serialised: dict[str, Any] = zeep.helpers.serialize_object(result, dict)  # type: ignore[no-untyped-call]
        return serialised

    def _operation(self, operation: SoapOperation) -> Any:
        # The WSDL has one binding; look it up through the document, not zeep's private ServiceProxy.
        (binding,) = self.zeep_client.wsdl.bindings.values()
        return binding.get(operation.value)

    def decode_push(self, answer: Answer, url: str, operator_id: str | None = None) -> Acknowledgement:
        """The acknowledgement of a successful push, or the error the answer amounts to."""
        payload = self.decode(answer, SoapOperation.PUSH, url, operator_id)
        try:
            acknowledgement = Acknowledgement.model_validate(_without_none(payload))
        except ValidationError as exc:
            raise ResponseDecodeError(
                f"not an eRoamingAcknowledgement: {exc}", url=url, process_id=answer.process_id
            ) from exc
        return accept_acknowledgement(acknowledgement, answer, url, operator_id=operator_id, protocol="soap")

    def decode_pull(self, answer: Answer, operation: SoapOperation, url: str) -> dict[EvseID, EvseStatus]:
        """A pull answer as a flat map, or the error the answer amounts to."""
        payload = self.decode(answer, operation, url)
        if answer.status != 200:
            raise status_error(answer, url, protocol="soap")
        try:
            if operation is SoapOperation.PULL_BY_ID:
                held = payload.get("EvseStatusRecords") or {}
                records = _records_to_rest(held.get("EvseStatusRecord") or [])
                wire = {"EVSEStatusRecords": {"EvseStatusRecord": records}}
                return PullEvseStatusByIDResponse.model_validate(wire).statuses()
            blocks = [
                {
                    "OperatorID": block["OperatorID"],
                    "EvseStatusRecord": _records_to_rest(block.get("EvseStatusRecord") or []),
                }
                for block in (payload.get("EvseStatuses") or {}).get("OperatorEvseStatus") or []
            ]
            wire = {"EvseStatuses": {"OperatorEvseStatus": blocks}}
            return PullEvseStatusResponse.model_validate(wire).statuses()
        except ValidationError as exc:
            raise ResponseDecodeError(
                f"not a SOAP {MESSAGES[operation][1].localname}: {exc}", url=url, process_id=answer.process_id
            ) from exc
