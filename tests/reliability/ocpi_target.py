"""The real OCPI receiver as the target of the bad-input corpus and the fuzzing: a SQLite store on a temp
file, the real outbox as its observation sink, pre-shared tokens as in ``tests/ocpi/conftest.py``, and a
client that records every exchange so it can be checked against ``docs/openapi-bridge.yaml``."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from bridge.intake import Decider, Intake
from bridge.mapping import StatusMapper
from bridge.ocpi.store import OcpiStore
from bridge.ownership import PartyBinding
from bridge.store.database import Database
from bridge.store.outbox import OutboxStore
from bridge.store.schema import MIGRATIONS
from oicp.ids import OperatorID
from tests.ocpi.conftest import TOKENS, load_example, start_receiver

TOKEN = TOKENS[("BE", "BEC")]
OTHER_PARTY_TOKEN = TOKENS[("NL", "TNM")]
LOCATION_221 = load_example("2.2.1", "location_example.json")  # BE/BEC LOC1, EVSEs 3256 and 3257
LOCATION_211 = {**load_example("2.1.1", "mod_locations__06.json"), "id": "LOC211"}  # EVSEs 3256, 3257
ROOT_221 = "/ocpi/2.2.1/locations/BE/BEC"
ROOT_211 = "/ocpi/2.1.1/locations/BE/BEC"


def token_header(token: str) -> str:
    return "Token " + base64.b64encode(token.encode()).decode()


@dataclass(frozen=True)
class Exchange:
    """One request and the receiver's answer, as seen on the wire."""

    method: str
    path: str  # as sent, percent-encoding kept
    request_body: bytes | None
    http_status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Answer:
    http_status: int
    text: str
    headers: dict[str, str]

    @property
    def envelope(self) -> dict[str, Any] | None:
        """The OCPI envelope, or None when the answer is not one (aiohttp's own 404/405/400)."""
        try:
            body = json.loads(self.text)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @property
    def status_code(self) -> int | None:
        envelope = self.envelope
        return None if envelope is None else envelope.get("status_code")


_DEFAULT = object()


@dataclass
class Target:
    base_url: str
    session: aiohttp.ClientSession
    db: Database
    store: Intake
    exchanges: list[Exchange] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = _DEFAULT,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        authorization: str | None = None,
        token: str | None = TOKEN,
        chunked: bool = False,
    ) -> Answer:
        """``path`` is sent as given (already percent-encoded); ``authorization`` overrides ``token``."""
        all_headers: dict[str, str] = {}
        if authorization is not None:
            all_headers["Authorization"] = authorization
        elif token is not None:
            all_headers["Authorization"] = token_header(token)
        data = raw if raw is not None else (None if body is _DEFAULT else json.dumps(body).encode())
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        url = URL(self.base_url + path, encoded=True)
        sent: Any = data
        if chunked and data is not None:
            sent = _chunks(data)  # no Content-Length: the body limit must hold while reading
        async with self.session.request(method, url, data=sent, headers=all_headers) as response:
            payload = await response.read()
            answer = Answer(response.status, payload.decode("utf-8", "replace"), dict(response.headers))
            self.exchanges.append(
                Exchange(method, path, data, response.status, response.content_type, payload)
            )
        return answer

    async def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        def read(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
            # every table: OCPI state (ocpi_location, ocpi_evse), the outbox, what it set aside, sequences
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {
                name: sorted(tuple(row) for row in conn.execute(f"SELECT * FROM {name}")) for name in names
            }

        return await self.db.read(read)


async def _chunks(data: bytes, size: int = 16_384) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@asynccontextmanager
async def serve_target(folder: Path, *, max_body_bytes: int = 64_000) -> AsyncIterator[Target]:
    """The receiver on a loopback port with LOC1 (2.2.1) and LOC211 (2.1.1) of BE/BEC stored."""
    # SQLite only: the receiver's answers to hostile input are the target, the engine is incidental (both
    # engines' OCPI paths run in tests/ocpi, parametrised by engine_url)
    db = Database(folder / "bridge.db", MIGRATIONS)
    await db.open()
    runner: web.AppRunner | None = None
    try:
        mapper = StatusMapper([OperatorID("BE*BEC")])
        decider = Decider(mapper, PartyBinding({OperatorID("BE*BEC"): None}))
        store = Intake(db, OcpiStore(db), OutboxStore(db), decider)
        runner, base_url = await start_receiver(store, max_body_bytes=max_body_bytes)
        async with aiohttp.ClientSession() as session:
            target = Target(base_url, session, db, store)
            for path, document in ((f"{ROOT_221}/LOC1", LOCATION_221), (f"{ROOT_211}/LOC211", LOCATION_211)):
                seeded = await target.call("PUT", path, document)
                assert seeded.status_code == 1000, seeded.text
            yield target
    finally:
        if runner is not None:
            await runner.cleanup()
        await db.close()
