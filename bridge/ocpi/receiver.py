"""The OCPI receiver: versions, version details, credentials, and the Locations receiver interface.

Routes (``{v}`` is 2.1.1 or 2.2.1)::

    GET                 /ocpi/versions
    GET                 /ocpi/{v}                       version details
    GET POST PUT DELETE /ocpi/{v}/credentials
    GET PUT PATCH       /ocpi/{v}/locations/{country_code}/{party_id}/{location_id}[/{evse_uid}[/{conn_id}]]

Every request needs ``Authorization: Token ...`` (see ``bridge.ocpi.auth``); every answer is an OCPI
envelope; a store that cannot take a write (disk full, locked, read-only) gets HTTP 503, OCPI 3000 and
``Retry-After``; ``X-Request-ID``/``X-Correlation-ID`` are echoed. A Locations write is answered only once the
store has committed it; any refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.config import ReceiverConfig
from bridge.errors import StoreError
from bridge.feeds import AnswerObserver, FeedHealth, answer_observer
from bridge.ocpi.auth import Caller, Party, TokenStore
from bridge.ocpi.credentials import CredentialsModule
from bridge.ocpi.envelope import respond, respond_error
from bridge.ocpi.errors import (
    AuthenticationError,
    BodyTooLargeError,
    InvalidParametersError,
    MalformedJsonError,
    OcpiError,
    OcpiStatusError,
    PartyMismatchError,
    RequestTimeoutError,
    StoreUnavailableError,
    UnknownLocationError,
)
from bridge.ocpi.locations import OWN_ID, ObjectKind, ObjectPath, Outcome, WriteResult
from bridge.ocpi.service import LocationsService
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import SUPPORTED_VERSIONS, OcpiVersion

FetchMissing = Callable[[str, str, str], Awaitable[None]]

log = structlog.get_logger("bridge.ocpi.receiver")

MAX_BODY_BYTES = 1_000_000  # for apps built without a configuration; [ocpi.receiver] max_body_size wins
# Seconds a CPO is asked to wait before sending again what the store could not take.
STORE_RETRY_AFTER = 5
# The bridge's identity when no configuration gives one (tests): ReceiverConfig's defaults.
DEFAULT_OWN_PARTY = Party("ZZ", "OIB")

STORE_KEY = web.AppKey("ocpi_store", LocationsService)
TOKENS_KEY = web.AppKey("ocpi_tokens", TokenStore)
SESSION_KEY = web.AppKey("ocpi_client_session", aiohttp.ClientSession)

URL_ID_NAMES = ("location_id", "evse_uid", "connector_id")
URL_LIMITS = {
    OcpiVersion.V2_1_1: (v211.LOCATION_ID_MAX, v211.EVSE_UID_MAX, v211.CONNECTOR_ID_MAX),
    OcpiVersion.V2_2_1: (v221.LOCATION_ID_MAX, v221.EVSE_UID_MAX, v221.CONNECTOR_ID_MAX),
}


def build_receiver_app(
    store: LocationsService,
    config: ReceiverConfig,
    *,
    token_store: TokenStore | None = None,
    fetch_missing: FetchMissing | None = None,
    own_party: Party = DEFAULT_OWN_PARTY,
    max_body_bytes: int = MAX_BODY_BYTES,
    client_timeout: float = 10.0,
    feeds: FeedHealth | None = None,
    on_auth_failure: Callable[[], None] | None = None,
) -> web.Application:
    """The receiver app. ``fetch_missing(cc, party_id, location_id)`` (optional) refreshes a Location from
    the party's sender when a PATCH or sub-object PUT addresses a Location the bridge does not know.
    ``on_auth_failure()`` is called for every request refused for its token (the metrics count them)."""
    tokens = token_store or TokenStore(store.db, config.tokens)
    failures = AuthFailures()
    body_timeout = config.body_timeout
    observe = answer_observer(feeds) if feeds is not None else None
    app = web.Application(middlewares=[_answers(observe)], client_max_size=max_body_bytes)
    app[STORE_KEY] = store
    app[TOKENS_KEY] = tokens
    base = config.base_url
    versions_url = f"{base}/ocpi/versions"

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client_timeout)) as session:
            app[SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(client_session)

    async def caller(request: web.Request) -> Caller:
        try:
            return await tokens.authenticate(request.headers.get("Authorization"))
        except AuthenticationError as exc:
            source = request.remote or "unknown"
            recent, delay = failures.record(source, time.monotonic())
            # never the header itself: a near-miss may be a real token with one byte wrong
            log.warning(
                "ocpi_authentication_failed",
                reason=exc.message,
                source=source,
                method=request.method,
                path=request.path[:200],
                failures_last_minute=recent,
                held_back_s=delay,
            )
            if on_auth_failure is not None:
                on_auth_failure()
            if delay > 0:  # a source that keeps failing gets its answers ever later: guessing stays slow
                await asyncio.sleep(delay)
            raise

    def version_of(request: web.Request) -> OcpiVersion:
        try:
            return OcpiVersion(request.match_info["version"])
        except ValueError:
            raise web.HTTPNotFound() from None

    async def versions(request: web.Request) -> web.Response:
        await caller(request)
        data = [{"version": v.value, "url": f"{base}/ocpi/{v.value}"} for v in SUPPORTED_VERSIONS]
        return respond(request, data)

    async def version_details(request: web.Request) -> web.Response:
        await caller(request)
        version = version_of(request)
        root = f"{base}/ocpi/{version.value}"
        if version is OcpiVersion.V2_1_1:
            endpoints = [
                {"identifier": "credentials", "url": f"{root}/credentials"},
                {"identifier": "locations", "url": f"{root}/locations"},
            ]
        else:
            endpoints = [
                {"identifier": "credentials", "role": "SENDER", "url": f"{root}/credentials"},
                {"identifier": "credentials", "role": "RECEIVER", "url": f"{root}/credentials"},
                {"identifier": "locations", "role": "RECEIVER", "url": f"{root}/locations"},
            ]
        return respond(request, {"version": version.value, "endpoints": endpoints})

    def credentials_module(request: web.Request) -> CredentialsModule:
        return CredentialsModule(
            tokens,
            request.app[SESSION_KEY],
            versions_url,
            own_party,
            allow_local=config.allow_local_credentials_urls,
        )

    async def credentials(request: web.Request) -> web.Response:
        who = await caller(request)
        version = version_of(request)
        module = credentials_module(request)
        if request.method == "GET":
            return await module.get(request, version, who)
        if request.method == "DELETE":
            return await module.delete(request, version, who)
        body = await read_json(request, max_body_bytes, body_timeout)
        if request.method == "POST":
            return await module.post(request, version, who, body)
        return await module.put(request, version, who, body)

    async def resolved(version: OcpiVersion, path: ObjectPath) -> ObjectPath:
        if version is not OcpiVersion.V2_2_1:
            return path
        return await store.resolve_path(version, path)

    async def locations(request: web.Request) -> web.Response:
        who = await caller(request)
        version = version_of(request)
        path = object_path(request, version, who)
        if request.method == "GET":
            found = await store.get_object(path)
            if found is None and version is OcpiVersion.V2_2_1:
                found = await store.get_object(await resolved(version, path))
            if found is None:
                raise UnknownLocationError(f"unknown {path.kind.value} {path}")
            return respond(request, found)
        body = await read_json(request, max_body_bytes, body_timeout)
        write = store.put if request.method == "PUT" else store.patch
        if request.method == "PUT":
            # a PUT in another spelling must replace the stored object, not add a second one
            path = await resolved(version, path)
        body = align_ids(version, path, body)
        try:
            result = await write(version, path, body)
        except UnknownLocationError:
            stored = await resolved(version, path)
            if stored != path:  # 2.2.1 CiString: the object is stored in another spelling
                path, body = stored, align_ids(version, stored, body)
                result = await write(version, path, body)
                return answer_write(request, result)
            if fetch_missing is None:
                raise
            # transport_and_format PATCH: a failed PATCH means the sender's object is needed; with a
            # sender configured for this party, fetch it rather than lose the update, then apply again.
            try:
                await fetch_missing(path.country_code, path.party_id, path.location_id)
            except OcpiError as exc:
                raise UnknownLocationError(
                    f"unknown {path.kind.value} {path}; fetching it failed: {exc}"
                ) from exc
            result = await write(version, path, body)
        return answer_write(request, result)

    # the Locations routes first: nearly every request is one, and aiohttp tries routes in order
    # "[^/]+": aiohttp's default segment pattern refuses { and }, printable ASCII that OCPI ids may hold
    tail = "{cc:[^/]+}/{pid:[^/]+}/{location_id:[^/]+}"
    for suffix in (tail + "/{evse_uid:[^/]+}", tail, tail + "/{evse_uid:[^/]+}/{connector_id:[^/]+}"):
        for method in ("GET", "PUT", "PATCH"):
            app.router.add_route(method, "/ocpi/{version}/locations/" + suffix, locations)
    app.router.add_get("/ocpi/versions", versions)
    app.router.add_get("/ocpi/{version}", version_details)
    for method in ("GET", "POST", "PUT", "DELETE"):
        app.router.add_route(method, "/ocpi/{version}/credentials", credentials)
    return app


AUTH_FAILURE_WINDOW = 60  # seconds over which a source's failed authentications are counted
AUTH_FAILURES_FREE = 10  # failures in the window answered at once (a CPO with a typo sees it quickly)
AUTH_FAILURE_MAX_DELAY = 2.0
AUTH_SOURCES_KEPT = 10_000


class AuthFailures:
    """Failed authentications per source address over the last ``AUTH_FAILURE_WINDOW`` seconds, and how
    long to hold the answer to the next one: nothing for the first ``AUTH_FAILURES_FREE``, then doubling
    from 50 ms up to ``AUTH_FAILURE_MAX_DELAY``. Bounded: the oldest source is forgotten first."""

    def __init__(self) -> None:
        self._by_source: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def record(self, source: str, now: float) -> tuple[int, float]:
        times = self._by_source.pop(source, None) or collections.deque()
        times.append(now)
        while times and times[0] < now - AUTH_FAILURE_WINDOW:
            times.popleft()
        self._by_source[source] = times
        if len(self._by_source) > AUTH_SOURCES_KEPT:
            self._by_source.popitem(last=False)
        excess = len(times) - AUTH_FAILURES_FREE
        delay = 0.0 if excess <= 0 else min(AUTH_FAILURE_MAX_DELAY, 0.05 * 2 ** min(excess - 1, 10))
        return len(times), delay


def align_ids(version: OcpiVersion, path: ObjectPath, body: Any) -> Any:
    """OCPI 2.2.1 ids are CiString (types "CiString", changelog of 2.2.1): a body id equal to the URL's but
    for case takes the URL's spelling (which is the stored one, once ``resolve_path`` ran), so that the
    body-versus-URL check compares case-insensitively and the stored spelling is kept. 2.1.1 ids are
    plain strings: compared as they are."""
    if version is not OcpiVersion.V2_2_1 or not isinstance(body, dict):
        return body
    kind = path.kind
    wanted = [(OWN_ID[kind], path.own_id(kind))]
    if kind is ObjectKind.LOCATION:
        wanted += [("country_code", path.country_code), ("party_id", path.party_id)]
    changes = {
        key: value
        for key, value in wanted
        if isinstance(body.get(key), str)
        and value is not None
        and body[key] != value
        and body[key].lower() == value.lower()
    }
    return {**body, **changes} if changes else body


def answer_write(request: web.Request, result: WriteResult) -> web.Response:
    if result.outcome is Outcome.STALE:
        return respond(request, message="Ignored: older last_updated than the stored object")
    # status_codes: 201 when the object was newly created, 200 when it existed.
    return respond(request, http_status=201 if result.outcome is Outcome.CREATED else 200)


def object_path(request: web.Request, version: OcpiVersion, caller: Caller) -> ObjectPath:
    info = request.match_info
    own = caller.party
    country_code, party_id = info["cc"].upper(), info["pid"].upper()
    if (country_code, party_id) != (own.country_code, own.party_id):
        party = Party(country_code, party_id)
        raise PartyMismatchError(f"this token belongs to {own}; it cannot write or read {party}")
    location_id, evse_uid, connector_id = info["location_id"], info.get("evse_uid"), info.get("connector_id")
    ids = (location_id, evse_uid, connector_id)
    for name, value, limit in zip(URL_ID_NAMES, ids, URL_LIMITS[version], strict=True):
        if value is not None and len(value) > limit:
            raise InvalidParametersError(f"{name} in the URL is longer than {limit} characters")
    return ObjectPath(country_code, party_id, location_id, evse_uid, connector_id)


async def read_json(request: web.Request, max_body_bytes: int, within: float | None = None) -> Any:
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise BodyTooLargeError(
            f"the body is {request.content_length} bytes; the limit is {max_body_bytes}"
            " ([ocpi.receiver] max_body_size)"
        )
    try:
        if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
            raw = await request.read()
        else:
            async with asyncio.timeout(within):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BodyTooLargeError(
            f"the body exceeds the limit of {max_body_bytes} bytes ([ocpi.receiver] max_body_size)"
        ) from exc
    except TimeoutError as exc:
        raise RequestTimeoutError(f"the body did not arrive within {within:g} s") from exc
    except web.RequestPayloadError as exc:  # a gzip/deflate body that does not decompress (was HTTP 500)
        encoding = request.headers.get("Content-Encoding", "none")
        raise MalformedJsonError(
            f"the body cannot be read: it does not decode as its Content-Encoding ({encoding[:40]}) says"
        ) from exc
    try:
        # as json.loads does; an object's first two bytes ("{" and any non-NUL) can only be UTF-8
        encoding = (
            "utf-8" if raw[:1] == b"{" and raw[1:2] not in (b"", b"\x00") else json.detect_encoding(raw)
        )
        body = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJsonError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise MalformedJsonError("the body is not valid JSON: it is nested too deeply") from exc
    if not isinstance(body, dict):
        raise MalformedJsonError("the body must be a JSON object")
    return body


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python's parser would take them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf: no OCPI number is that large
        raise ValueError(f"{text[:20]} is out of range for a number")
    return value


# One decoder for every body (json.loads with hooks builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _answers(observe: AnswerObserver | None) -> Middleware:
    """The receiver's one middleware: OCPI errors as OCPI envelopes, and every final answer's HTTP status
    to ``observe`` (the feeds' health), in one wrapper around each request (each wrapper costs)."""

    @web.middleware
    async def answers(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own answers (404, 405, 413...): observed, re-raised
            if observe is not None:
                observe(request, exc.status, exc)
            raise
        except OcpiStatusError as exc:
            response = respond_error(request, exc)
            if isinstance(exc, AuthenticationError):
                response.headers["WWW-Authenticate"] = "Token"
        except StoreError as exc:
            # Nothing was committed (the write's transaction rolled back): refuse with a retryable error.
            log.error("ocpi_request_refused_store_unavailable", error=str(exc), path=request.path[:200])
            response = respond_error(
                request, StoreUnavailableError("the bridge cannot store this change right now; send it again")
            )
            response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        if observe is not None:
            observe(request, response.status, response)
        return response

    return answers
