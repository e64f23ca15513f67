"""One exception hierarchy for everything the OICP library raises.

::

    OICPError                      every error of this package
    ├── InvalidIDError             (also a ValueError) an EvseID/OperatorID/ProviderID breaks its pattern
    ├── ConfigurationError         settings that cannot work: unreadable key, bad URL, missing extra
    └── RequestError               a request to Hubject did not succeed: .retryable .retry_after
        │                          .process_id .hint .url
        ├── TransportError         no HTTP answer (retryable)
        │   ├── ConnectError       TCP/TLS connection not established
        │   │   └── TLSError       handshake failed: untrusted certificate, hostname, client cert
        │   │                      refused (NOT retryable: configuration)
        │   ├── RequestTimeoutError   no answer within the timeout
        │   └── ConnectionLostError   closed or reset before a whole answer arrived
        ├── HTTPStatusError        an HTTP status other than 200: .status .body_excerpt
        │   │                      (408, 429, 5xx retryable; other 4xx not)
        │   └── RateLimitedError   429 (Hubject Acceptable Use Policy)
        ├── ResponseDecodeError    HTTP 200 but not a valid OICP message (retryable)
        └── RejectedError          an eRoamingAcknowledgement with Result false: .code .info
                                   .record_level (retryable as the code catalogue says)

Third-party exceptions (aiohttp, zeep, lxml) are translated into these types once, at the boundary
(``oicp._http.translate_client_error`` for aiohttp, the SOAP codec for zeep/lxml), and chained with
``from exc``.

The retry policy (``oicp.RetryPolicy``) retries a ``RequestError`` whose ``retryable`` is true and re-raises
the last error when it gives up; there is no separate "gave up" type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oicp.codes import CodeInfo


class OICPError(Exception):
    """Base of every error raised by the ``oicp`` package."""


class InvalidIDError(OICPError, ValueError):
    """An EvseID, OperatorID or ProviderID does not match the official OICP pattern."""

    def __init__(self, kind: str, value: str, pattern: str) -> None:
        self.kind = kind
        self.value = value
        self.pattern = pattern
        super().__init__(f"{value!r} is not a valid {kind} (OICP pattern {pattern})")


class ConfigurationError(OICPError):
    """A client or simulator was configured in a way that cannot work (e.g. missing key file)."""


class RequestError(OICPError):
    """A request to Hubject did not succeed.

    ``retryable`` tells a retry policy whether sending the same request again may succeed.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        process_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.url = url
        self.process_id = process_id
        self.retry_after = retry_after
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.hint:
            text += f" — hint: {self.hint}"
        if self.process_id:
            text += f" (Hubject Process-ID {self.process_id})"
        return text


class TransportError(RequestError):
    """The request did not get an HTTP answer: connect failure, timeout, reset, TLS failure."""

    retryable = True


class ConnectError(TransportError):
    """The TCP or TLS connection to Hubject could not be established."""


class TLSError(ConnectError):
    """The TLS handshake failed (certificate not trusted, hostname mismatch, client cert refused).

    Not retryable: a configuration problem that repeating the request will not fix.
    """

    retryable = False


class RequestTimeoutError(TransportError):
    """Hubject did not answer within the configured timeout."""


class ConnectionLostError(TransportError):
    """The connection was closed or reset before a complete answer arrived."""


class HTTPStatusError(RequestError):
    """Hubject answered with an HTTP status other than 200.

    429, 408 and every 5xx are retryable; other 4xx are not (the request itself is wrong, or the
    client is not allowed to make it).
    """

    def __init__(
        self,
        status: int,
        body_excerpt: str,
        *,
        url: str | None = None,
        process_id: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        self.retryable = status in (408, 429) or status >= 500
        message = f"Hubject answered HTTP {status}"
        if body_excerpt:
            message += f": {body_excerpt}"
        super().__init__(message, url=url, process_id=process_id, retry_after=retry_after, hint=hint)


class RateLimitedError(HTTPStatusError):
    """HTTP 429 Too Many Requests (Hubject Acceptable Use Policy, section on rate limits)."""


class ResponseDecodeError(RequestError):
    """Hubject's answer had HTTP 200 but was not a valid OICP message.

    Retryable: a proxy or a partially deployed Hubject release can produce such answers briefly.
    """

    retryable = True


class RejectedError(RequestError):
    """Hubject answered with an eRoamingAcknowledgement whose Result is false.

    ``code`` is Hubject's StatusCode; whether it is retryable comes from the code catalogue.
    """

    def __init__(
        self,
        code: str,
        description: str | None,
        additional_info: str | None,
        *,
        info: CodeInfo,
        url: str | None = None,
        process_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.additional_info = additional_info
        self.info = info
        self.retryable = info.retryable
        parts = [f"Hubject rejected the request with code {code} ({info.meaning})"]
        if description and description != info.meaning:
            parts.append(f"description: {description}")
        if additional_info:
            parts.append(f"additional info: {additional_info}")
        super().__init__("; ".join(parts), url=url, process_id=process_id, hint=hint)

    @property
    def record_level(self) -> bool:
        """The code concerns the EVSE records named in the answer, not the whole request: a pusher can
        set those records aside and send the rest again (``oicp.codes.RECORD_LEVEL_CODES``)."""
        return self.info.record_level
