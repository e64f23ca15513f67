"""The credentials module as receiver (credentials.asciidoc / credentials.md): the CPO registers with us.

POST: the CPO, holding token A (pre-shared, from config), sends its credentials (token B and its versions
URL); the bridge fetches the CPO's versions with token B, keeps the registration and answers with a fresh
token C, which the CPO uses from then on. PUT: the same, by a registered CPO, rotating C. DELETE:
unregister. GET: the bridge's credentials for the caller.

The versions URL is the CPO's to choose, so fetching it must not let a CPO probe the bridge's own network
(its admin listener on loopback, a cloud metadata service on a link-local address): such targets are
refused unless ``[ocpi.receiver] allow_local_credentials_urls`` is set (``bridge.ocpi.targets``), redirects
are not followed, and the CPO gets a generic answer; what went wrong goes to the bridge's log only.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from bridge.ocpi.auth import Caller, Party, Registration, TokenStore
from bridge.ocpi.client import OcpiClient
from bridge.ocpi.credentials_client import credentials_party, own_credentials
from bridge.ocpi.envelope import respond
from bridge.ocpi.errors import (
    AlreadyRegisteredError,
    ClientApiError,
    NotRegisteredError,
    OcpiClientError,
    PartyMismatchError,
    UnsupportedVersionError,
)
from bridge.ocpi.locations import validate
from bridge.ocpi.targets import TargetRefusedError, check_target
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion

log = structlog.get_logger("bridge.ocpi.credentials")


class CredentialsModule:
    """The /ocpi/{version}/credentials handlers, bound to their dependencies."""

    def __init__(
        self,
        token_store: TokenStore,
        session: aiohttp.ClientSession,
        own_versions_url: str,
        own_party: Party,
        *,
        allow_local: bool = False,
    ) -> None:
        self.tokens = token_store
        self.session = session
        self.own_versions_url = own_versions_url
        self.own_party = own_party
        self.allow_local = allow_local

    async def get(self, request: web.Request, version: OcpiVersion, caller: Caller) -> web.Response:
        # The token in the answer is the one the caller uses with us: the one it just presented.
        return respond(request, own_credentials(version, caller.token, self.own_versions_url, self.own_party))

    async def post(
        self, request: web.Request, version: OcpiVersion, caller: Caller, body: Any
    ) -> web.Response:
        if caller.registered or await self.tokens.registration(caller.party) is not None:
            raise AlreadyRegisteredError(
                f"{caller.party} is already registered: use PUT to update or DELETE first"
            )
        return await self._register(request, version, caller, body)

    async def put(
        self, request: web.Request, version: OcpiVersion, caller: Caller, body: Any
    ) -> web.Response:
        if not caller.registered:
            raise NotRegisteredError(
                f"{caller.party} is not registered (use the token issued at registration)"
            )
        return await self._register(request, version, caller, body)

    async def delete(self, request: web.Request, version: OcpiVersion, caller: Caller) -> web.Response:
        if not caller.registered:
            raise NotRegisteredError(
                f"{caller.party} is not registered (use the token issued at registration)"
            )
        await self.tokens.delete(caller.party)
        return respond(request)

    async def _register(
        self, request: web.Request, version: OcpiVersion, caller: Caller, body: Any
    ) -> web.Response:
        model = v211.Credentials if version is OcpiVersion.V2_1_1 else v221.Credentials
        credentials = validate(model, body, "credentials")
        party = credentials_party(version, body)
        if party != caller.party:
            raise PartyMismatchError(
                f"the credentials name {party}, but this token belongs to {caller.party}"
            )
        token_b: str = credentials.token
        try:
            await check_target(credentials.url, allow_local=self.allow_local)
            discovery = await OcpiClient(token_b, session=self.session).discover(credentials.url)
        except (OcpiClientError, TargetRefusedError) as exc:
            # the detail (refused address, connection refused, HTTP status...) would tell a CPO what
            # listens where on the bridge's side: it goes to the log, the CPO gets the generic line
            log.warning("ocpi_credentials_versions_fetch_failed", party=str(caller.party), error=str(exc))
            raise ClientApiError(
                "could not GET your versions URL with the token you sent (see the credentials module)"
            ) from exc
        their_version = discovery.version
        if their_version is not version:
            raise UnsupportedVersionError(
                f"you registered over {version} but your highest common version with us is {their_version}:"
                f" register at {self.own_versions_url} over {their_version}"
            )
        endpoints = discovery.endpoints
        token_c = secrets.token_urlsafe(32)
        registration = Registration(party, version, token_c, token_b, credentials.url, endpoints, body)
        await self.tokens.save(registration)
        return respond(request, own_credentials(version, token_c, self.own_versions_url, self.own_party))
