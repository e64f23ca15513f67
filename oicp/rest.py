"""OICP 2.3 REST client: eRoamingPushEvseStatus as a CPO, eRoamingPullEvseStatus as an EMP.

One ``aiohttp.ClientSession`` per client (connections are reused), mutual TLS from ``oicp.tls``, the
throttle of ``oicp.throttle`` and the retry policy of ``oicp.retry``. eRoamingPushEvseStatus calls are
sent strictly one after the other, whatever the operator: "data push requests that address the same
operation MUST always be processed sequentially ... a partner system MUST always wait for the Hubject
system's operation response before initiating the next request" (OICP 2.3 CPO 01, Data push operations;
02, eRoamingPushEvseStatus note). Pulls are not pushes and may overlap.

Every failure is raised as an ``oicp.errors`` type; ``translate_client_error`` is the one place where
aiohttp's exceptions become ours.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from oicp.client import PushResult
from oicp.codes import CODE_HINTS, classify
from oicp.errors import (
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    ResponseDecodeError,
    TLSError,
    TransportError,
)
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import (
    Acknowledgement,
    ActionType,
    EvseStatus,
    EvseStatusRecord,
    PullEvseStatusByIDRequest,
    PullEvseStatusByIDResponse,
    PullEvseStatusByOperatorIDRequest,
    PullEvseStatusRequest,
    PullEvseStatusResponse,
    PushEvseStatusRequest,
)
from oicp.transport import HubjectTransport

PROCESS_ID_HEADER = "Process-ID"
BODY_EXCERPT_CHARS = 300
PULL_BY_ID_MAX = 100  # eRoamingPullEVSEStatusByID: EvseID maxItems 100 (EMP OpenAPI)


def push_path(operator_id: OperatorID) -> str:
    return f"/evsepush/v21/operators/{quote(str(operator_id), safe='*')}/status-records"


def pull_path(provider_id: ProviderID) -> str:
    return f"/evsepull/v21/providers/{quote(str(provider_id), safe='*')}/status-records"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def hint_for(*, status: int | None, code: str | None, url: str, operator_id: str | None = None) -> str | None:
    """What an operator can do about a failure, where Hubject's answer tells us enough."""
    if status == 401 or code == "017":
        who = f"OperatorID {operator_id}" if operator_id else "the OperatorID or ProviderID in the URL"
        return (
            f"{who} is not linked to this client certificate, or the certificate is not registered "
            "for this Hubject environment (QA and production have separate certificates)"
        )
    if status == 403:
        return "Hubject refused this source address: ask Hubject support to allow-list your egress IP"
    if status == 404 and "/api/oicp" not in url:
        return "the Hubject URL should end in /api/oicp, e.g. https://service-qa.hubject.com/api/oicp"
    if status == 429:
        return "Hubject rate limit reached (Acceptable Use Policy: 2000 PushEVSEStatus calls per minute)"
    if code == "018":
        return "an EvseID does not belong to the OperatorID it was pushed for"
    return CODE_HINTS.get(code) if code is not None else None


def translate_client_error(exc: BaseException, url: str) -> RequestError:
    """Map an aiohttp (or asyncio/ssl/OS) exception raised by a request to an ``oicp.errors`` type."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TLSError(f"Hubject's certificate was not accepted: {exc.certificate_error}", url=url)
    if isinstance(exc, aiohttp.ClientSSLError):
        return TLSError(f"TLS handshake with Hubject failed: {exc}", url=url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(f"connecting to Hubject timed out ({name})", url=url)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return RequestTimeoutError(f"Hubject did not answer in time ({name})", url=url)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to Hubject: {exc.os_error}", url=url)
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__ or exc, ssl.SSLError):
        return TLSError(f"TLS failure talking to Hubject (client certificate refused?): {exc}", url=url)
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS failure talking to Hubject (client certificate refused?): {exc}", url=url)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return ConnectionLostError(f"the connection to Hubject was lost: {name}: {exc}", url=url)
    if isinstance(exc, (ConnectionError, OSError)):
        return ConnectionLostError(f"the connection to Hubject failed: {name}: {exc}", url=url)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"invalid Hubject URL {url}: {exc}", url=url)
    # Any other aiohttp.ClientError: no answer was received; retrying is the safe default.
    return TransportError(f"request to Hubject failed: {name}: {exc}", url=url)


_CAUGHT: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class RestClient(HubjectTransport):
    """The OICP 2.3 REST transport. Use as ``async with RestClient(settings) as client``."""

    accept = "application/json"

    @property
    def base_url(self) -> str:
        return self.settings.url.rstrip("/")

    @property
    def url_hint(self) -> str | None:
        """A hint shown at start-up when the configured URL looks wrong."""
        if "/api/oicp" not in self.base_url:
            return hint_for(status=404, code=None, url=self.base_url)
        return None

    # --- push (CPO) ---------------------------------------------------------------------------------

    async def push_evse_status(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        operator_id = OperatorID(operator_id)
        request = PushEvseStatusRequest.of(operator_id, action, records, operator_name)
        url = self.base_url + push_path(operator_id)
        body = request.to_wire()
        return await self._push_with_retries(lambda: self._push_once(url, body, operator_id))

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Like ``push_evse_status``, but the records come page by page and the request body is streamed,
        so a fullLoad of 100 000 EVSEs never sits in memory whole. ``pages()`` is called once per attempt.
        """
        operator_id = OperatorID(operator_id)
        url = self.base_url + push_path(operator_id)
        head = PushEvseStatusRequest.of(operator_id, action, (), operator_name).to_wire()
        # Everything but the records, with a marker where they go: "...,"EvseStatusRecord": [] }}".
        prefix, suffix = json.dumps(head).split('"EvseStatusRecord": []')

        async def body() -> AsyncIterator[bytes]:
            yield (prefix + '"EvseStatusRecord": [').encode()
            first = True
            async for page in pages():
                if not page:
                    continue
                chunk = json.dumps([record.to_wire() for record in page])[1:-1]  # one dumps a page
                yield (chunk if first else "," + chunk).encode()
                first = False
            yield ("]" + suffix).encode()

        return await self._push_with_retries(lambda: self._push_once(url, body, operator_id))

    async def _push_once(
        self, url: str, body: dict[str, Any] | Callable[[], AsyncIterator[bytes]], operator_id: OperatorID
    ) -> tuple[Acknowledgement, str | None]:
        status, payload, process_id, text = await self._post(url, body, operator_id=str(operator_id))
        acknowledgement = _parse_acknowledgement(payload)
        if acknowledgement is None:
            if status != 200:
                raise self._status_error(status, text, url, process_id, str(operator_id))
            raise ResponseDecodeError(
                f"Hubject's answer is not an eRoamingAcknowledgement: {_excerpt(text)}",
                url=url,
                process_id=process_id,
            )
        if not acknowledgement.result:
            code = acknowledgement.status_code.code
            raise RejectedError(
                code,
                acknowledgement.status_code.description,
                acknowledgement.status_code.additional_info,
                info=classify(code),
                url=url,
                process_id=process_id,
                hint=hint_for(status=status, code=code, url=url, operator_id=str(operator_id)),
            )
        if status != 200:
            raise self._status_error(status, text, url, process_id, str(operator_id))
        return acknowledgement, process_id

    # --- pull (EMP) ---------------------------------------------------------------------------------

    async def pull_evse_status(
        self,
        provider_id: ProviderID,
        *,
        operator_ids: Sequence[OperatorID] | None = None,
        evse_ids: Sequence[EvseID] | None = None,
    ) -> dict[EvseID, EvseStatus]:
        provider_id = ProviderID(provider_id)
        url = self.base_url + pull_path(provider_id)
        if evse_ids is not None:
            found: dict[EvseID, EvseStatus] = {}
            ids = [EvseID(e) for e in evse_ids]
            for start in range(0, len(ids), PULL_BY_ID_MAX):
                chunk = tuple(ids[start : start + PULL_BY_ID_MAX])
                by_id = PullEvseStatusByIDRequest(provider_id=provider_id, evse_ids=chunk)
                payload = await self._pull_with_retries(url, by_id.to_wire())
                try:
                    response = PullEvseStatusByIDResponse.model_validate(payload)
                except ValidationError as exc:
                    raise ResponseDecodeError(f"not an eRoamingEVSEStatusByID: {exc}", url=url) from exc
                found.update(
                    (r.evse_id, r.evse_status) for r in response.evse_status_records.evse_status_records
                )
            return found
        request: PullEvseStatusRequest | PullEvseStatusByOperatorIDRequest
        if operator_ids is not None:
            request = PullEvseStatusByOperatorIDRequest(
                provider_id=provider_id, operator_ids=tuple(OperatorID(o) for o in operator_ids)
            )
        else:
            request = PullEvseStatusRequest(provider_id=provider_id)
        payload = await self._pull_with_retries(url, request.to_wire())
        try:
            pulled = PullEvseStatusResponse.model_validate(payload)
        except ValidationError as exc:
            raise ResponseDecodeError(f"not an eRoamingEVSEStatus: {exc}", url=url) from exc
        return {
            record.evse_id: record.evse_status
            for block in pulled.evse_statuses.operator_evse_status
            for record in block.evse_status_records
        }

    async def _pull_with_retries(self, url: str, body: dict[str, Any]) -> Any:
        payload, _ = await self._with_retries(lambda: self._pull_once(url, body))
        return payload

    async def _pull_once(self, url: str, body: dict[str, Any]) -> Any:
        status, payload, process_id, text = await self._post(url, body, operator_id=None)
        if status != 200:
            acknowledgement = _parse_acknowledgement(payload)
            if acknowledgement is not None and not acknowledgement.result:
                code = acknowledgement.status_code.code
                raise RejectedError(
                    code,
                    acknowledgement.status_code.description,
                    acknowledgement.status_code.additional_info,
                    info=classify(code),
                    url=url,
                    process_id=process_id,
                    hint=hint_for(status=status, code=code, url=url),
                )
            raise self._status_error(status, text, url, process_id, None)
        if payload is None:
            raise ResponseDecodeError(
                f"Hubject's answer is not JSON: {_excerpt(text)}", url=url, process_id=process_id
            )
        return payload

    # --- one HTTP exchange --------------------------------------------------------------------------

    async def _post(
        self, url: str, body: dict[str, Any] | Callable[[], AsyncIterator[bytes]], *, operator_id: str | None
    ) -> tuple[int, Any, str | None, str]:
        """POST once (after the throttle); (status, parsed JSON or None, Process-ID, raw text)."""
        session = self.session
        await self._wait_for_throttle()
        try:
            if callable(body):
                request = session.post(url, data=body(), headers={"Content-Type": "application/json"})
            else:
                request = session.post(url, json=body)
            async with request as response:
                text = await response.text(errors="replace")
                process_id = response.headers.get(PROCESS_ID_HEADER)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except _CAUGHT as exc:
            error = translate_client_error(exc, url)
            if self.settings.client_cert is None and isinstance(error, (ConnectionLostError, TLSError)):
                error.hint = (
                    "no client certificate is configured, and Hubject requires mutual TLS: "
                    "set client_cert and client_key"
                )
            raise error from exc
        try:
            payload: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = None
        if status == 429:
            self.throttle.rate_limited()
            raise RateLimitedError(
                status,
                _excerpt(text),
                url=url,
                process_id=process_id,
                retry_after=retry_after,
                hint=hint_for(status=status, code=None, url=url),
            )
        if status >= 500 and retry_after is not None:
            raise HTTPStatusError(
                status, _excerpt(text), url=url, process_id=process_id, retry_after=retry_after
            )
        if status == 200:
            self.throttle.succeeded()
        return status, payload, process_id, text

    def _status_error(
        self,
        status: int,
        text: str,
        url: str,
        process_id: str | None,
        operator_id: str | None,
    ) -> HTTPStatusError:
        return HTTPStatusError(
            status,
            _excerpt(text),
            url=url,
            process_id=process_id,
            hint=hint_for(status=status, code=None, url=url, operator_id=operator_id),
        )


def _parse_acknowledgement(payload: Any) -> Acknowledgement | None:
    if not isinstance(payload, dict) or "Result" not in payload:
        return None
    try:
        return Acknowledgement.model_validate(payload)
    except ValidationError:
        return None


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= BODY_EXCERPT_CHARS else flat[:BODY_EXCERPT_CHARS] + "…"
