"""The credentials objects, and the bridge registering itself with a CPO (on top of ``OcpiClient``).

``register_with_cpo`` is the credentials module's client side (credentials.asciidoc, "Registration"):
with the CPO's token A it discovers the CPO's versions, picks the highest common one, POSTs the bridge's
credentials (a fresh token B the CPO will use to call us) and keeps the CPO's answer (token C, which the
bridge presents from then on). Every request goes through ``bridge.ocpi.client.OcpiClient``.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from bridge.ocpi.auth import Party, Registration, TokenStore
from bridge.ocpi.client import OcpiClient
from bridge.ocpi.errors import OcpiResponseError, OcpiTransportError, RegistrationError
from bridge.ocpi.versions import OcpiVersion

DEFAULT_BUSINESS_NAME = "oicp-bridge"


def own_credentials(
    version: OcpiVersion, token: str, versions_url: str, party: Party, name: str = DEFAULT_BUSINESS_NAME
) -> dict[str, Any]:
    """The bridge's credentials object (credentials module) in ``version``'s shape."""
    details = {"name": name}
    if version is OcpiVersion.V2_1_1:
        return {
            "token": token,
            "url": versions_url,
            "business_details": details,
            "party_id": party.party_id,
            "country_code": party.country_code,
        }
    role = {
        "role": "EMSP",
        "business_details": details,
        "party_id": party.party_id,
        "country_code": party.country_code,
    }
    return {"token": token, "url": versions_url, "roles": [role]}


def credentials_party(version: OcpiVersion, credentials: Any) -> Party | None:
    """The CPO party named in a credentials object (2.2.1: the CPO role, else the first role)."""
    if not isinstance(credentials, dict):
        return None
    if version is OcpiVersion.V2_1_1:
        cc, pid = credentials.get("country_code"), credentials.get("party_id")
        return Party.of(cc, pid) if isinstance(cc, str) and isinstance(pid, str) else None
    roles = [r for r in credentials.get("roles") or [] if isinstance(r, dict)]
    roles.sort(key=lambda r: r.get("role") != "CPO")
    for role in roles:
        cc, pid = role.get("country_code"), role.get("party_id")
        if isinstance(cc, str) and isinstance(pid, str):
            return Party.of(cc, pid)
    return None


async def register_with_cpo(
    versions_url: str,
    token_a: str,
    *,
    session: aiohttp.ClientSession,
    own_versions_url: str,
    own_party: Party,
    token_store: TokenStore,
    business_name: str = DEFAULT_BUSINESS_NAME,
) -> Registration:
    """Register the bridge with a CPO using its token A; store and return the registration."""
    client = OcpiClient(token_a, session=session)
    try:
        discovery = await client.discover(versions_url)
        version, endpoints = discovery.version, discovery.endpoints
        credentials_url = discovery.endpoint("credentials", "RECEIVER") or discovery.endpoint("credentials")
        if credentials_url is None:
            raise RegistrationError(f"{discovery.details_url}: the CPO lists no credentials endpoint")
        token_b = secrets.token_urlsafe(32)
        body = own_credentials(version, token_b, own_versions_url, own_party, business_name)
        answer = await client.request("POST", credentials_url, version, body)
    except (OcpiTransportError, OcpiResponseError) as exc:
        raise RegistrationError(f"registration with {versions_url} failed: {exc}") from exc
    token_c = answer.get("token") if isinstance(answer, dict) else None
    party = credentials_party(version, answer)
    if not isinstance(token_c, str) or party is None:
        raise RegistrationError(f"{credentials_url}: the answer carries no token or no party: {answer!r}")
    registration = Registration(party, version, token_b, token_c, versions_url, endpoints, answer)
    await token_store.save(registration)
    return registration
