"""OICP 2.2 SOAP client: eRoamingPushEvseStatus as a CPO, eRoamingPullEvseStatus as an EMP.

Hubject kept its pre-2.2 services on SOAP next to REST; some CPO contracts still use them. ``SoapClient``
offers the interface of ``oicp.EvseStatusClient`` over the same HTTP core as ``RestClient``
(``oicp._http.HubjectSession``: models, errors, retry policy, throttle, mutual TLS, sequential pushes);
only the codec differs (``oicp._soap_codec``: zeep builds each envelope from the shipped WSDL, every body is
checked against the shipped XSD both ways). aiohttp sends: zeep's own transports would block the loop.

zeep and lxml are the ``soap`` extra: this module imports neither, so ``from oicp import SoapClient`` works
without them, and entering a client without them raises a ``ConfigurationError`` that says what to install.

The endpoint is ``{scheme://host:port of url}/ws/HubjectEvseStatus_V2.1``: the configured ``url`` is the
REST one (``…/api/oicp``), and Hubject serves its SOAP services under ``/ws/`` of the same host. A ``url``
whose path already contains ``/ws/`` is used as given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Self, Unpack
from urllib.parse import urlsplit, urlunsplit

from oicp._client import ClientSettings, PushResult
from oicp._hints import SOAP_PATH
from oicp._http import Body, HubjectSession, SessionOptions
from oicp._retry import RetryPolicy
from oicp._throttle import Throttle
from oicp.errors import ConfigurationError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import Acknowledgement, ActionType, EvseStatus, EvseStatusRecord, PushEvseStatusRequest

if TYPE_CHECKING:
    from oicp._soap_codec import SoapCodec
    from oicp.wsdl import SoapOperation


def soap_endpoint(url: str) -> str:
    """The EvseStatus SOAP endpoint for a configured Hubject URL (see the module docstring)."""
    parts = urlsplit(url.rstrip("/"))
    if "/ws/" in parts.path + "/":
        return urlunsplit(parts)
    return urlunsplit((parts.scheme, parts.netloc, SOAP_PATH, "", ""))


def _load_codec() -> SoapCodec:
    try:
        from oicp._soap_codec import SoapCodec
    except ImportError as exc:  # zeep/lxml absent: say which extra brings them
        raise ConfigurationError(
            f"SoapClient needs zeep and lxml ({exc.name} is missing): pip install 'oicp[soap]'"
        ) from exc
    return SoapCodec.load()


class SoapClient:
    """The OICP 2.2 SOAP client. Use as ``async with SoapClient(settings) as client``."""

    def __init__(self, settings: ClientSettings, **options: Unpack[SessionOptions]) -> None:
        self._http = HubjectSession(settings, owner="SoapClient", accept="text/xml", **options)
        self.endpoint = soap_endpoint(settings.url)
        self._codec: SoapCodec | None = None

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
    def target_url(self) -> str:
        """The URL the client's requests go to (TLS is used when it is https)."""
        return self.endpoint

    @property
    def codec(self) -> SoapCodec:
        if self._codec is None:
            raise ConfigurationError("SoapClient used outside 'async with'")
        return self._codec

    async def __aenter__(self) -> Self:
        # Reading the WSDL/XSD files is blocking I/O: keep it off the event loop.
        self._codec = await asyncio.to_thread(_load_codec)
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
        # The pydantic model checks what the REST client checks (IDs, name length) before any request.
        request = PushEvseStatusRequest.of(operator_id, action, records, operator_name)
        return await self._push(operator_id, self.codec.encode_push(request))

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        """Like ``push_evse_status``, but the records come page by page and the envelope is streamed.
        ``pages()`` is called once per attempt."""
        operator_id = OperatorID(operator_id)
        body = self.codec.stream_push(operator_id, action, pages, operator_name)
        return await self._push(operator_id, body)

    async def _push(self, operator_id: OperatorID, body: Body) -> PushResult:
        codec = self.codec
        headers = _headers("eRoamingPushEvseStatus")  # SoapOperation.PUSH; oicp.wsdl needs lxml, so not here

        async def once() -> tuple[Acknowledgement, str | None]:
            answer = await self._http.post(self.endpoint, body, headers)
            return codec.decode_push(answer, self.endpoint, str(operator_id)), answer.process_id

        return await self._http.push(once)

    async def pull_evse_status(
        self,
        provider_id: ProviderID,
        *,
        operator_ids: Sequence[OperatorID] | None = None,
        evse_ids: Sequence[EvseID] | None = None,
    ) -> dict[EvseID, EvseStatus]:
        codec = self.codec
        requests = codec.encode_pulls(
            ProviderID(provider_id),
            None if operator_ids is None else [OperatorID(o) for o in operator_ids],
            None if evse_ids is None else [EvseID(e) for e in evse_ids],
        )
        found: dict[EvseID, EvseStatus] = {}
        for operation, body in requests:
            found.update(await self._pull(codec, operation, body))
        return found

    async def _pull(
        self, codec: SoapCodec, operation: SoapOperation, body: bytes
    ) -> dict[EvseID, EvseStatus]:
        headers = _headers(operation.value)

        async def once() -> dict[EvseID, EvseStatus]:
            answer = await self._http.post(self.endpoint, body, headers)
            return codec.decode_pull(answer, operation, self.endpoint)

        statuses, _ = await self._http.call(once)
        return statuses


def _headers(action: str) -> dict[str, str]:
    return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
