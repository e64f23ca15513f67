"""The one HTTP core under both clients: ``RestClient`` and ``SoapClient`` each *have* a ``HubjectSession``.

It owns, once: the aiohttp session with mutual TLS and timeouts, the throttle, the push lock, the retry
policy with its ``on_retry`` hook, the mapping of aiohttp's exceptions to ``oicp.errors`` types, the
``Retry-After`` rule, the no-client-certificate hint, and the two answer rules both wire formats share
(``status_error`` and ``accept_acknowledgement``). The codecs (``oicp._rest``, ``oicp._soap_codec``) only
encode requests and decode ``Answer``s.

Pushes of one operation are strictly sequential, whatever the operator: "data push requests that address
the same operation MUST always be processed sequentially ... a partner system MUST always wait for the
Hubject system's operation response before initiating the next request" (OICP 2.3 CPO 01, Data push
operations; 02, eRoamingPushEvseStatus note). The lock and the throttle are per operation: an EVSE data
push and a status push may overlap, two data pushes never do; each operation has its own allowance in
Hubject's Acceptable Use Policy (PushEVSEStatus 2000, PushEVSEData 375 calls per minute). Pulls are not
pushes and may overlap (they share the status throttle).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict, TypeVar

import aiohttp

from oicp._client import ClientSettings, PushResult
from oicp._hints import NO_CLIENT_CERT, WireFormat, hint_for
from oicp._retry import RetryHook, RetryPolicy, call_with_retries
from oicp._throttle import Throttle
from oicp._tls import client_ssl_context
from oicp.codes import classify
from oicp.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    TLSError,
    TransportError,
)
from oicp.models import Acknowledgement

T = TypeVar("T")

PUSH_EVSE_STATUS = "PushEVSEStatus"  # the operations, as Hubject's Acceptable Use Policy names them
PUSH_EVSE_DATA = "PushEVSEData"

PROCESS_ID_HEADER = "Process-ID"
BODY_EXCERPT_CHARS = 300

Body = bytes | Callable[[], AsyncIterator[bytes]]
"""A request body: bytes, or a factory of a streamed body (called once per attempt)."""


class SessionOptions(TypedDict, total=False):
    """The keyword arguments both clients accept after ``settings`` (declared once, here)."""

    retry_policy: RetryPolicy | None
    throttle: Throttle | None
    on_retry: RetryHook | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP exchange as received: status, raw body, Hubject's Process-ID and Retry-After (seconds)."""

    status: int
    body: bytes
    process_id: str | None = None
    retry_after: float | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def excerpt(text: str) -> str:
    """A one-line excerpt of an answer body, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= BODY_EXCERPT_CHARS else flat[:BODY_EXCERPT_CHARS] + "…"


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


def translate_client_error(exc: BaseException, url: str) -> RequestError:
    """Map an aiohttp (or asyncio/ssl/OS) exception raised by a request to an ``oicp.errors`` type.

    The one place where aiohttp's exceptions become ours; a test walks every ``aiohttp.ClientError``
    subclass through it.
    """
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
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return TLSError(f"Hubject's certificate does not match the pinned fingerprint: {exc}", url=url)
    if isinstance(exc, ssl.SSLError) or (
        isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, ssl.SSLError)
    ):
        return TLSError(f"TLS failure talking to Hubject (client certificate refused?): {exc}", url=url)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return ConnectionLostError(f"the connection to Hubject was lost: {name}: {exc}", url=url)
    if isinstance(exc, OSError):
        return ConnectionLostError(f"the connection to Hubject failed: {name}: {exc}", url=url)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, aiohttp.TooManyRedirects)):
        # The URL (or where Hubject's answer redirects to) is wrong: repeating the request cannot help.
        error = TransportError(f"the request to {url} cannot be made: {name}: {exc}", url=url)
        error.retryable = False
        return error
    # Any other aiohttp.ClientError (an answer that broke HTTP, an upload cut off, a proxy's refusal): no
    # usable answer was received, and retrying is the safe default.
    return TransportError(f"request to Hubject failed: {name}: {exc}", url=url)


CAUGHT: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def status_error(
    answer: Answer, url: str, *, operator_id: str | None = None, protocol: WireFormat = "rest"
) -> HTTPStatusError:
    """The error for an answer whose HTTP status is not 200 and whose body says nothing better."""
    error_type = RateLimitedError if answer.status == 429 else HTTPStatusError
    return error_type(
        answer.status,
        excerpt(answer.text),
        url=url,
        process_id=answer.process_id,
        retry_after=answer.retry_after,
        hint=hint_for(status=answer.status, code=None, url=url, operator_id=operator_id, protocol=protocol),
    )


def rejected_error(
    acknowledgement: Acknowledgement,
    answer: Answer,
    url: str,
    *,
    operator_id: str | None = None,
    protocol: WireFormat = "rest",
) -> RejectedError:
    """The error for an eRoamingAcknowledgement whose Result is false (OICP 2.3 CPO 03, StatusCode)."""
    status_code = acknowledgement.status_code
    return RejectedError(
        status_code.code,
        status_code.description,
        status_code.additional_info,
        info=classify(status_code.code),
        url=url,
        process_id=answer.process_id,
        hint=hint_for(
            status=answer.status, code=status_code.code, url=url, operator_id=operator_id, protocol=protocol
        ),
    )


def accept_acknowledgement(
    acknowledgement: Acknowledgement,
    answer: Answer,
    url: str,
    *,
    operator_id: str | None = None,
    protocol: WireFormat = "rest",
) -> Acknowledgement:
    """A push succeeded only on Result true *and* HTTP 200; otherwise raise what the answer says."""
    if not acknowledgement.result:
        raise rejected_error(acknowledgement, answer, url, operator_id=operator_id, protocol=protocol)
    if answer.status != 200:
        raise status_error(answer, url, operator_id=operator_id, protocol=protocol)
    return acknowledgement


class HubjectSession:
    """Session, mTLS, throttle, push lock and retries for one client; see the module docstring."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        owner: str,
        accept: str,
        retry_policy: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        on_retry: RetryHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.url.startswith(("https://", "http://")):
            raise ConfigurationError(f"Hubject URL must start with https:// (got {settings.url!r})")
        self.settings = settings
        self.owner = owner  # the client's name, for "used outside 'async with'"
        self.accept = accept
        self.retry_policy = retry_policy or RetryPolicy(
            max_attempts=settings.max_attempts,
            max_wait=settings.max_retry_interval,
            budget=settings.retry_budget,
        )
        self.throttle = throttle or Throttle(settings.max_calls_per_minute)
        self._throttles = {
            PUSH_EVSE_STATUS: self.throttle,
            PUSH_EVSE_DATA: Throttle(settings.max_data_calls_per_minute),
        }
        self._on_retry = on_retry
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        # OICP 2.3 CPO 01, "Data push operations": one push of an operation in flight at a time.
        self._push_locks = {operation: asyncio.Lock() for operation in self._throttles}
        self._throttle_lock = asyncio.Lock()

    def throttle_of(self, operation: str) -> Throttle:
        """The throttle of one operation (``PUSH_EVSE_STATUS``, ``PUSH_EVSE_DATA``)."""
        return self._throttles[operation]

    async def open(self) -> None:
        ssl_context = client_ssl_context(self.settings) if self.settings.url.startswith("https://") else False
        connector = aiohttp.TCPConnector(ssl=ssl_context, limit=32, keepalive_timeout=30.0)
        timeout = aiohttp.ClientTimeout(
            total=self.settings.connect_timeout + self.settings.timeout,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"Accept": self.accept}, raise_for_status=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: Body, headers: dict[str, str], *, operation: str = PUSH_EVSE_STATUS
    ) -> Answer:
        """POST once, after the operation's throttle. Raises for what no codec can read differently: transport
        failures, 429, and 5xx with Retry-After (a gateway's 503 is honoured whatever its body says)."""
        if self._session is None:
            raise ConfigurationError(f"{self.owner} used outside 'async with'")
        throttle = self._throttles[operation]
        async with self._throttle_lock:
            wait = throttle.reserve(self._clock())
        if wait > 0:
            await self._sleep(wait)
        try:
            data = body if isinstance(body, bytes) else body()
            async with self._session.post(url, data=data, headers=headers) as response:
                answer = Answer(
                    response.status,
                    await response.read(),
                    response.headers.get(PROCESS_ID_HEADER),
                    parse_retry_after(response.headers.get("Retry-After")),
                )
        except CAUGHT as exc:
            error = translate_client_error(exc, url)
            if self.settings.client_cert is None and isinstance(error, (ConnectionLostError, TLSError)):
                error.hint = NO_CLIENT_CERT
            raise error from exc
        if answer.status == 429:
            throttle.rate_limited()
            raise status_error(answer, url)
        if answer.status >= 500 and answer.retry_after is not None:
            raise HTTPStatusError(
                answer.status,
                excerpt(answer.text),
                url=url,
                process_id=answer.process_id,
                retry_after=answer.retry_after,
            )
        if answer.status == 200:
            throttle.succeeded()
        return answer

    async def push(
        self,
        attempt: Callable[[], Awaitable[tuple[Acknowledgement, str | None]]],
        *,
        operation: str = PUSH_EVSE_STATUS,
    ) -> PushResult:
        """One push: sequential with every other push of the same operation by this client, retried per the
        policy."""
        async with self._push_locks[operation]:
            (acknowledgement, process_id), attempts = await self.call(attempt)
        return PushResult(acknowledgement, process_id, attempts)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """``attempt`` retried per the policy; its result and the number of attempts made."""
        return await call_with_retries(
            attempt, self.retry_policy, sleep=self._sleep, clock=self._clock, on_retry=self._on_retry
        )
