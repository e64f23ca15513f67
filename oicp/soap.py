"""OICP 2.2 SOAP client: eRoamingPushEvseStatus as a CPO, eRoamingPullEvseStatus as an EMP.

Hubject kept its pre-2.2 services on SOAP next to REST; some CPO contracts still use them. ``SoapClient``
offers the interface of ``oicp.client.EvseStatusClient`` with the models, errors, retry policy, throttle and
mutual TLS of ``oicp.rest.RestClient``, and the same rule that pushes are strictly sequential (OICP 2.3 CPO
01, Data push operations).

zeep builds each envelope from the WSDL shipped in ``oicp.wsdl`` (loaded offline, off the event loop) and
reads the answer; aiohttp sends it (zeep's own transports would block the loop or bring httpx). Every body
is checked against the shipped XSD both ways. ``translate_soap_answer`` is the one place where SOAP
Faults, HTTP statuses and zeep/lxml errors become ``oicp.errors`` types; transport failures go through
``oicp.rest.translate_client_error`` as for REST.

The endpoint is ``{scheme://host:port of url}/ws/HubjectEvseStatus_V2.1``: the configured ``url`` is the
REST one (``…/api/oicp``), and Hubject serves its SOAP services under ``/ws/`` of the same host. A ``url``
whose path already contains ``/ws/`` is used as given.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
import zeep.exceptions
import zeep.helpers
from lxml import etree
from pydantic import ValidationError

from oicp.client import ClientSettings, PushResult
from oicp.codes import classify
from oicp.errors import (
    ConfigurationError,
    ConnectionLostError,
    HTTPStatusError,
    RateLimitedError,
    RejectedError,
    RequestError,
    ResponseDecodeError,
    TLSError,
)
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
from oicp.rest import PROCESS_ID_HEADER, hint_for, parse_retry_after, translate_client_error
from oicp.retry import RetryHook, RetryPolicy
from oicp.throttle import Throttle
from oicp.transport import HubjectTransport
from oicp.wsdl import (
    MESSAGES,
    NS_SOAP_ENV,
    SOAP_PATH,
    ServiceSchema,
    SoapOperation,
    load_zeep_client,
    safe_parser,
)

BODY_EXCERPT_CHARS = 300
PULL_MAX_IDS = 100  # eRoamingPullEvseStatusById: EvseId, eRoamingPullEvseStatusByOperatorID: at most 100
VALIDATION_FAULT = "Validation error: The request message is invalid"
_CAUGHT: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def soap_endpoint(url: str) -> str:
    """The EvseStatus SOAP endpoint for a configured Hubject URL (see the module docstring)."""
    parts = urlsplit(url.rstrip("/"))
    if "/ws/" in parts.path + "/":
        return urlunsplit(parts)
    return urlunsplit((parts.scheme, parts.netloc, SOAP_PATH, "", ""))


def soap_hint(
    *, status: int | None, code: str | None, url: str, operator_id: str | None = None
) -> str | None:
    """``oicp.rest.hint_for``, except that a 404 points at the SOAP endpoint path."""
    if status == 404:
        return f"Hubject's EvseStatus SOAP endpoint is https://<host>{SOAP_PATH} (got {url})"
    return hint_for(status=status, code=code, url=url, operator_id=operator_id)


@dataclass(frozen=True, slots=True)
class SoapAnswer:
    """One HTTP exchange as received: status, raw body, Process-ID and Retry-After."""

    status: int
    body: bytes
    process_id: str | None
    retry_after: float | None


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


def fault_error(fault: SoapFault, answer: SoapAnswer, url: str, operator_id: str | None) -> RequestError:
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
            hint=soap_hint(status=None, code="022", url=url, operator_id=operator_id),
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


def translate_soap_answer(
    answer: SoapAnswer,
    operation: SoapOperation,
    *,
    url: str,
    schema: ServiceSchema,
    zeep_client: Any,
    operator_id: str | None = None,
) -> dict[str, Any]:
    """The answer's payload as a dict with zeep's (= the XSD's) element names, or the matching error."""
    text = answer.body.decode("utf-8", errors="replace")
    try:
        envelope = etree.fromstring(answer.body, safe_parser())
    except etree.XMLSyntaxError as exc:
        if answer.status != 200:
            raise status_error(answer, text, url, operator_id) from exc
        raise ResponseDecodeError(
            f"Hubject's answer is not XML: {excerpt(text)}", url=url, process_id=answer.process_id
        ) from exc
    body = envelope.find(f"{{{NS_SOAP_ENV}}}Body")
    payload = body[0] if body is not None and len(body) else None
    if payload is not None and payload.tag == f"{{{NS_SOAP_ENV}}}Fault":
        raise fault_error(read_fault(payload), answer, url, operator_id)
    expected = MESSAGES[operation][1]
    if payload is None or payload.tag != expected.text:
        if answer.status != 200:
            raise status_error(answer, text, url, operator_id)
        raise ResponseDecodeError(
            f"Hubject's answer is not a SOAP {expected.localname}: {excerpt(text)}",
            url=url,
            process_id=answer.process_id,
        )
    errors = schema.errors(payload)
    if errors:
        raise ResponseDecodeError(
            f"Hubject's {expected.localname} breaks the schema: {excerpt('; '.join(errors))}",
            url=url,
            process_id=answer.process_id,
        )
    try:
        result = zeep_client.service._binding.get(operation.value).process_reply(envelope)
    except zeep.exceptions.Error as exc:
        raise ResponseDecodeError(
            f"Hubject's {expected.localname} cannot be read: {exc}", url=url, process_id=answer.process_id
        ) from exc
    serialised: dict[str, Any] = zeep.helpers.serialize_object(result, dict)  # type: ignore[no-untyped-call]
    return serialised


def status_error(answer: SoapAnswer, text: str, url: str, operator_id: str | None) -> HTTPStatusError:
    hint = soap_hint(status=answer.status, code=None, url=url, operator_id=operator_id)
    error_type = RateLimitedError if answer.status == 429 else HTTPStatusError
    return error_type(
        answer.status,
        excerpt(text),
        url=url,
        process_id=answer.process_id,
        retry_after=answer.retry_after,
        hint=hint,
    )


def to_acknowledgement(payload: dict[str, Any], answer: SoapAnswer, url: str) -> Acknowledgement:
    try:
        return Acknowledgement.model_validate(_without_none(payload))
    except ValidationError as exc:
        raise ResponseDecodeError(
            f"not an eRoamingAcknowledgement: {exc}", url=url, process_id=answer.process_id
        ) from exc


def _without_none(value: Any) -> Any:
    """zeep fills absent optional elements with None; pydantic's models expect them absent."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _push_fields(request: PushEvseStatusRequest) -> dict[str, Any]:
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


_RECORD_PREFIX = re.compile(r"<([A-Za-z_][\w.-]*):EvseStatusRecord>")


def _record_xml(ns: str, record: EvseStatusRecord) -> str:
    """One EvseStatusRecord as zeep writes it, for streamed pushes (values are escaped)."""
    return (
        f"<{ns}:EvseStatusRecord><{ns}:EvseId>{escape(str(record.evse_id))}</{ns}:EvseId>"
        f"<{ns}:EvseStatus>{escape(record.evse_status.value)}</{ns}:EvseStatus></{ns}:EvseStatusRecord>"
    )


def _records_to_rest(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # SOAP 2.x spells the element EvseId; the models use the REST name EvseID.
    return [{"EvseID": record["EvseId"], "EvseStatus": record["EvseStatus"]} for record in records]


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= BODY_EXCERPT_CHARS else flat[:BODY_EXCERPT_CHARS] + "…"


class SoapClient(HubjectTransport):
    """The OICP 2.2 SOAP transport. Use as ``async with SoapClient(settings) as client``."""

    accept = "text/xml"

    def __init__(
        self,
        settings: ClientSettings,
        *,
        retry_policy: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        on_retry: RetryHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            settings,
            retry_policy=retry_policy,
            throttle=throttle,
            on_retry=on_retry,
            clock=clock,
            sleep=sleep,
        )
        self.endpoint = soap_endpoint(settings.url)
        self._zeep: Any = None
        self._schema: ServiceSchema | None = None

    @property
    def target_url(self) -> str:
        return self.endpoint

    async def __aenter__(self) -> Self:
        # Reading the WSDL/XSD files is blocking I/O: keep it off the event loop.
        self._zeep, self._schema = await asyncio.to_thread(lambda: (load_zeep_client(), ServiceSchema.load()))
        return await super().__aenter__()

    # --- messages ------------------------------------------------------------------------------------

    def build_envelope(self, operation: SoapOperation, **fields: Any) -> bytes:
        """The SOAP envelope zeep builds for ``operation`` from the shipped WSDL, as UTF-8 bytes."""
        if self._zeep is None:
            raise ConfigurationError("SoapClient used outside 'async with'")
        try:
            envelope = self._zeep.create_message(self._zeep.service, operation.value, **fields)
        except (zeep.exceptions.Error, TypeError) as exc:
            raise ConfigurationError(f"cannot build a SOAP {operation.value}: {exc}") from exc
        data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        return data

    # --- push (CPO) ----------------------------------------------------------------------------------

    async def push_evse_status(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        operator_id = OperatorID(operator_id)
        # The pydantic model checks what the REST client checks (IDs, name length) before any request.
        request = PushEvseStatusRequest.of(operator_id, action, records, operator_name)
        body = self.build_envelope(SoapOperation.PUSH, **_push_fields(request))
        return await self._push_with_retries(lambda: self._push_once(body, str(operator_id)))

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Like ``push_evse_status``, but the records come page by page and the envelope is streamed, so a
        fullLoad of 100 000 EVSEs never sits in memory whole. ``pages()`` is called once per attempt."""
        operator_id = OperatorID(operator_id)
        prefix, suffix, ns = self._envelope_around_records(operator_id, action, operator_name)

        async def body() -> AsyncIterator[bytes]:
            yield prefix
            async for page in pages():
                if page:
                    yield "".join(_record_xml(ns, record) for record in page).encode()
            yield suffix

        return await self._push_with_retries(lambda: self._push_once(body, str(operator_id)))

    def _envelope_around_records(
        self, operator_id: OperatorID, action: ActionType, operator_name: str | None
    ) -> tuple[bytes, bytes, str]:
        """The push envelope zeep builds, cut where its records go: (before, after, records' prefix)."""
        din = str(operator_id)[0] in "+0123456789"  # DIN EvseIDs carry no "E" (CPO 03, EvseIDType)
        marker_id = EvseID(f"{operator_id}*0" if din else f"{operator_id}*E0")
        marker = EvseStatusRecord(evse_id=marker_id, evse_status=EvseStatus.UNKNOWN)
        request = PushEvseStatusRequest.of(operator_id, action, (marker,), operator_name)
        text = self.build_envelope(SoapOperation.PUSH, **_push_fields(request)).decode()
        ns = _RECORD_PREFIX.search(text)
        if ns is None:
            raise ConfigurationError("zeep's push envelope has no EvseStatusRecord")
        start = ns.start()
        closing = f"</{ns.group(1)}:EvseStatusRecord>"
        end = text.index(closing, start) + len(closing)
        return text[:start].encode(), text[end:].encode(), ns.group(1)

    async def _push_once(
        self, body: bytes | Callable[[], AsyncIterator[bytes]], operator_id: str
    ) -> tuple[Acknowledgement, str | None]:
        answer = await self._post(SoapOperation.PUSH, body)
        payload = self._translate(answer, SoapOperation.PUSH, operator_id)
        acknowledgement = to_acknowledgement(payload, answer, self.endpoint)
        if not acknowledgement.result:
            code = acknowledgement.status_code.code
            raise RejectedError(
                code,
                acknowledgement.status_code.description,
                acknowledgement.status_code.additional_info,
                info=classify(code),
                url=self.endpoint,
                process_id=answer.process_id,
                hint=soap_hint(status=answer.status, code=code, url=self.endpoint, operator_id=operator_id),
            )
        if answer.status != 200:
            text = answer.body.decode("utf-8", errors="replace")
            raise status_error(answer, text, self.endpoint, operator_id)
        return acknowledgement, answer.process_id

    # --- pull (EMP) ----------------------------------------------------------------------------------

    async def pull_evse_status(
        self,
        provider_id: ProviderID,
        *,
        operator_ids: Sequence[OperatorID] | None = None,
        evse_ids: Sequence[EvseID] | None = None,
    ) -> dict[EvseID, EvseStatus]:
        provider_id = ProviderID(provider_id)
        if evse_ids is not None:
            return await self._pull_by_id(provider_id, [EvseID(e) for e in evse_ids])
        if operator_ids is None:
            body = self.build_envelope(SoapOperation.PULL, ProviderID=str(provider_id))
            return await self._pull_statuses(SoapOperation.PULL, body)
        found: dict[EvseID, EvseStatus] = {}
        wanted = [str(OperatorID(o)) for o in operator_ids]
        for start in range(0, len(wanted), PULL_MAX_IDS):
            body = self.build_envelope(
                SoapOperation.PULL_BY_OPERATOR_ID,
                ProviderID=str(provider_id),
                OperatorID=wanted[start : start + PULL_MAX_IDS],
            )
            found.update(await self._pull_statuses(SoapOperation.PULL_BY_OPERATOR_ID, body))
        return found

    async def _pull_by_id(self, provider_id: ProviderID, ids: list[EvseID]) -> dict[EvseID, EvseStatus]:
        found: dict[EvseID, EvseStatus] = {}
        for start in range(0, len(ids), PULL_MAX_IDS):
            chunk = [str(e) for e in ids[start : start + PULL_MAX_IDS]]
            body = self.build_envelope(SoapOperation.PULL_BY_ID, ProviderID=str(provider_id), EvseId=chunk)
            payload, answer = await self._pull_with_retries(SoapOperation.PULL_BY_ID, body)
            held = payload.get("EvseStatusRecords") or {}
            wire = {
                "EVSEStatusRecords": {"EvseStatusRecord": _records_to_rest(held.get("EvseStatusRecord", []))}
            }
            try:
                response = PullEvseStatusByIDResponse.model_validate(wire)
            except ValidationError as exc:
                raise ResponseDecodeError(
                    f"not an eRoamingEvseStatusById: {exc}", url=self.endpoint, process_id=answer.process_id
                ) from exc
            found.update((r.evse_id, r.evse_status) for r in response.evse_status_records.evse_status_records)
        return found

    async def _pull_statuses(self, operation: SoapOperation, body: bytes) -> dict[EvseID, EvseStatus]:
        payload, answer = await self._pull_with_retries(operation, body)
        blocks = [
            {
                "OperatorID": block["OperatorID"],
                "EvseStatusRecord": _records_to_rest(block.get("EvseStatusRecord") or []),
            }
            for block in (payload.get("EvseStatuses") or {}).get("OperatorEvseStatus") or []
        ]
        try:
            pulled = PullEvseStatusResponse.model_validate({"EvseStatuses": {"OperatorEvseStatus": blocks}})
        except ValidationError as exc:
            raise ResponseDecodeError(
                f"not an eRoamingEvseStatus: {exc}", url=self.endpoint, process_id=answer.process_id
            ) from exc
        return {
            record.evse_id: record.evse_status
            for block in pulled.evse_statuses.operator_evse_status
            for record in block.evse_status_records
        }

    async def _pull_with_retries(
        self, operation: SoapOperation, body: bytes
    ) -> tuple[dict[str, Any], SoapAnswer]:
        async def once() -> tuple[dict[str, Any], SoapAnswer]:
            answer = await self._post(operation, body)
            payload = self._translate(answer, operation, None)
            if answer.status != 200:
                text = answer.body.decode("utf-8", errors="replace")
                raise status_error(answer, text, self.endpoint, None)
            return payload, answer

        result, _ = await self._with_retries(once)
        return result

    # --- one HTTP exchange ---------------------------------------------------------------------------

    def _translate(
        self, answer: SoapAnswer, operation: SoapOperation, operator_id: str | None
    ) -> dict[str, Any]:
        if self._schema is None:
            raise ConfigurationError("SoapClient used outside 'async with'")
        return translate_soap_answer(
            answer,
            operation,
            url=self.endpoint,
            schema=self._schema,
            zeep_client=self._zeep,
            operator_id=operator_id,
        )

    async def _post(
        self, operation: SoapOperation, body: bytes | Callable[[], AsyncIterator[bytes]]
    ) -> SoapAnswer:
        """POST one envelope (after the throttle); 429 and 5xx with Retry-After raise here, as in REST."""
        session = self.session
        await self._wait_for_throttle()
        url = self.endpoint
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation.value}"'}
        try:
            data = body if isinstance(body, bytes) else body()
            async with session.post(url, data=data, headers=headers) as response:
                raw = await response.read()
                answer = SoapAnswer(
                    response.status,
                    raw,
                    response.headers.get(PROCESS_ID_HEADER),
                    parse_retry_after(response.headers.get("Retry-After")),
                )
        except _CAUGHT as exc:
            error = translate_client_error(exc, url)
            if self.settings.client_cert is None and isinstance(error, (ConnectionLostError, TLSError)):
                error.hint = (
                    "no client certificate is configured, and Hubject requires mutual TLS: "
                    "set client_cert and client_key"
                )
            raise error from exc
        if answer.status == 429:
            self.throttle.rate_limited()
            raise status_error(answer, answer.body.decode("utf-8", errors="replace"), url, None)
        if answer.status >= 500 and answer.retry_after is not None:
            # A gateway's 503 with Retry-After: honour it whatever the body says.
            raise HTTPStatusError(
                answer.status,
                excerpt(answer.body.decode("utf-8", errors="replace")),
                url=url,
                process_id=answer.process_id,
                retry_after=answer.retry_after,
            )
        if answer.status == 200:
            self.throttle.succeeded()
        return answer
