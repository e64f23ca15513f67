"""The HTTP core's pure rules: every aiohttp exception mapped, and the answer rules both codecs share."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from oicp import (
    Acknowledgement,
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
from oicp._http import Answer, accept_acknowledgement, excerpt, status_error, translate_client_error

URL_TEXT = "https://service-qa.hubject.com/api/oicp/evsepush/v21/operators/DE*ABC/status-records"
KEY = SimpleNamespace(host="service-qa.hubject.com", port=443, ssl=True)
REQUEST_INFO = aiohttp.RequestInfo(URL(URL_TEXT), "POST", CIMultiDictProxy(CIMultiDict()), URL(URL_TEXT))
REFUSED = ConnectionRefusedError(111, "Connection refused")


def _response_error(cls: type[aiohttp.ClientResponseError]) -> aiohttp.ClientError:
    return cls(REQUEST_INFO, (), status=502, message="Bad Gateway")


def _connector_error(cls: type[aiohttp.ClientConnectorError]) -> aiohttp.ClientError:
    return cls(KEY, REFUSED)  # type: ignore[arg-type]  # any object with host/port/ssl will do


# Every aiohttp.ClientError subclass: how to make one, and what it must become (type, retryable).
# A new aiohttp release with a new exception fails test_the_table_names_every_aiohttp_client_error until
# it is classified here (and, if it needs it, in translate_client_error).
EXPECTED: dict[str, tuple[Callable[[type], aiohttp.ClientError], type[RequestError], bool]] = {
    "ClientError": (lambda cls: cls("boom"), TransportError, True),
    "ClientResponseError": (_response_error, TransportError, True),
    "ContentTypeError": (_response_error, TransportError, True),
    "WSServerHandshakeError": (_response_error, TransportError, True),
    "ClientHttpProxyError": (_response_error, TransportError, True),
    "TooManyRedirects": (_response_error, TransportError, False),
    "ClientConnectionError": (lambda cls: cls("boom"), TransportError, True),
    "ClientConnectionResetError": (lambda cls: cls(104, "reset"), ConnectionLostError, True),
    "ClientOSError": (lambda cls: cls(32, "Broken pipe"), ConnectionLostError, True),
    "ClientConnectorError": (_connector_error, ConnectError, True),
    "ClientConnectorDNSError": (_connector_error, ConnectError, True),
    "ClientProxyConnectionError": (_connector_error, ConnectError, True),
    "UnixClientConnectorError": (lambda cls: cls("/run/sock", KEY, REFUSED), ConnectError, True),
    "ClientSSLError": (_connector_error, TLSError, False),
    "ClientConnectorSSLError": (_connector_error, TLSError, False),
    "ClientConnectorCertificateError": (
        lambda cls: cls(KEY, ssl.SSLCertVerificationError("self-signed certificate")),
        TLSError,
        False,
    ),
    "ServerConnectionError": (lambda cls: cls("boom"), TransportError, True),
    "ServerDisconnectedError": (lambda cls: cls(), ConnectionLostError, True),
    "ServerTimeoutError": (lambda cls: cls("read timed out"), RequestTimeoutError, True),
    "ConnectionTimeoutError": (lambda cls: cls("connect timed out"), RequestTimeoutError, True),
    "SocketTimeoutError": (lambda cls: cls("socket timed out"), RequestTimeoutError, True),
    "ServerFingerprintMismatch": (lambda cls: cls(b"a", b"b", "h", 443), TLSError, False),
    "ClientPayloadError": (lambda cls: cls("truncated"), ConnectionLostError, True),
    "UploadAbortedError": (lambda cls: cls("upload cut off"), TransportError, True),
    "InvalidURL": (lambda cls: cls("htp:/x"), TransportError, False),
    "InvalidUrlClientError": (lambda cls: cls("htp:/x"), TransportError, False),
    "InvalidUrlRedirectClientError": (lambda cls: cls("htp:/x", "bad redirect"), TransportError, False),
    "RedirectClientError": (lambda cls: cls("redirect"), TransportError, True),
    "NonHttpUrlClientError": (lambda cls: cls("ftp://x"), TransportError, False),
    "NonHttpUrlRedirectClientError": (lambda cls: cls("ftp://x"), TransportError, False),
}


def client_errors() -> Iterator[type[aiohttp.ClientError]]:
    pending: list[type[aiohttp.ClientError]] = [aiohttp.ClientError]
    seen: set[type[aiohttp.ClientError]] = set()
    while pending:
        cls = pending.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            pending.extend(cls.__subclasses__())


def test_the_table_names_every_aiohttp_client_error() -> None:
    assert {cls.__name__ for cls in client_errors()} <= set(EXPECTED)


def _name(cls: object) -> str:
    return str(getattr(cls, "__name__", cls))


@pytest.mark.parametrize("cls", sorted(client_errors(), key=_name), ids=_name)
def test_every_aiohttp_client_error_is_mapped(cls: type[aiohttp.ClientError]) -> None:
    make, error_type, retryable = EXPECTED[cls.__name__]
    error = translate_client_error(make(cls), URL_TEXT)
    assert type(error) is error_type
    assert error.retryable is retryable
    assert error.url == URL_TEXT


@pytest.mark.parametrize(
    ("exc", "error_type"),
    [
        (TimeoutError(), RequestTimeoutError),
        (ssl.SSLError(1, "tlsv13 alert certificate required"), TLSError),
        (ConnectionResetError(104, "reset by peer"), ConnectionLostError),
    ],
)
def test_the_non_aiohttp_errors_a_request_raises_are_mapped(exc: BaseException, error_type: type) -> None:
    assert type(translate_client_error(exc, URL_TEXT)) is error_type


def test_an_os_error_caused_by_tls_is_a_tls_error() -> None:
    exc = aiohttp.ClientOSError(1, "handshake")
    exc.__cause__ = ssl.SSLError(1, "certificate required")
    assert type(translate_client_error(exc, URL_TEXT)) is TLSError


# --- the answer rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [(429, RateLimitedError, True), (408, HTTPStatusError, True), (503, HTTPStatusError, True)]
    + [(status, HTTPStatusError, False) for status in (400, 401, 403, 404)],
)
def test_a_status_error_says_whether_to_retry(status: int, error_type: type, retryable: bool) -> None:
    error = status_error(Answer(status, b"  <html>\n nope </html>", "pid", 2.0), URL_TEXT)
    assert type(error) is error_type
    assert error.retryable is retryable
    assert (error.body_excerpt, error.process_id, error.retry_after) == ("<html> nope </html>", "pid", 2.0)


def test_excerpts_are_one_line_and_bounded() -> None:
    assert excerpt("a\n  b\tc") == "a b c"
    assert len(excerpt("x" * 1000)) == 301


ACK_FALSE = Acknowledgement.model_validate(
    {"Result": False, "StatusCode": {"Code": "603", "AdditionalInfo": "DE*ABC*E1"}}
)
ACK_TRUE = Acknowledgement.model_validate({"Result": True, "StatusCode": {"Code": "000"}})


def test_an_acknowledgement_counts_only_with_result_true_and_http_200() -> None:
    assert accept_acknowledgement(ACK_TRUE, Answer(200, b""), URL_TEXT) is ACK_TRUE
    with pytest.raises(HTTPStatusError):
        accept_acknowledgement(ACK_TRUE, Answer(500, b""), URL_TEXT)
    with pytest.raises(RejectedError) as caught:
        accept_acknowledgement(ACK_FALSE, Answer(200, b"", "pid"), URL_TEXT, operator_id="DE*ABC")
    assert (caught.value.code, caught.value.additional_info, caught.value.process_id) == (
        "603",
        "DE*ABC*E1",
        "pid",
    )
    assert caught.value.record_level
    assert "eRoamingPushEvseData" in (caught.value.hint or "")
