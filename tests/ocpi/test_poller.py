"""Polling a CPO's Locations sender: tested against the simulated CPO's sender over real loopback HTTP,
with the real OcpiStore on a real SQLite file; the EVSEs each change touched are recorded in its
transaction."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import SourceConfig
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim import SimulatedCpo
from bridge.ocpi.poller import PollError, SenderPoller, backoff_delay, next_link
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine
from bridge.store.port import Tx
from tests.engines import build_engine, table_names
from tests.ocpi.conftest import RecordingLocations

TOKEN = "poll-token-123"
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """One clock shared by the simulated CPO, the poller and the store: tests move time explicitly."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    sim: SimulatedCpo
    server: TestServer
    db: Engine
    store: RecordingLocations
    clock: FakeClock
    session: aiohttp.ClientSession
    url: str  # the store's [store] url
    pollers: list[SenderPoller] = field(default_factory=list)

    @property
    def versions_url(self) -> str:
        return str(self.server.make_url("/ocpi/versions"))

    def poller(
        self,
        *,
        token: str = TOKEN,
        db: Engine | None = None,
        store: RecordingLocations | None = None,
        **options: Any,
    ) -> SenderPoller:
        party = {} if self.sim.version is OcpiVersion.V2_2_1 else {"country_code": "DE", "party_id": "OBD"}
        source = SourceConfig(versions_url=self.versions_url, token=token, poll_interval=0.05, **party)
        options.setdefault("retry_base", 0.001)
        options.setdefault("rng", random.Random(1))
        poller = SenderPoller(
            source, store or self.store, db or self.db, session=self.session, clock=self.clock, **options
        )
        self.pollers.append(poller)
        return poller

    async def observations(self) -> list[tuple[str, str]]:
        def read(conn: Tx) -> list[tuple[str, str]]:
            if "test_observation" not in table_names(conn, self.db):
                return []
            rows = conn.execute("SELECT evse_uid, status FROM test_observation ORDER BY n").fetchall()
            return [(row[0], row[1]) for row in rows]

        return await self.db.read(read)

    async def observed_statuses(self) -> dict[str, OcpiEvseStatus]:
        """The latest observed status per EVSE uid: what downstream believes."""
        return {uid: OcpiEvseStatus(status) for uid, status in await self.observations()}


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(new_engine_url: Callable[[], str]) -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def make(
        *,
        locations: int = 120,
        evses: int = 2,
        version: OcpiVersion = OcpiVersion.V2_2_1,
        max_limit: int = 20,
    ) -> Rig:
        clock = FakeClock()
        sim = SimulatedCpo(
            seed=7,
            locations=locations,
            evses_per_location=evses,
            version=version,
            clock=clock,
            tokens=[TOKEN],
            max_limit=max_limit,
        )
        clock.advance(1)  # the fleet was built at START; polls start later (date_to is exclusive)
        server = TestServer(sim.build_sender_app())
        await server.start_server()
        url = new_engine_url()
        db = build_engine(url)
        await db.open()
        store = RecordingLocations(db, clock=clock)
        rig = Rig(sim, server, db, store, clock, aiohttp.ClientSession(), url)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for poller in rig.pollers:
            await poller.aclose()
        await rig.session.close()
        await rig.server.close()
        await rig.db.close()
        await rig.sim.aclose()


def changed_uids(before: dict[str, OcpiEvseStatus], after: dict[str, OcpiEvseStatus]) -> set[str]:
    return {uid for uid, status in after.items() if before[uid] is not status}


# --- pagination and full fetch ----------------------------------------------------------------------


async def test_full_poll_follows_every_page_and_delivers_each_evse_exactly_once(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=250, evses=2, max_limit=20)
    result = await rig.poller().poll_once(full=True)

    assert (result.pages, result.locations, result.complete) == (13, 250, True)
    observed = await rig.observations()
    assert len(observed) == 500
    assert len({uid for uid, _ in observed}) == 500
    assert await rig.observed_statuses() == rig.sim.current_statuses()
    offsets = [offset for offset, _, _ in rig.sim.sender.stats.list_requests]
    assert offsets == list(range(0, 250, 20))


async def test_first_poll_of_a_new_source_is_full_even_when_not_asked(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=30)
    result = await rig.poller().poll_once()
    assert result.full
    assert result.date_from is None
    assert await rig.observed_statuses() == rig.sim.current_statuses()


async def test_requested_page_limit_is_sent_and_capped_by_the_sender(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=50, max_limit=20)
    result = await rig.poller(page_limit=7).poll_once(full=True)
    assert result.pages == 8  # ceil(50 / 7): the sender honoured limit=7 and kept it in its Link
    assert await rig.observed_statuses() == rig.sim.current_statuses()


# --- incremental polls ------------------------------------------------------------------------------


async def test_incremental_poll_asks_only_for_changes_since_the_cursor(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=200, max_limit=25)
    poller = rig.poller()
    rig.clock.advance(600)  # the fleet's creation is now older than the overlap
    await poller.poll_once(full=True)
    before = rig.sim.current_statuses()
    observed_before = len(await rig.observations())

    rig.clock.advance(600)  # well past the overlap: only the new changes are in the window
    changes = rig.sim.step(12)
    rig.clock.advance(1)
    result = await poller.poll_once()

    changed_locations = {c.location_id for c in changes}
    assert not result.full
    assert result.date_from is not None
    assert result.locations == len(changed_locations)
    _, date_from, date_to = rig.sim.sender.stats.list_requests[-1]
    assert date_from is not None
    assert date_to is not None
    new = (await rig.observations())[observed_before:]
    assert sorted(uid for uid, _ in new) == sorted(changed_uids(before, rig.sim.current_statuses()))
    assert await rig.observed_statuses() == rig.sim.current_statuses()


async def test_overlap_refetches_recent_locations_without_duplicating_observations(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(locations=60)
    poller = rig.poller()  # default overlap: 60 s
    rig.sim.step(10)
    rig.clock.advance(5)
    await poller.poll_once(full=True)
    observed_after_full = len(await rig.observations())

    rig.clock.advance(10)  # inside the overlap: the 10 changes above are sent again
    result = await poller.poll_once()

    assert result.locations > 0
    assert result.changed == 0
    assert len(await rig.observations()) == observed_after_full


async def test_cursor_survives_a_restart_and_the_next_poll_is_incremental(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=40)
    rig.clock.advance(600)
    await rig.poller().poll_once(full=True)
    await rig.db.close()

    reopened = build_engine(rig.url)
    await reopened.open()
    try:
        rig.clock.advance(300)
        store = RecordingLocations(reopened, clock=rig.clock)
        result = await rig.poller(db=reopened, store=store).poll_once()
    finally:
        await reopened.close()
    assert not result.full
    assert result.date_from == START + timedelta(
        seconds=601 - 60
    )  # the first poll's start, minus the overlap
    assert result.locations == 0


async def test_locations_changed_while_paging_do_not_advance_the_cursor(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=100, max_limit=10)
    poller = rig.poller()
    await poller.poll_once(full=True)
    rig.clock.advance(600)
    rig.sim.step(30)
    rig.clock.advance(1)

    class ChangingWhilePaging:
        """Delegates to the real store; after the first page the CPO changes more EVSEs (mid-poll)."""

        def __init__(self) -> None:
            self.pages = 0

        async def apply_sender_locations(
            self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
        ) -> int:
            self.pages += 1
            if self.pages == 1:
                rig.clock.advance(1)
                rig.sim.step(5)
            return await rig.store.apply_sender_locations(country_code, party_id, version, locations)

    poller.sink = ChangingWhilePaging()
    moved = await poller.poll_once()
    assert not moved.complete

    poller.sink = rig.store
    rig.clock.advance(1)
    again = await poller.poll_once()
    assert again.complete
    assert again.date_from == moved.date_from  # the cursor stayed where it was
    assert await rig.observed_statuses() == rig.sim.current_statuses()


# --- failures ---------------------------------------------------------------------------------------


async def test_a_failing_page_is_retried_and_nothing_is_skipped_or_duplicated(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=100, max_limit=20)
    rig.sim.faults.fail_page_once(40)
    result = await rig.poller().poll_once(full=True)

    assert result.retries == 1
    assert result.complete
    assert rig.sim.sender.stats.failures_injected == 1
    offsets = [offset for offset, _, _ in rig.sim.sender.stats.list_requests]
    assert offsets == [0, 20, 40, 40, 60, 80]
    observed = await rig.observations()
    assert len(observed) == 200 == len({uid for uid, _ in observed})


async def test_a_poll_that_keeps_failing_raises_and_keeps_the_cursor(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=60, max_limit=20)
    poller = rig.poller(page_attempts=2)
    for _ in range(2):
        rig.sim.faults.fail_page_once(20)
    with pytest.raises(PollError, match="giving up after 2 attempts"):
        await poller.poll_once(full=True)
    assert await poller.cursors.load(poller.key) is None

    result = await poller.poll_once()
    assert result.full  # never completed: still a full fetch
    assert await rig.observed_statuses() == rig.sim.current_statuses()


async def test_a_wrong_token_is_a_poll_error_not_a_retry_loop(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=5)
    with pytest.raises(PollError, match="401"):
        await rig.poller(token="not-the-token").poll_once()
    assert rig.sim.sender.stats.list_requests == []


async def test_an_unreachable_source_is_a_poll_error(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=5)
    poller = rig.poller(page_attempts=1)
    await rig.server.close()
    with pytest.raises(PollError, match="versions"):
        await poller.poll_once()


# --- versions and auth ------------------------------------------------------------------------------


async def test_ocpi_2_1_1_source_uses_a_plain_token_and_the_configured_party(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=30, version=OcpiVersion.V2_1_1, max_limit=8)
    result = await rig.poller().poll_once(full=True)
    assert result.version is OcpiVersion.V2_1_1
    assert result.pages == 4
    assert await rig.observed_statuses() == rig.sim.current_statuses()
    assert await rig.store.location_count("DE", "OBD") == 30


async def test_ocpi_2_1_1_source_without_a_party_cannot_be_polled(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=3, version=OcpiVersion.V2_1_1)
    source = SourceConfig(versions_url=rig.versions_url, token=TOKEN)
    poller = SenderPoller(source, rig.store, rig.db, session=rig.session, clock=rig.clock)
    with pytest.raises(PollError, match="set country_code and party_id"):
        await poller.poll_once()


# --- fetch_location (the receiver's fetch_missing) --------------------------------------------------


async def test_get_location_returns_the_cpo_location_or_none(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=3)
    poller = rig.poller()
    location = await poller.get_location("DE", "OBD", "LOC1002")
    assert location is not None
    assert location["id"] == "LOC1002"
    assert {e["uid"] for e in location["evses"]} == {"LOC1002-1", "LOC1002-2"}
    assert await poller.get_location("DE", "OBD", "NOPE") is None
    assert await poller.get_location("NL", "XYZ", "LOC1002") is None  # another party's id


async def test_fetch_location_stores_the_cpo_location_for_the_receiver(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=3)
    poller = rig.poller()
    await poller.fetch_location("DE", "OBD", "LOC1003")
    stored = await rig.store.get_location("DE", "OBD", "LOC1003")
    assert stored is not None
    assert stored["id"] == "LOC1003"
    assert await rig.store.location_count("DE", "OBD") == 1
    await poller.fetch_location("DE", "OBD", "NOPE")  # unknown to the CPO: nothing stored, no error
    assert await rig.store.location_count("DE", "OBD") == 1


# --- the loop ---------------------------------------------------------------------------------------


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - polls a real system's observable state
            await asyncio.sleep(0.01)


async def test_run_keeps_polling_until_stopped_and_recovers_after_failures(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=40, max_limit=10)
    poller = rig.poller(page_attempts=1, max_backoff=0.05)
    rig.sim.faults.fail_page_once(0)  # the first poll fails outright; run backs off and tries again
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        truth = rig.sim.current_statuses()

        async def caught_up() -> bool:
            return await rig.observed_statuses() == truth

        await wait_for(caught_up)
        rig.clock.advance(600)
        rig.sim.step(8)
        truth = rig.sim.current_statuses()
        rig.clock.advance(1)
        await wait_for(caught_up)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert rig.sim.sender.stats.failures_injected == 1
    assert poller.consecutive_failures == 0


async def test_request_full_makes_the_next_poll_a_full_fetch(make_rig: RigFactory) -> None:
    rig = await make_rig(locations=20, max_limit=10)
    poller = rig.poller()
    await poller.poll_once(full=True)
    rig.sim.sender.stats.list_requests.clear()
    stop = asyncio.Event()
    poller.request_full()
    task = asyncio.create_task(poller.run(stop))

    async def full_fetch_seen() -> bool:
        return any(date_from is None for _, date_from, _ in rig.sim.sender.stats.list_requests)

    try:
        await wait_for(full_fetch_seen)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


# --- pure rules -------------------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_characters="<>"), max_size=40))
def test_next_link_finds_the_rel_next_target(target: str) -> None:
    header = f'<https://x.example/prev>; rel="prev", <https://x.example/l?{target}>; rel="next"'
    assert next_link(header) == f"https://x.example/l?{target}"
    assert next_link(f'<https://x.example/l?{target}>; rel="prev"') is None


@given(st.integers(min_value=0, max_value=60), st.floats(min_value=0.001, max_value=10), st.integers())
def test_backoff_grows_but_never_exceeds_the_cap(attempt: int, base: float, seed: int) -> None:
    delay = backoff_delay(attempt, base=base, cap=30.0, rng=random.Random(seed))
    ceiling = min(30.0, base * 2**attempt)
    assert ceiling / 2 <= delay <= ceiling
