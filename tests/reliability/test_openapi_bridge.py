"""``docs/openapi-bridge.yaml`` is a valid OpenAPI 3.0 document, names every route our receiver and admin
API serve, and the answers of a real receiver and a real bridge's admin API conform to it (the bad-input
corpus and the fuzzing check their answers against it too)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.validation.response.exceptions import DataValidationError, InvalidData
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
from pydantic import SecretStr

from bridge.app import Bridge
from bridge.config import BridgeConfig, ReceiverConfig, TokenConfig
from bridge.ocpi.receiver import build_receiver_app
from oicp.simulator import HubjectSimulator, serve_simulator
from tests.reliability.ocpi_target import (
    LOCATION_211,
    ROOT_211,
    ROOT_221,
    Exchange,
    Target,
    serve_target,
)
from tests.reliability.openapi_bridge import SPEC_PATH, assert_conforms, bridge_openapi
from tests.secret_scan import SecretRegistry
from tests.test_end_to_end import bridge_config

ADMIN_TOKEN = "openapi-admin-token-4e2a"


def documented() -> set[tuple[str, str]]:
    document, _ = read_from_filename(str(SPEC_PATH))
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }


def as_template(path: str) -> str:
    """aiohttp's ``{name:regex}`` → OpenAPI's ``{name}``, with our segment names."""
    path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)
    return path.replace("{cc}", "{country_code}").replace("{pid}", "{party_id}")


def test_the_document_is_valid_openapi_3() -> None:
    document, _ = read_from_filename(str(SPEC_PATH))
    validate(document)
    assert document["openapi"].startswith("3.0")
    bridge_openapi()  # openapi-core loads it (and validates it again)


def test_every_receiver_and_admin_route_is_documented(tmp_path: Path) -> None:
    config = BridgeConfig(
        store={"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        hubject={"url": "http://127.0.0.1:9"},  # nothing is sent: only the routes are read
        operators=[{"operator_id": "DE*OBD"}],
    )
    bridge = Bridge.build(config, initial_resync=False)
    receiver = build_receiver_app(
        bridge.intake,
        ReceiverConfig(tokens=[TokenConfig(token=SecretStr("t" * 8), country_code="DE", party_id="OBD")]),
    )
    routes = {
        (route.method, as_template(route.resource.canonical))
        for app in (receiver, bridge.admin.build())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert routes == documented()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    async with serve_target(tmp_path) as served:
        yield served


async def test_receiver_answers_conform_for_every_documented_receiver_operation(target: Target) -> None:
    calls = [
        ("GET", "/ocpi/versions", None),
        ("GET", "/ocpi/2.2.1", None),
        ("GET", "/ocpi/2.1.1", None),
        ("GET", "/ocpi/9.9", None),
        ("GET", "/ocpi/2.2.1/credentials", None),
        ("DELETE", "/ocpi/2.2.1/credentials", None),
        ("PUT", "/ocpi/2.2.1/credentials", {"token": "x", "url": "http://127.0.0.1:9/versions", "roles": []}),
        ("POST", "/ocpi/2.2.1/credentials", b"[]"),
        ("GET", f"{ROOT_221}/LOC1", None),
        ("GET", f"{ROOT_221}/LOC1/3256", None),
        ("GET", f"{ROOT_221}/LOC1/3256/1", None),
        ("GET", f"{ROOT_221}/NOPE", None),
        ("PATCH", f"{ROOT_221}/LOC1/3256", {"status": "CHARGING", "last_updated": "2026-01-01T00:00:00Z"}),
        ("PATCH", f"{ROOT_221}/LOC1/3256/1", {"max_voltage": 400, "last_updated": "2026-01-01T00:00:00Z"}),
        ("PATCH", f"{ROOT_221}/LOC1", {"name": "n", "last_updated": "2026-01-01T00:00:00Z"}),
        ("PUT", f"{ROOT_211}/LOC2", {**LOCATION_211, "id": "LOC2"}),
        ("PUT", f"{ROOT_211}/LOC2/3257", LOCATION_211["evses"][1]),
        ("PUT", f"{ROOT_211}/LOC2/3257/1", LOCATION_211["evses"][1]["connectors"][0]),
        ("PATCH", f"{ROOT_211}/LOC2/3257", {"status": "BLOCKED"}),
        ("GET", "/ocpi/versions", "no token"),
    ]
    statuses = set()
    for method, path, body in calls:
        if body == "no token":
            answer = await target.call(method, path, token=None)
        elif isinstance(body, bytes):
            answer = await target.call(method, path, raw=body)
        elif body is None:
            answer = await target.call(method, path)
        else:
            answer = await target.call(method, path, body)
        statuses.add(answer.http_status)
    assert {200, 201, 401, 404} <= statuses
    assert len(target.exchanges) >= len(calls)
    for exchange in target.exchanges:
        assert_conforms(exchange)


def test_an_answer_that_is_not_an_envelope_does_not_conform() -> None:
    """The check bites: a 200 whose body is no OCPI envelope, or an undocumented status, is caught."""
    path = f"{ROOT_221}/LOC1"
    with pytest.raises((DataValidationError, InvalidData)):
        assert_conforms(Exchange("GET", path, None, 200, "application/json", b'{"data": {}}'))
    with pytest.raises((DataValidationError, InvalidData)):
        assert_conforms(Exchange("GET", path, None, 200, "application/json", b'{"status_code": "1000"}'))
    with pytest.raises(ResponseNotFound, match="418"):
        assert_conforms(Exchange("GET", path, None, 418, "application/json", b"{}"))
    with pytest.raises(AssertionError):
        assert_conforms(Exchange("GET", "/nowhere", None, 200, "application/json", b"{}"))


async def test_admin_answers_conform(tmp_path: Path, secrets_registry: SecretRegistry) -> None:
    secrets_registry.add(ADMIN_TOKEN)
    async with serve_simulator(HubjectSimulator()) as hubject:
        config = bridge_config(
            tmp_path, hubject, "rest", admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN}
        )
        bridge = Bridge.build(config, initial_resync=False)
        async with bridge.running(), aiohttp.ClientSession() as session:
            assert bridge.admin_url is not None
            exchanges = []
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            for method, path, headers in [
                ("GET", "/health", {}),
                ("GET", "/ready", {}),
                ("GET", "/metrics", {}),
                ("GET", "/status", {}),
                ("GET", "/status.json", {}),
                ("POST", "/resync", {}),
                ("POST", "/resync", {"Authorization": "Bearer wrong"}),
                ("POST", "/resync?operator=XX*NOPE", auth),
                ("POST", "/resync?refetch=1", auth),
                ("POST", "/resync?operator=DE*OBD&force=true", auth),
            ]:
                async with session.request(method, bridge.admin_url + path, headers=headers) as response:
                    body = await response.read()
                    exchanges.append(
                        Exchange(method, path, None, response.status, response.content_type, body)
                    )
    assert [e.http_status for e in exchanges] == [200, 200, 200, 200, 200, 401, 401, 400, 400, 200]
    for exchange in exchanges:
        assert_conforms(exchange)
