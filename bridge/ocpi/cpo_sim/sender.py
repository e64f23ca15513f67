"""Serve mode: the simulated CPO as an OCPI 2.2.1 / 2.1.1 Locations *sender* (what the bridge polls).

Routes (absolute URLs are built from the request's origin, so ephemeral ports just work):
- ``GET /ocpi/versions`` and ``GET /ocpi/{version}`` (version details: credentials + locations SENDER)
- ``GET /ocpi/{version}/locations`` with ``date_from``/``date_to``/``offset``/``limit``; answers carry
  ``X-Total-Count``, ``X-Limit`` and ``Link: <...>; rel="next"`` (OCPI 2.2.1 transport_and_format,
  Pagination) — ``date_from`` inclusive, ``date_to`` exclusive (mod_locations, GET Method)
- ``GET /ocpi/{version}/locations/{location_id}[/{evse_uid}]``
- ``POST/GET/PUT/DELETE /ocpi/{version}/credentials``: the bridge registers with this CPO

Auth: ``Authorization: Token <token>``, base64-encoded under 2.2.1, plain under 2.1.1, either on the
version-independent ``/ocpi/versions``. A registration token (OCPI's "token A") opens only the versions,
version details and credentials endpoints, and stops working once used.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from yarl import URL

from bridge.ocpi.cpo_sim.model import Clock, CpoFleet, Json, format_datetime, parse_datetime, system_clock
from bridge.ocpi.versions import OcpiVersion

DEFAULT_MAX_LIMIT = 100

# OCPI status codes used here (transport_and_format, "Status codes").
SUCCESS = 1000
CLIENT_ERROR = 2000
INVALID_PARAMETERS = 2001
UNKNOWN_LOCATION = 2003


@dataclass
class SenderFaults:
    """Injected failures. ``fail_pages``: page offset -> how many more GETs of it are answered HTTP 500."""

    fail_pages: dict[int, int] = field(default_factory=dict)

    def fail_page_once(self, offset: int) -> None:
        self.fail_pages[offset] = self.fail_pages.get(offset, 0) + 1

    def take_page_failure(self, offset: int) -> bool:
        left = self.fail_pages.get(offset, 0)
        if left <= 0:
            return False
        self.fail_pages[offset] = left - 1
        return True


@dataclass
class SenderAuth:
    """Tokens this CPO accepts, and what it learnt from a party that registered with it."""

    tokens: set[str] = field(default_factory=set)  # full access
    registration_tokens: set[str] = field(default_factory=set)  # OCPI token A: credentials only
    peer_credentials: Json | None = None  # the registered party's credentials (its token for us)
    issued_token: str | None = None  # the token we gave the registered party

    @property
    def peer_token(self) -> str | None:
        """The token this CPO must use to call the party that registered (for push mode)."""
        return None if self.peer_credentials is None else str(self.peer_credentials.get("token"))


@dataclass
class SenderStats:
    """What the sender was asked, for tests: every Locations list GET as (offset, date_from, date_to)."""

    list_requests: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    failures_injected: int = 0


def ocpi_body(data: Any, clock: Clock, status_code: int = SUCCESS, message: str = "Success") -> Json:
    body: Json = {
        "status_code": status_code,
        "status_message": message,
        "timestamp": format_datetime(clock()),
    }
    if data is not None:
        body["data"] = data
    return body


def token_from_header(header: str | None, version: OcpiVersion | None) -> set[str]:
    """The token(s) an ``Authorization`` header can mean: decoded base64 for 2.2.1, verbatim for 2.1.1,
    either when the version is not known yet (``/ocpi/versions``)."""
    if not header or not header.startswith("Token "):
        return set()
    raw = header.removeprefix("Token ").strip()
    candidates: set[str] = set()
    if version is not OcpiVersion.V2_2_1:
        candidates.add(raw)
    if version is not OcpiVersion.V2_1_1:
        # not base64: under 2.2.1 that is simply no valid token
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            candidates.add(base64.b64decode(raw, validate=True).decode("utf-8"))
    return candidates


class CpoSender:
    """The OCPI Locations sender over a ``CpoFleet``. ``app()`` builds the aiohttp application."""

    def __init__(
        self,
        fleet: CpoFleet,
        *,
        versions: Iterable[OcpiVersion] = (OcpiVersion.V2_2_1,),
        tokens: Iterable[str] = (),
        registration_tokens: Iterable[str] = (),
        max_limit: int = DEFAULT_MAX_LIMIT,
        clock: Clock = system_clock,
        base_url: str | None = None,
    ) -> None:
        self.fleet = fleet
        self.versions = tuple(versions)
        self.auth = SenderAuth(set(tokens), set(registration_tokens))
        self.faults = SenderFaults()
        self.stats = SenderStats()
        self.max_limit = max_limit
        self.clock = clock
        self.base_url = base_url.rstrip("/") if base_url else None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ocpi/versions", self.get_versions)
        app.router.add_get("/ocpi/{version}", self.get_version_details)
        app.router.add_get("/ocpi/{version}/", self.get_version_details)
        app.router.add_get("/ocpi/{version}/locations", self.get_locations)
        app.router.add_get("/ocpi/{version}/locations/{location_id}", self.get_location)
        app.router.add_get("/ocpi/{version}/locations/{location_id}/{evse_uid}", self.get_evse)
        credentials = "/ocpi/{version}/credentials"
        app.router.add_post(credentials, self.post_credentials)
        app.router.add_put(credentials, self.put_credentials)
        app.router.add_get(credentials, self.get_credentials)
        app.router.add_delete(credentials, self.delete_credentials)
        return app

    # --- helpers ---------------------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        return self.base_url or str(request.url.origin())

    def versions_url(self, request: web.Request) -> str:
        return f"{self._base(request)}/ocpi/versions"

    def _json(
        self, data: Any, status: int = 200, code: int = SUCCESS, message: str = "Success"
    ) -> web.Response:
        return web.json_response(ocpi_body(data, self.clock, code, message), status=status)

    def _authorize(self, request: web.Request, version: OcpiVersion | None, *, registration: bool) -> str:
        """The accepted token of this request, or raise 401."""
        allowed = self.auth.tokens | (self.auth.registration_tokens if registration else set())
        for token in token_from_header(request.headers.get("Authorization"), version):
            if token in allowed:
                return token
        raise _http_error(401, ocpi_body(None, self.clock, CLIENT_ERROR, "missing or invalid token"))

    # --- versions --------------------------------------------------------------------------------

    async def get_versions(self, request: web.Request) -> web.Response:
        self._authorize(request, None, registration=True)
        base = self._base(request)
        return self._json([{"version": v.value, "url": f"{base}/ocpi/{v.value}"} for v in self.versions])

    async def get_version_details(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        self._authorize(request, version, registration=True)
        base = f"{self._base(request)}/ocpi/{version.value}"
        endpoints: list[Json] = [
            {"identifier": "credentials", "url": f"{base}/credentials"},
            {"identifier": "locations", "url": f"{base}/locations"},
        ]
        if version is OcpiVersion.V2_2_1:  # 2.2.1 endpoints carry the role of this side
            endpoints[0]["role"] = "SENDER"
            endpoints[1]["role"] = "SENDER"
        return self._json({"version": version.value, "endpoints": endpoints})

    def _checked_version(self, request: web.Request) -> OcpiVersion:
        try:
            version = OcpiVersion(request.match_info["version"])
        except ValueError:
            version = None
        if version is None or version not in self.versions:
            raise _http_error(404, ocpi_body(None, self.clock, CLIENT_ERROR, "unknown OCPI version"))
        return version

    # --- locations -------------------------------------------------------------------------------

    async def get_locations(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        self._authorize(request, version, registration=False)
        query = request.query
        try:
            offset = int(query.get("offset", "0"))
            limit = min(int(query.get("limit", str(self.max_limit))), self.max_limit)
            date_from = _optional_datetime(query.get("date_from"))
            date_to = _optional_datetime(query.get("date_to"))
            if offset < 0 or limit < 1:
                raise ValueError("offset must be >= 0 and limit >= 1")
        except ValueError as exc:
            raise _http_error(400, ocpi_body(None, self.clock, INVALID_PARAMETERS, str(exc))) from None
        self.stats.list_requests.append((offset, query.get("date_from"), query.get("date_to")))
        if self.faults.take_page_failure(offset):
            self.stats.failures_injected += 1
            raise _http_error(500, {"error": "injected failure"})
        page = self.fleet.page(version, date_from=date_from, date_to=date_to, offset=offset, limit=limit)
        response = self._json(page.locations)
        response.headers["X-Total-Count"] = str(page.total)
        response.headers["X-Limit"] = str(self.max_limit)
        if offset + len(page.locations) < page.total:
            params = dict(query) | {"offset": str(offset + len(page.locations)), "limit": str(limit)}
            next_url = URL(f"{self._base(request)}{request.path}").with_query(params)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response

    async def get_location(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        self._authorize(request, version, registration=False)
        location = self.fleet.location(request.match_info["location_id"])
        if location is None:
            raise _http_error(404, ocpi_body(None, self.clock, UNKNOWN_LOCATION, "unknown location"))
        return self._json(self.fleet.location_json(location, version))

    async def get_evse(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        self._authorize(request, version, registration=False)
        location = self.fleet.location(request.match_info["location_id"])
        uid = request.match_info["evse_uid"]
        evse = None if location is None else next((e for e in location.evses if e.uid == uid), None)
        if evse is None:
            raise _http_error(404, ocpi_body(None, self.clock, UNKNOWN_LOCATION, "unknown EVSE"))
        return self._json(self.fleet.evse_json(evse, version))

    # --- credentials (OCPI 2.2.1 credentials, "Use cases": registration) -------------------------

    def own_credentials(self, request: web.Request, version: OcpiVersion, token: str) -> Json:
        fleet = self.fleet
        business = {"name": fleet.operator_name}
        if version is OcpiVersion.V2_1_1:
            return {
                "token": token,
                "url": self.versions_url(request),
                "business_details": business,
                "party_id": fleet.party_id,
                "country_code": fleet.country_code,
            }
        role = {
            "role": "CPO",
            "party_id": fleet.party_id,
            "country_code": fleet.country_code,
            "business_details": business,
        }
        return {"token": token, "url": self.versions_url(request), "roles": [role]}

    async def post_credentials(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        used = self._authorize(request, version, registration=True)
        if self.auth.peer_credentials is not None:
            raise _http_error(405, ocpi_body(None, self.clock, CLIENT_ERROR, "already registered; use PUT"))
        return await self._register(request, version, used)

    async def put_credentials(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        used = self._authorize(request, version, registration=False)
        if self.auth.peer_credentials is None:
            raise _http_error(405, ocpi_body(None, self.clock, CLIENT_ERROR, "not registered; use POST"))
        return await self._register(request, version, used)

    async def _register(self, request: web.Request, version: OcpiVersion, used: str) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("token") or not body.get("url"):
            message = "credentials need token and url"
            raise _http_error(400, ocpi_body(None, self.clock, INVALID_PARAMETERS, message))
        self.auth.registration_tokens.discard(used)  # token A works once
        if self.auth.issued_token is not None:
            self.auth.tokens.discard(self.auth.issued_token)
        issued = secrets.token_urlsafe(24)
        self.auth.tokens.add(issued)
        self.auth.issued_token = issued
        self.auth.peer_credentials = body
        return self._json(self.own_credentials(request, version, issued))

    async def get_credentials(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        used = self._authorize(request, version, registration=False)
        return self._json(self.own_credentials(request, version, used))

    async def delete_credentials(self, request: web.Request) -> web.Response:
        version = self._checked_version(request)
        self._authorize(request, version, registration=False)
        if self.auth.peer_credentials is None:
            raise _http_error(405, ocpi_body(None, self.clock, CLIENT_ERROR, "not registered"))
        if self.auth.issued_token is not None:
            self.auth.tokens.discard(self.auth.issued_token)
        self.auth.peer_credentials = self.auth.issued_token = None
        return self._json(None)


def _optional_datetime(value: str | None) -> datetime | None:
    return None if value is None else parse_datetime(value)


def _http_error(status: int, body: Json) -> web.HTTPException:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        405: web.HTTPMethodNotAllowed,
        500: web.HTTPInternalServerError,
    }
    error_class = classes[status]
    response = web.json_response(body)
    if error_class is web.HTTPMethodNotAllowed:
        return web.HTTPMethodNotAllowed("?", [], text=response.text, content_type="application/json")
    return error_class(text=response.text, content_type="application/json")
