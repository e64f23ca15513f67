"""The bridge as an OCPI client: the one place that sends a request to another party.

Everything the bridge asks of a CPO goes through ``OcpiClient``: the poller's pages and discovery, the
credentials handshake in both directions. So there is one ``Authorization`` builder (``auth.token_header``),
one discovery routine (versions, then version details, with the fallback from base64 to a plain token on
HTTP 401), and one reading of the response envelope (transport_and_format, "Response format"). aiohttp
errors become ``OcpiTransportError`` here and nowhere else.

The CPO simulator (``bridge.ocpi.cpo_sim``) keeps its own client on purpose: a fake that shared this code
could not catch this code's mistakes.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge.ocpi.auth import token_header
from bridge.ocpi.errors import OcpiResponseError, OcpiTransportError
from bridge.ocpi.versions import SUPPORTED_VERSIONS, OcpiVersion

_LINK_NEXT = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


class RetryableResponseError(OcpiResponseError):
    """An answer worth sending the same request again for: HTTP 5xx or 429, or OCPI 3xxx (server errors)."""


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (RFC 8288; transport_and_format, Pagination)."""
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer, its envelope read: ``data`` as the party sent it, and the pagination headers."""

    method: str
    url: str
    http_status: int
    status_code: int | None
    message: str
    data: Any
    total: int | None
    next_url: str | None
    text: str
    style: OcpiVersion  # the token encoding sent: base64 (2.2.1) or plain (2.1.1)

    @property
    def summary(self) -> str:
        return f"{self.method} {self.url}: HTTP {self.http_status}, OCPI {self.status_code} {self.message!r}"

    def success(self) -> Any:
        """``data`` of a success answer (HTTP 2xx, OCPI 1xxx); else the error, retryable or not."""
        code = self.status_code
        if self.http_status >= 500 or self.http_status == 429 or (code is not None and 3000 <= code < 4000):
            raise RetryableResponseError(self.summary, http_status=self.http_status, status_code=code)
        if self.http_status >= 300 or code is None or not 1000 <= code < 2000:
            raise OcpiResponseError(self.summary, http_status=self.http_status, status_code=code)
        return self.data


def read_envelope(text: str) -> tuple[int | None, str, Any]:
    """(status_code, status_message, data) of an answer's body; (None, a snippet, None) if not an envelope."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("status_code"), int):
        return None, text[:200], None
    return body["status_code"], str(body.get("status_message") or ""), body.get("data")


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a party's versions URL led to: the highest common version and that version's endpoints."""

    version: OcpiVersion
    details_url: str
    endpoints: list[dict[str, Any]]
    # the token encoding the party accepted on its versions URL (base64 for 2.2.1 style, plain for 2.1.1)
    header_style: OcpiVersion

    def endpoint(self, identifier: str, role: str | None = None) -> str | None:
        """The URL of module ``identifier``, exactly as advertised (2.2.1: with ``role`` if the entry has
        one). Never trimmed: a URL is used as the party gave it."""
        for entry in self.endpoints:
            if entry.get("identifier") != identifier:
                continue
            if role is not None and "role" in entry and entry["role"] != role:
                continue
            url = entry.get("url")
            if isinstance(url, str):
                return url
        return None


class OcpiClient:
    """Requests to one party with one token. ``session`` is the caller's (or one of its own, closed by
    ``aclose``)."""

    def __init__(
        self, token: str, *, session: aiohttp.ClientSession | None = None, timeout: float = 30.0
    ) -> None:
        self.token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        url: str,
        version: OcpiVersion | None,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """One request; its answer, whatever it says. ``version`` None (a versions URL, before a version is
        chosen): the token base64-encoded first, as 2.2.1 wants, then plain on HTTP 401, as 2.1.1 wants."""
        styles = [version] if version is not None else [OcpiVersion.V2_2_1, OcpiVersion.V2_1_1]
        for index, style in enumerate(styles):
            headers = {"Authorization": token_header(self.token, style), "X-Request-ID": secrets.token_hex(8)}
            try:
                async with self._http().request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,  # a redirect could lead anywhere (see credentials.py)
                ) as response:
                    if response.status == 401 and index + 1 < len(styles):
                        continue
                    text = await response.text(errors="replace")
                    status = response.status
                    total_header = response.headers.get("X-Total-Count")
                    link = response.headers.get("Link")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise OcpiTransportError(f"{method} {url}: {exc!r}") from exc
            code, message, data = read_envelope(text)
            try:
                total = int(total_header) if total_header is not None else None
            except ValueError:
                total = None
            return Answer(method, url, status, code, message, data, total, next_link(link), text, style)
        raise AssertionError("unreachable: the last style returns")  # pragma: no cover

    async def request(self, method: str, url: str, version: OcpiVersion | None, body: Any = None) -> Any:
        """One request; the ``data`` of its success answer, else OcpiResponseError."""
        return (await self.call(method, url, version, body=body)).success()

    async def discover(self, versions_url: str) -> Discovery:
        """GET the versions list, pick the highest version both sides speak, GET its details."""
        versions = await self.call("GET", versions_url, None)
        data = versions.success()
        offered = {
            str(entry.get("version")): entry.get("url")
            for entry in (data if isinstance(data, list) else [])
            if isinstance(entry, dict)
        }
        version = next((v for v in SUPPORTED_VERSIONS if isinstance(offered.get(v.value), str)), None)
        if version is None:
            raise OcpiResponseError(f"GET {versions_url}: no common version (offered {sorted(offered)})")
        details_url = str(offered[version.value])
        details = await self.request("GET", details_url, version)
        endpoints = details.get("endpoints") if isinstance(details, dict) else None
        if not isinstance(endpoints, list):
            raise OcpiResponseError(f"GET {details_url}: version details without an endpoints list")
        return Discovery(version, details_url, [e for e in endpoints if isinstance(e, dict)], versions.style)
