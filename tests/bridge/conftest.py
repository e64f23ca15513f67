"""Fixtures for the bridge: a real SQLite store in tmp_path, the outbox on it, the Hubject simulator on a
loopback port and a real REST client to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.config import OperatorConfig, PushConfig, ResyncConfig
from bridge.dispatcher import Dispatcher
from bridge.intake import Decider, Intake
from bridge.mapping import StatusMapper
from bridge.metrics import Metrics
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.store import OcpiStore
from bridge.ownership import PartyBinding
from bridge.store.engine import Engine
from bridge.store.outbox import OutboxStore
from oicp import ClientSettings, RestClient, RetryPolicy
from oicp.ids import OperatorID
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.engines import open_engine

OPERATORS = [
    OperatorConfig(operator_id=OperatorID("DE*ABC"), operator_name="ABC"),
    OperatorConfig(operator_id=OperatorID("DE*DEF")),
]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def observation(
    evse: str,
    status: OcpiEvseStatus,
    seconds: float = 0.0,
    *,
    publish: bool = True,
    evse_id: str | None = "use-evse",
) -> EvseObservation:
    """An observation of EVSE ``DE*ABC*E<evse>`` (or ``evse`` itself if it contains '*')."""
    full_id = evse if "*" in evse else f"DE*ABC*E{evse}"
    return EvseObservation(
        country_code="DE",
        party_id="ABC",
        location_id="LOC1",
        evse_uid=full_id,
        evse_id=full_id if evse_id == "use-evse" else evse_id,
        status=status,
        last_updated=T0 + timedelta(seconds=seconds),
        publish=publish,
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until ``condition()`` holds (polling the real system), failing after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - polls a real system's observable state
            await asyncio.sleep(0.01)


@pytest.fixture
async def database(engine_url: str) -> AsyncIterator[Engine]:
    """The store on each engine in turn (``engine_url``)."""
    async with open_engine(engine_url) as db:
        yield db


@pytest.fixture
def outbox(database: Engine) -> OutboxStore:
    return OutboxStore(database)


def make_intake(database: Engine, outbox: OutboxStore | None = None, **mapper: Any) -> Intake:
    """The real intake on ``database``: OCPI state, decisions, outbox rows in one transaction."""
    operators = [op.operator_id for op in OPERATORS]
    decider = Decider(StatusMapper(operators, **mapper), PartyBinding({op: None for op in operators}))
    return Intake(database, OcpiStore(database), outbox or OutboxStore(database), decider)


@pytest.fixture
def intake(database: Engine, outbox: OutboxStore) -> Intake:
    return make_intake(database, outbox)


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


@pytest.fixture
async def client(hubject: ServedSimulator) -> AsyncIterator[RestClient]:
    settings = ClientSettings(url=hubject.url, timeout=2.0)
    policy = RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, budget=5.0)
    async with RestClient(settings, retry_policy=policy) as rest:
        yield rest


def make_dispatcher(
    intake: Intake,
    client: RestClient,
    *,
    flush_interval: float = 0.05,
    max_batch: int = 1000,
    **resync: float,
) -> Dispatcher:
    """A dispatcher on the intake's outbox, told of the intake's commits as in the bridge."""
    resync.setdefault("first_fullload_quiet", 0.0)
    dispatcher = Dispatcher(
        intake.outbox,
        client,
        OPERATORS,
        PushConfig(
            flush_interval=flush_interval, max_batch=max_batch, max_retry_interval=0.2, shutdown_timeout=5
        ),
        ResyncConfig(**resync),
        metrics=Metrics(),
        initial_resync=False,
        unsure_for=1.0,
    )
    intake.lanes = dispatcher
    return dispatcher
