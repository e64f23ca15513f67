"""OICP 2.3 REST: a pure JSON codec, and ``RestClient`` on top of the shared HTTP core.

eRoamingPushEvseStatus as a CPO (``POST /evsepush/v21/operators/{OperatorID}/status-records``),
eRoamingPullEvseStatus / ByOperatorID / ByID as an EMP (``POST /evsepull/v21/providers/{ProviderID}/
status-records``), wire names as in Hubject's OpenAPI (``oicp/openapi``). The codec functions
(``encode_push``, ``stream_push``, ``decode_push``, ``decode_pull``, ...) do no I/O; ``RestClient`` composes
them with ``oicp._http.HubjectSession``, which sends, throttles, serialises pushes and retries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self, Unpack
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from oicp._client import ClientSettings, PushResult, WireRecord
from oicp._hints import hint_for
from oicp._http import (
    PUSH_EVSE_DATA,
    PUSH_EVSE_STATUS,
    Answer,
    Body,
    HubjectSession,
    SessionOptions,
    accept_acknowledgement,
    excerpt,
    rejected_error,
    status_error,
)
from oicp._retry import RetryPolicy
from oicp._throttle import Throttle
from oicp.errors import ConfigurationError, RejectedError, ResponseDecodeError
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

DATA_TRANSACTION_ERROR = "009"
PULL_BY_ID_MAX = 100  # eRoamingPullEVSEStatusByID: EvseID maxItems 100 (EMP OpenAPI)
JSON_HEADERS = {"Content-Type": "application/json"}

# --- the codec (pure) ------------------------------------------------------------------------------------


def push_path(operator_id: OperatorID) -> str:
    return f"/evsepush/v21/operators/{quote(str(operator_id), safe='*')}/status-records"


def data_push_path(operator_id: OperatorID) -> str:
    """eRoamingPushEvseData (OICP 2.3 CPO 02; ``eRoamingPushEvseData`` in the CPO OpenAPI)."""
    return f"/evsepush/v23/operators/{quote(str(operator_id), safe='*')}/data-records"


def pull_path(provider_id: ProviderID) -> str:
    return f"/evsepull/v21/providers/{quote(str(provider_id), safe='*')}/status-records"


def encode(request: BaseModel) -> bytes:
    """A request model as the JSON body Hubject expects (wire names, optional fields left out)."""
    return json.dumps(request.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()


def stream_push(
    operator_id: OperatorID,
    action: ActionType,
    pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
    operator_name: str | None = None,
) -> Callable[[], AsyncIterator[bytes]]:
    """The push body written page by page, so a fullLoad of 100 000 EVSEs never sits in memory whole."""
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

    return body


def data_push_request(
    operator_id: OperatorID, operator_name: str, action: ActionType, records: Sequence[WireRecord]
) -> dict[str, Any]:
    """The eRoamingPushEvseData envelope (``eRoamingPushEvseData.yaml``), as
    ``oicp.evse_data.PushEvseDataRequest.to_wire()`` writes it (a test pins the two together); built here so
    the client needs none of that module's validation extras."""
    return {
        "ActionType": action.value,
        "OperatorEvseData": {
            "OperatorID": str(operator_id),
            "OperatorName": operator_name,
            "EvseDataRecord": [record.to_wire() for record in records],
        },
    }


def stream_data_push(
    operator_id: OperatorID,
    operator_name: str,
    action: ActionType,
    pages: Callable[[], AsyncIterator[Sequence[str]]],
) -> Callable[[], AsyncIterator[bytes]]:
    """An eRoamingPushEvseData body written page by page from records already in wire JSON, so a data
    fullLoad of 100 000 EVSEs is never parsed or held whole."""
    head = data_push_request(operator_id, operator_name, action, ())
    prefix, suffix = json.dumps(head).split('"EvseDataRecord": []')

    async def body() -> AsyncIterator[bytes]:
        yield (prefix + '"EvseDataRecord": [').encode()
        first = True
        async for page in pages():
            if not page:
                continue
            chunk = ",".join(page)
            yield (chunk if first else "," + chunk).encode()
            first = False
        yield ("]" + suffix).encode()

    return body


def _json(answer: Answer) -> Any:
    try:
        return json.loads(answer.body) if answer.body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _acknowledgement(payload: Any) -> Acknowledgement | None:
    if not isinstance(payload, dict) or "Result" not in payload:
        return None
    try:
        return Acknowledgement.model_validate(payload)
    except ValidationError:
        return None


def decode_push(answer: Answer, url: str, operator_id: str | None = None) -> Acknowledgement:
    """The acknowledgement of a successful push, or the error the answer amounts to."""
    acknowledgement = _acknowledgement(_json(answer))
    if acknowledgement is None:
        if answer.status != 200:
            raise status_error(answer, url, operator_id=operator_id)
        raise ResponseDecodeError(
            f"Hubject's answer is not an eRoamingAcknowledgement: {excerpt(answer.text)}",
            url=url,
            process_id=answer.process_id,
        )
    return accept_acknowledgement(acknowledgement, answer, url, operator_id=operator_id)


def decode_pull(answer: Answer, url: str) -> Any:
    """The JSON payload of a pull answer (HTTP 200), or the error the answer amounts to."""
    payload = _json(answer)
    if answer.status != 200:
        acknowledgement = _acknowledgement(payload)
        if acknowledgement is not None and not acknowledgement.result:
            raise rejected_error(acknowledgement, answer, url)
        raise status_error(answer, url)
    if payload is None:
        raise ResponseDecodeError(
            f"Hubject's answer is not JSON: {excerpt(answer.text)}", url=url, process_id=answer.process_id
        )
    return payload


def read_statuses(payload: Any, url: str) -> dict[EvseID, EvseStatus]:
    """An eRoamingEVSEStatus (answer to Pull and PullByOperatorID) as a flat map."""
    try:
        return PullEvseStatusResponse.model_validate(payload).statuses()
    except ValidationError as exc:
        raise ResponseDecodeError(f"not an eRoamingEVSEStatus: {exc}", url=url) from exc


def read_statuses_by_id(payload: Any, url: str) -> dict[EvseID, EvseStatus]:
    """An eRoamingEVSEStatusByID as a flat map."""
    try:
        return PullEvseStatusByIDResponse.model_validate(payload).statuses()
    except ValidationError as exc:
        raise ResponseDecodeError(f"not an eRoamingEVSEStatusByID: {exc}", url=url) from exc


def _operator_name(name: str | None) -> str:
    if not name:
        # OperatorName is mandatory in eRoamingPushEvseData (OICP 2.3 release notes)
        raise ConfigurationError("eRoamingPushEvseData needs the operator's name (OperatorName)")
    return name


# --- the client ---------------------------------------------------------------------------------------


class RestClient:
    """The OICP 2.3 REST client. Use as ``async with RestClient(settings) as client``."""

    def __init__(self, settings: ClientSettings, **options: Unpack[SessionOptions]) -> None:
        self._http = HubjectSession(settings, owner="RestClient", accept="application/json", **options)

    @property
    def settings(self) -> ClientSettings:
        return self._http.settings

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._http.retry_policy

    @property
    def throttle(self) -> Throttle:
        return self._http.throttle

    @property
    def base_url(self) -> str:
        return self.settings.url.rstrip("/")

    @property
    def target_url(self) -> str:
        """The URL the client's requests go to (TLS is used when it is https)."""
        return self.settings.url

    @property
    def url_hint(self) -> str | None:
        """A hint shown at start-up when the configured URL looks wrong."""
        if "/api/oicp" not in self.base_url:
            return hint_for(status=404, code=None, url=self.base_url)
        return None

    async def __aenter__(self) -> Self:
        await self._http.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.close()

    async def push_evse_status(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        operator_id = OperatorID(operator_id)
        body = encode(PushEvseStatusRequest.of(operator_id, action, records, operator_name))
        return await self._push(operator_id, body)

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Like ``push_evse_status``, but the records come page by page and the request body is streamed.
        ``pages()`` is called once per attempt."""
        operator_id = OperatorID(operator_id)
        return await self._push(operator_id, stream_push(operator_id, action, pages, operator_name))

    async def push_evse_data(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[WireRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """eRoamingPushEvseData: the same errors and retry policy as the status push, its own push lock and
        throttle (PushEVSEData, 375 calls per minute in Hubject's Acceptable Use Policy)."""
        operator_id = OperatorID(operator_id)
        request = data_push_request(operator_id, _operator_name(operator_name), action, records)
        return await self._push(operator_id, json.dumps(request).encode(), data=True)

    async def push_evse_data_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[str]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Like ``push_evse_data`` with the records as wire JSON texts, page by page; ``pages()`` is called
        once per attempt."""
        operator_id = OperatorID(operator_id)
        body = stream_data_push(operator_id, _operator_name(operator_name), action, pages)
        return await self._push(operator_id, body, data=True)

    async def _push(self, operator_id: OperatorID, body: Body, *, data: bool = False) -> PushResult:
        url = self.base_url + (data_push_path(operator_id) if data else push_path(operator_id))
        operation = PUSH_EVSE_DATA if data else PUSH_EVSE_STATUS

        async def once() -> tuple[Acknowledgement, str | None]:
            answer = await self._http.post(url, body, JSON_HEADERS, operation=operation)
            try:
                return decode_push(answer, url, str(operator_id)), answer.process_id
            except RejectedError as error:
                if data and error.code == DATA_TRANSACTION_ERROR:
                    # for EVSE data, 009 is an insert of a held record or an update of a missing one
                    # (OICP 2.3 EMP 02 action types): the same request would fail again
                    error.retryable = False
                raise

        return await self._http.push(once, operation=operation)

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
                request = PullEvseStatusByIDRequest(provider_id=provider_id, evse_ids=chunk)
                found.update(read_statuses_by_id(await self._pull(url, encode(request)), url))
            return found
        by_operator: PullEvseStatusRequest | PullEvseStatusByOperatorIDRequest
        if operator_ids is not None:
            by_operator = PullEvseStatusByOperatorIDRequest(
                provider_id=provider_id, operator_ids=tuple(OperatorID(o) for o in operator_ids)
            )
        else:
            by_operator = PullEvseStatusRequest(provider_id=provider_id)
        return read_statuses(await self._pull(url, encode(by_operator)), url)

    async def _pull(self, url: str, body: bytes) -> Any:
        async def once() -> Any:
            return decode_pull(await self._http.post(url, body, JSON_HEADERS), url)

        payload, _ = await self._http.call(once)
        return payload
