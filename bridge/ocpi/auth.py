"""``Authorization: Token ...`` and the parties tokens belong to.

OCPI 2.2.1 sends the token base64-encoded, 2.1.1 plain (transport_and_format, "Authorization header").
Many CPOs get this wrong either way, so the receiver tolerates both on both versions: it tries the token
as given and, if it is valid base64, decoded. Tokens the bridge only compares (the pre-shared ones from
config, the ones it issues at registration) are held as SHA-256 digests; the token the bridge itself
presents to a CPO is kept as is, since it has to be sent.

Headers are compared as bytes: an ``Authorization`` value with a non-ASCII or undecodable byte is just an
unknown token (401), never an exception, and the header's text never reaches an error message or a log.
aiohttp hands header values over decoded as UTF-8 with ``surrogateescape``, which gives the bytes back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.config import TokenConfig
from bridge.ocpi.errors import AuthenticationError
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine
from bridge.store.port import Tx


@dataclass(frozen=True, slots=True)
class Party:
    country_code: str
    party_id: str

    def __str__(self) -> str:
        return f"{self.country_code}/{self.party_id}"

    @classmethod
    def of(cls, country_code: str, party_id: str) -> Party:
        # CiString (types.asciidoc): party ids compare case-insensitively; the store keys them upper-case.
        return cls(country_code.upper(), party_id.upper())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: the party and whether it authenticated with a registration token."""

    party: Party
    registered: bool
    token: str  # the token as presented (decoded), e.g. to answer GET /credentials


@dataclass(frozen=True, slots=True)
class Registration:
    """A completed credentials exchange with a CPO (either direction)."""

    party: Party
    version: OcpiVersion
    inbound_token: str | None  # the token the CPO presents to us (None when read back: only its hash is kept)
    outbound_token: str  # the token we present to the CPO
    versions_url: str
    endpoints: list[dict[str, Any]]
    credentials: dict[str, Any]


PRESHARED_HEADERS_KEPT = 64  # spellings of a header (Token/token, spacing, plain/base64) remembered


def header_bytes(header: str | bytes) -> bytes:
    """A header value as the bytes that were sent (see the module docstring)."""
    return header if isinstance(header, bytes) else header.encode("utf-8", "surrogateescape")


def hash_token(token: str | bytes) -> str:
    return hashlib.sha256(header_bytes(token)).hexdigest()


def token_candidates(header: str | bytes | None) -> list[bytes]:
    """The tokens an ``Authorization`` header may mean: as given, and base64-decoded if it decodes.

    The scheme is case-insensitive (RFC 7235 2.1: ``Token``, ``token``, ``TOKEN``)."""
    if not header:
        return []
    scheme, _, value = header_bytes(header).strip().partition(b" ")
    value = value.strip()
    if scheme.lower() != b"token" or not value:
        return []
    candidates = [value]
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return candidates
    if decoded and decoded.isascii() and decoded.decode("ascii").isprintable() and decoded != value:
        candidates.append(decoded)
    return candidates


def _text(token: bytes) -> str:
    # only called once the token matched one the bridge knows (configured or issued: text), so it decodes
    return token.decode("utf-8", "replace")


def token_header(token: str, version: OcpiVersion) -> str:
    """The header the bridge sends: base64 for 2.2.1, plain for 2.1.1."""
    if version is OcpiVersion.V2_2_1:
        return "Token " + base64.b64encode(token.encode()).decode("ascii")
    return f"Token {token}"


class TokenStore:
    """Pre-shared tokens from config plus the registrations kept in the store."""

    def __init__(self, db: Engine, preshared: Sequence[TokenConfig]) -> None:
        self.db = db
        self._preshared = {
            hash_token(t.token.get_secret_value()): Party.of(t.country_code, t.party_id) for t in preshared
        }
        # Authorization headers already seen to carry a pre-shared token (fixed for the process's life), by
        # the header's SHA-256: one hash per request instead of decoding and hashing each candidate. A
        # lookup by digest reveals nothing about the token, as comparing digests does not.
        self._preshared_headers: dict[str, Caller] = {}

    async def authenticate(self, header: str | bytes | None) -> Caller:
        header_digest = hash_token(header) if header else ""
        cached = self._preshared_headers.get(header_digest)
        if cached is not None:
            return cached
        candidates = token_candidates(header)
        if not candidates:
            raise AuthenticationError(
                "missing or malformed Authorization header: send 'Authorization: Token <token>'"
            )
        for token in candidates:
            digest = hash_token(token)
            for known, party in self._preshared.items():
                if hmac.compare_digest(known, digest):
                    caller = Caller(party, registered=False, token=_text(token))
                    if len(self._preshared_headers) < PRESHARED_HEADERS_KEPT:
                        self._preshared_headers[header_digest] = caller
                    return caller
        digests = [hash_token(token) for token in candidates]
        found = await self.db.read(lambda conn: [_by_hash(conn, digest) for digest in digests])
        for token, registration in zip(candidates, found, strict=True):
            if registration is not None:
                return Caller(registration.party, registered=True, token=_text(token))
        raise AuthenticationError("unknown token: it is neither configured nor issued at registration")

    async def registration(self, party: Party) -> Registration | None:
        return await self.db.read(lambda conn: _by_party(conn, party))

    async def save(self, registration: Registration) -> None:
        """Insert or replace the registration for its party (inbound_token must be set)."""
        assert registration.inbound_token is not None
        row = (
            registration.party.country_code,
            registration.party.party_id,
            registration.version.value,
            hash_token(registration.inbound_token),
            registration.outbound_token,
            registration.versions_url,
            json.dumps(registration.endpoints),
            json.dumps(registration.credentials),
            time.time(),
        )

        def write(tx: Tx) -> None:
            # what ``INSERT OR REPLACE`` did on SQLite, on both engines: a registration that holds this
            # token under another party goes (the token is unique), then this party's row is written
            tx.execute(DELETE_TOKEN_ELSEWHERE, (row[3], row[0], row[1]))
            tx.execute(UPSERT_REGISTRATION, row)

        await self.db.write(write)

    async def delete(self, party: Party) -> bool:
        def delete(conn: Tx) -> bool:
            sql = "DELETE FROM ocpi_registration WHERE country_code=? AND party_id=?"
            return conn.execute(sql, (party.country_code, party.party_id)).rowcount > 0

        return await self.db.write(delete)


DELETE_TOKEN_ELSEWHERE = """
DELETE FROM ocpi_registration WHERE inbound_sha256 = ? AND NOT (country_code = ? AND party_id = ?)
"""
UPSERT_REGISTRATION = """
INSERT INTO ocpi_registration
(country_code, party_id, version, inbound_sha256, outbound_token, versions_url, endpoints, credentials,
 registered_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (country_code, party_id) DO UPDATE
SET version = excluded.version, inbound_sha256 = excluded.inbound_sha256,
    outbound_token = excluded.outbound_token, versions_url = excluded.versions_url,
    endpoints = excluded.endpoints, credentials = excluded.credentials, registered_at = excluded.registered_at
"""


def _row_to_registration(row: Any) -> Registration | None:
    if row is None:
        return None
    return Registration(
        party=Party(row["country_code"], row["party_id"]),
        version=OcpiVersion(row["version"]),
        inbound_token=None,
        outbound_token=row["outbound_token"],
        versions_url=row["versions_url"],
        endpoints=json.loads(row["endpoints"]),
        credentials=json.loads(row["credentials"]),
    )


def _by_hash(conn: Tx, digest: str) -> Registration | None:
    row = conn.execute("SELECT * FROM ocpi_registration WHERE inbound_sha256=?", (digest,)).fetchone()
    return _row_to_registration(row)


def _by_party(conn: Tx, party: Party) -> Registration | None:
    sql = "SELECT * FROM ocpi_registration WHERE country_code=? AND party_id=?"
    return _row_to_registration(conn.execute(sql, (party.country_code, party.party_id)).fetchone())
