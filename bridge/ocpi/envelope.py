"""The OCPI response envelope (transport_and_format, "Response format") and its aiohttp responses."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from bridge.ocpi.errors import OcpiStatusError
from bridge.ocpi.v221.models import format_datetime

SUCCESS = 1000
# 2.2.1 transport_and_format "Unique message IDs" / "Correlation IDs": the receiver echoes both headers.
ECHOED_HEADERS = ("X-Request-ID", "X-Correlation-ID")


# One encoder for every response: json.dumps(..., separators=...) builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_JSON = "application/json"


def timestamp(now: datetime | None = None) -> str:
    if now is None:  # every response carries one: the cheapest way to the same text
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return format_datetime(now)


def envelope(data: Any = None, status_code: int = SUCCESS, message: str = "Success") -> dict[str, Any]:
    """``data`` is left out when None: 2.2.1 advises not to set it where the spec does not say what it is."""
    body: dict[str, Any] = {"status_code": status_code, "status_message": message, "timestamp": timestamp()}
    if data is not None:
        body = {"data": data, **body}
    return body


def echoed(request_headers: Mapping[str, str]) -> dict[str, str]:
    return {name: request_headers[name] for name in ECHOED_HEADERS if name in request_headers}


def _headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    headers = echoed(request_headers)
    headers["Content-Type"] = _JSON
    return headers


def respond(
    request: web.Request,
    data: Any = None,
    *,
    status_code: int = SUCCESS,
    message: str = "Success",
    http_status: int = 200,
) -> web.Response:
    if data is None and status_code == SUCCESS:
        body = _success_body(timestamp(), message)
    else:
        body = _encode(envelope(data, status_code, message)).encode()
    return web.Response(status=http_status, body=body, headers=_headers(request.headers))


@functools.lru_cache(maxsize=8)
def _success_body(stamp: str, message: str) -> bytes:
    """The body of a success without data (nearly every answer to a CPO's push): a pure function of the
    response's timestamp (one a second) and message, so encoded once for all answers of that second."""
    body = {"status_code": SUCCESS, "status_message": message, "timestamp": stamp}
    return _encode(body).encode()


def respond_error(request: web.Request, error: OcpiStatusError) -> web.Response:
    return respond(
        request, status_code=error.status_code, message=error.message, http_status=error.http_status
    )
