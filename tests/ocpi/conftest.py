"""Fixtures for the OCPI tests: a real store on a temp file, the touched EVSEs recorded, the receiver on a
loopback port."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bridge.app import LINGERING_TIME
from bridge.config import ReceiverConfig, TokenConfig
from bridge.ocpi.locations import Document, ObjectPath, Outcome, WriteResult
from bridge.ocpi.receiver import FetchMissing, build_receiver_app
from bridge.ocpi.service import LocationsService
from bridge.ocpi.store import OcpiStore
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine
from bridge.store.port import Tx
from tests.engines import dump, open_engine, table_names

DATA = Path(__file__).parent.parent / "data" / "ocpi"
# One pre-shared token per party appearing in the OCPI examples.
PARTIES = [("NL", "TNM"), ("BE", "BEC"), ("SE", "EVC"), ("NL", "ALF"), ("NL", "ALL"), ("DE", "ALL")]
TOKENS = {(cc, pid): f"token-a-{cc.lower()}-{pid.lower()}" for cc, pid in PARTIES}


def load_example(version: str, name: str) -> Any:
    return json.loads((DATA / version / name).read_text(encoding="utf-8"))


class RecordingLocations:
    """The Locations service the receiver and the poller use, on the real ``OcpiStore``, that records
    each EVSE a change touched in a table, in the same transaction (as ``bridge.intake`` decides the
    outbox there): the OCPI side's tests see exactly what the intake would decide from."""

    def __init__(
        self, db: Engine, *, clock: Callable[[], datetime] | None = None, ocpi: OcpiStore | None = None
    ) -> None:
        self.db = db
        self.ocpi = ocpi or (OcpiStore(db) if clock is None else OcpiStore(db, clock=clock))

    async def get_object(self, path: ObjectPath) -> Document | None:
        return await self.ocpi.get_object(path)

    async def resolve_path(self, version: OcpiVersion, path: ObjectPath) -> ObjectPath:
        return await self.ocpi.resolve_path(version, path)

    async def get_location(self, country_code: str, party_id: str, location_id: str) -> Document | None:
        return await self.ocpi.get_location(country_code, party_id, location_id)

    async def remembered_evse_id(
        self, country_code: str, party_id: str, location_id: str, uid: str
    ) -> str | None:
        return await self.ocpi.remembered_evse_id(country_code, party_id, location_id, uid)

    async def location_count(self, country_code: str, party_id: str) -> int:
        return await self.ocpi.location_count(country_code, party_id)

    async def put(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        updated = self.ocpi.check_put(version, path, body)
        return await self.db.write(lambda tx: record(tx, self.ocpi.put_in(tx, version, path, body, updated)))

    async def patch(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        merged, updated = self.ocpi.check_patch(version, path, body)
        return await self.db.write(
            lambda tx: record(tx, self.ocpi.patch_in(tx, version, path, merged, updated))
        )

    async def apply_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> int:
        accepted = self.ocpi.check_sender_locations(country_code, party_id, version, locations)

        def write(tx: Tx) -> int:
            results = [record(tx, self.ocpi.put_in(tx, version, p, d, u)) for p, d, u in accepted]
            return sum(r.outcome in (Outcome.CREATED, Outcome.UPDATED) for r in results)

        return await self.db.write(write)


def record(tx: Tx, result: WriteResult) -> WriteResult:
    """Each EVSE the change touched, as a row of ``test_observation``."""
    tx.execute(
        "CREATE TABLE IF NOT EXISTS test_observation (n INTEGER PRIMARY KEY, country_code TEXT,"
        " party_id TEXT, location_id TEXT, evse_uid TEXT, evse_id TEXT, status TEXT, last_updated TEXT,"
        " publish INTEGER)"
    )
    tx.executemany(  # n: the order of recording (the same statement on both engines)
        "INSERT INTO test_observation VALUES"
        " ((SELECT coalesce(max(n), 0) + 1 FROM test_observation), ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (o.country_code, o.party_id, o.location_id, o.evse_uid, o.evse_id, o.status.value,
             o.last_updated.isoformat(), int(o.publish))
            for o in (t.state for t in result.touched)
        ],
    )  # fmt: skip
    return result


async def observations(db: Engine) -> list[dict[str, Any]]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        if "test_observation" not in table_names(tx, db):
            return []
        rows = tx.execute("SELECT * FROM test_observation ORDER BY n")
        return [dict(zip(row.keys(), row, strict=True)) for row in rows]

    return await db.read(read)


async def snapshot(db: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the OCPI side and the sink hold, to assert that a refused request changed nothing."""
    return await db.read(lambda tx: dump(tx, db))


@pytest.fixture
async def db(engine_url: str) -> AsyncIterator[Engine]:
    """The store on each engine in turn (``engine_url``)."""
    async with open_engine(engine_url) as database:
        yield database


@pytest.fixture
def store(db: Engine) -> RecordingLocations:
    return RecordingLocations(db)


@dataclass
class Reply:
    http_status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def status_code(self) -> int:
        return int(self.body["status_code"])

    @property
    def data(self) -> Any:
        return self.body.get("data")


@dataclass
class Client:
    """A CPO's view of the receiver: an HTTP session and a token, with OCPI's header encodings."""

    session: aiohttp.ClientSession
    base_url: str
    token: str | None
    base64_token: bool = True

    def headers(self) -> dict[str, str]:
        if self.token is None:
            return {}
        value = base64.b64encode(self.token.encode()).decode() if self.base64_token else self.token
        return {"Authorization": f"Token {value}"}

    async def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = {**self.headers(), **(headers or {})}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        async with self.session.request(method, url, data=data, headers=all_headers) as response:
            return Reply(response.status, await response.json(content_type=None), dict(response.headers))

    def as_token(self, token: str | None, *, base64_token: bool = True) -> Client:
        return Client(self.session, self.base_url, token, base64_token)

    async def discover_locations(self, version: str) -> str:
        """Discover as a CPO would: /ocpi/versions → version details → the locations endpoint."""
        versions = await self.call("GET", f"{self.base_url}/ocpi/versions")
        details_url = next(v["url"] for v in versions.data if v["version"] == version)
        details = await self.call("GET", details_url)
        return str(next(e["url"] for e in details.data["endpoints"] if e["identifier"] == "locations"))


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Receiver:
    base_url: str
    client: Client
    store: RecordingLocations


async def start_receiver(
    store: LocationsService,
    *,
    fetch_missing: FetchMissing | None = None,
    max_body_bytes: int = 1_000_000,
    allow_local_credentials_urls: bool = True,
) -> tuple[web.AppRunner, str]:
    """The receiver on a free loopback port. The simulated CPOs of the tests listen on loopback too,
    hence ``allow_local_credentials_urls`` on by default here (off by default in production)."""
    sock = free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    tokens = [
        TokenConfig(token=SecretStr(t), country_code=cc, party_id=pid) for (cc, pid), t in TOKENS.items()
    ]
    config = ReceiverConfig(
        listen=base_url.removeprefix("http://"),
        public_url=base_url,
        tokens=tokens,
        allow_local_credentials_urls=allow_local_credentials_urls,
    )
    app = build_receiver_app(store, config, fetch_missing=fetch_missing, max_body_bytes=max_body_bytes)
    runner = web.AppRunner(app, lingering_time=LINGERING_TIME)  # as bridge.app serves it
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, base_url


@pytest.fixture
async def receiver(store: RecordingLocations) -> AsyncIterator[Receiver]:
    runner, base_url = await start_receiver(store)
    async with aiohttp.ClientSession() as session:
        yield Receiver(base_url, Client(session, base_url, TOKENS[("BE", "BEC")]), store)
    await runner.cleanup()
