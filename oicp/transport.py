"""What the REST and SOAP clients share: settings, the retry policy, the throttle, one push at a time, and
the aiohttp session with mutual TLS and timeouts. Each client adds its wire format on top.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Self, TypeVar

import aiohttp

from oicp.client import ClientSettings, PushResult
from oicp.errors import ConfigurationError
from oicp.models import Acknowledgement
from oicp.retry import RetryHook, RetryPolicy, call_with_retries
from oicp.throttle import Throttle
from oicp.tls import client_ssl_context

T = TypeVar("T")


class HubjectTransport:
    """Base of ``RestClient`` and ``SoapClient``. Use the clients as ``async with Client(settings)``."""

    accept: str = "*/*"  # the Accept header of every request

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
        if not settings.url.startswith(("https://", "http://")):
            raise ConfigurationError(f"Hubject URL must start with https:// (got {settings.url!r})")
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy(
            max_attempts=settings.max_attempts,
            max_wait=settings.max_retry_interval,
            budget=settings.retry_budget,
        )
        self.throttle = throttle or Throttle(settings.max_calls_per_minute)
        self._on_retry = on_retry
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        # OICP 2.3 CPO 01, "Data push operations": one push of an operation in flight at a time.
        self._push_lock = asyncio.Lock()
        self._throttle_lock = asyncio.Lock()

    @property
    def target_url(self) -> str:
        """The URL the client's requests go to (TLS is used when it is https)."""
        return self.settings.url

    async def __aenter__(self) -> Self:
        ssl_context = client_ssl_context(self.settings) if self.target_url.startswith("https://") else False
        connector = aiohttp.TCPConnector(ssl=ssl_context, limit=32, keepalive_timeout=30.0)
        timeout = aiohttp.ClientTimeout(
            total=self.settings.connect_timeout + self.settings.timeout,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"Accept": self.accept}, raise_for_status=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ConfigurationError(f"{type(self).__name__} used outside 'async with'")
        return self._session

    async def _push_with_retries(
        self, attempt: Callable[[], Awaitable[tuple[Acknowledgement, str | None]]]
    ) -> PushResult:
        """One push: sequential with every other push of this client, retried per the policy."""
        async with self._push_lock:
            (acknowledgement, process_id), attempts = await self._with_retries(attempt)
        return PushResult(acknowledgement, process_id, attempts)

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        return await call_with_retries(
            attempt, self.retry_policy, sleep=self._sleep, clock=self._clock, on_retry=self._on_retry
        )

    async def _wait_for_throttle(self) -> None:
        async with self._throttle_lock:
            wait = self.throttle.reserve(self._clock())
        if wait > 0:
            await self._sleep(wait)
