"""The bridge as an OCPI client: versions discovery and registering itself with a CPO.

``register_with_cpo`` is the credentials module's client side (credentials.asciidoc, "Registration"):
with the CPO's token A it discovers the CPO's versions, picks the highest common one, POSTs the bridge's
credentials (a fresh token B the CPO will use to call us) and keeps the CPO's answer (token C, which the
bridge presents from then on). aiohttp errors are translated here into ``OcpiClientError`` subclasses.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp

from bridge.ocpi.auth import Party, Registration, TokenStore, token_header
from bridge.ocpi.envelope import unwrap
from bridge.ocpi.errors import OcpiResponseError, OcpiTransportError, RegistrationError
from bridge.ocpi.versions import SUPPORTED_VERSIONS, OcpiVersion

DEFAULT_BUSINESS_NAME = "oicp-bridge"


async def ocpi_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str,
    version: OcpiVersion,
    body: Any = None,
) -> Any:
    """Send one OCPI request and return the envelope's ``data``; raise on any non-1000 answer."""
    headers = {"Authorization": token_header(token, version), "X-Request-ID": secrets.token_hex(8)}
    try:
        async with session.request(method, url, json=body, headers=headers) as response:
            try:
                payload = await response.json(content_type=None)
            except ValueError as exc:
                raise OcpiResponseError(
                    f"{method} {url}: HTTP {response.status}, body is not JSON", http_status=response.status
                ) from exc
            http_status = response.status
    except aiohttp.ClientError as exc:
        raise OcpiTransportError(f"{method} {url}: {exc}") from exc
    except TimeoutError as exc:
        raise OcpiTransportError(f"{method} {url}: timed out") from exc
    try:
        status_code, message, data = unwrap(payload)
    except ValueError as exc:
        raise OcpiResponseError(
            f"{method} {url}: HTTP {http_status}, {exc}", http_status=http_status
        ) from exc
    if status_code != 1000 or http_status >= 400:
        raise OcpiResponseError(
            f"{method} {url}: HTTP {http_status}, OCPI {status_code} {message}",
            http_status=http_status,
            status_code=status_code,
        )
    return data


async def fetch_versions(
    session: aiohttp.ClientSession, versions_url: str, token: str
) -> tuple[OcpiVersion, str, OcpiVersion]:
    """GET the versions list; return (highest common version, its details URL, header style that worked).

    The header style is tried base64 (2.2.1) first, then plain (2.1.1), since which one a CPO expects is
    only known once its versions are known.
    """
    data: Any = None
    style = OcpiVersion.V2_2_1
    for style in (OcpiVersion.V2_2_1, OcpiVersion.V2_1_1):
        try:
            data = await ocpi_request(session, "GET", versions_url, token, style)
            break
        except OcpiResponseError as exc:
            if exc.http_status != 401 or style is OcpiVersion.V2_1_1:
                raise
    offered = {
        entry.get("version"): entry.get("url")
        for entry in (data if isinstance(data, list) else [])
        if isinstance(entry, dict)
    }
    for version in SUPPORTED_VERSIONS:
        url = offered.get(version.value)
        if isinstance(url, str):
            return version, url, style
    raise OcpiResponseError(f"GET {versions_url}: no common version (offered {sorted(map(str, offered))})")


async def fetch_endpoints(
    session: aiohttp.ClientSession, details_url: str, token: str, version: OcpiVersion
) -> list[dict[str, Any]]:
    data = await ocpi_request(session, "GET", details_url, token, version)
    endpoints = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(endpoints, list):
        raise OcpiResponseError(f"GET {details_url}: version details without an endpoints list")
    return [e for e in endpoints if isinstance(e, dict)]


def endpoint_url(endpoints: list[dict[str, Any]], identifier: str, role: str | None = None) -> str | None:
    """The URL of module ``identifier`` (2.2.1: with ``role`` if the entry has one)."""
    for entry in endpoints:
        if entry.get("identifier") != identifier:
            continue
        if role is not None and "role" in entry and entry["role"] != role:
            continue
        url = entry.get("url")
        if isinstance(url, str):
            return url
    return None


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
    try:
        version, details_url, _ = await fetch_versions(session, versions_url, token_a)
        endpoints = await fetch_endpoints(session, details_url, token_a, version)
        credentials_url = endpoint_url(endpoints, "credentials", "RECEIVER") or endpoint_url(
            endpoints, "credentials"
        )
        if credentials_url is None:
            raise RegistrationError(f"{details_url}: the CPO lists no credentials endpoint")
        token_b = secrets.token_urlsafe(32)
        body = own_credentials(version, token_b, own_versions_url, own_party, business_name)
        answer = await ocpi_request(session, "POST", credentials_url, token_a, version, body)
    except (OcpiTransportError, OcpiResponseError) as exc:
        raise RegistrationError(f"registration with {versions_url} failed: {exc}") from exc
    token_c = answer.get("token") if isinstance(answer, dict) else None
    party = credentials_party(version, answer)
    if not isinstance(token_c, str) or party is None:
        raise RegistrationError(f"{credentials_url}: the answer carries no token or no party: {answer!r}")
    registration = Registration(party, version, token_b, token_c, versions_url, endpoints, answer)
    await token_store.save(registration)
    return registration
