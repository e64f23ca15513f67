"""The loop every lane runs, and the small steps both kinds of lane share: the status lanes
(``bridge.dispatcher``) and the EVSE data lanes (``bridge.data_lane``).

A lane asks the pure scheduler (``bridge.lanes.next_step``) what to do and does it: a resync, a flush, a
settle, or a sleep until something wakes it; a lost lease or a failing store never ends it. What each step
does, and the little the loop itself does differently for a kind (the status lane's batch claimed ahead,
the data lane's deletes that wait for their status delete, the log messages, the outcome a resync request
gets), the kind supplies as a ``LaneKind``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from bridge.config import OperatorConfig, PushConfig
from bridge.errors import StoreError
from bridge.lanes import (
    Flush,
    LaneView,
    Resync,
    ResyncReason,
    Settle,
    Sleep,
    Step,
    on_monotonic,
    request_floor,
    sooner,
)
from bridge.leadership import Leadership, operator_lease
from bridge.leases import LeaseLostError
from oicp.errors import RequestError
from oicp.ids import OperatorID

BACKOFF_BASE = 1.0

OutcomeT = TypeVar("OutcomeT")
OutcomeT_co = TypeVar("OutcomeT_co", covariant=True)


class Pushed(Enum):
    """What came of pushing one group of records."""

    SETTLED = "settled"  # every record delivered or set aside
    UNNAMED = "unnamed"  # every record refused by a record-level code naming nobody: no evidence yet
    FAILED = "failed"  # the request failed; the records are pending again and the lane backs off


@dataclass
class ResyncRequest(Generic[OutcomeT]):
    """A fullLoad asked of a lane (``request_resync``); ``done`` gets its outcome."""

    force: bool
    done: asyncio.Future[OutcomeT]


@dataclass
class LaneState(Generic[OutcomeT]):
    """What every lane holds, whatever it pushes (``bridge.dispatcher.Lane``, ``bridge.data_lane.DataLane``):
    what the scheduler reads (``lane_view``) and what the status page shows. Times named ``*_at`` without
    ``wall`` are on the monotonic clock."""

    operator: OperatorConfig
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resyncs: collections.deque[ResyncRequest[OutcomeT]] = field(default_factory=collections.deque)
    pending: int = 0
    first_unpushed_at: float | None = None
    failures: int = 0
    request_floor: float = 0.0
    last_error: str | None = None
    last_push_at: float | None = None  # wall clock
    first_fullload_due: bool = False
    quiet_from: float = 0.0  # the first fullLoad's quiet period runs from here (the last new EVSE, or data)
    waiting_for_evses: bool = False  # the first fullLoad found an empty set: it waits for EVSEs
    settle_at: float | None = None  # when doubtful delivered records are pushed once more
    settle_fullload_at: float | None = None
    scheduled_resync_at: float | None = None
    refusal: str | None = None  # why the last fullLoad was refused by its guard (shown on /ready)
    term: int | None = None  # the leadership term this lane took over at (None: it does not lead)
    next_look: float = 0.0  # several replicas: when to look in the store for other replicas' intake

    @property
    def lease(self) -> str:
        return operator_lease(self.operator.operator_id)

    @property
    def operator_id(self) -> OperatorID:
        return self.operator.operator_id


LaneT = TypeVar("LaneT", bound=LaneState[Any])
LaneT_contra = TypeVar("LaneT_contra", bound=LaneState[Any], contravariant=True)


class LaneStore(Protocol):
    """What the shared steps need of a lane kind's outbox store."""

    async def recover(self, unsure_for: float, operator_id: OperatorID | None = None) -> object: ...

    async def settle(self, operator_id: OperatorID) -> tuple[int, float | None]: ...

    async def last_fullload(self, operator_id: OperatorID) -> tuple[float | None, int | None]: ...


class Resyncing(Protocol[LaneT_contra, OutcomeT_co]):
    def __call__(
        self, lane: LaneT_contra, *, force: bool, reason: ResyncReason
    ) -> Awaitable[OutcomeT_co]: ...


def _as_scheduled(lane: object, seconds: float | None, now: float) -> float | None:
    return seconds


@dataclass(frozen=True)
class LaneKind(Generic[LaneT, OutcomeT]):
    """What one kind of lane does at each step of the loop, and what it says."""

    take_over: Callable[[LaneT, int], Awaitable[None]]  # this replica leads the operator from a term on
    look_for_work: Callable[[LaneT], Awaitable[None]]  # several replicas: what others' intake committed
    step: Callable[[LaneT, float], Step]  # what to do now (``next_step`` on the lane's view)
    resync: Resyncing[LaneT, OutcomeT]
    flush: Callable[[LaneT], Awaitable[bool]]  # push one batch; False when nothing was pending or it failed
    settle: Callable[[LaneT], Awaitable[None]]
    failed: Callable[[OperatorID, str], OutcomeT]  # the outcome of a resync request the lane did not run
    lost_lead: Callable[[LaneT], None]  # the lease ended mid-step: forget what the step had under way
    lost_lead_message: str
    store_error_message: str
    # how long to sleep, given what the scheduler said (``None``: until woken)
    sleep: Callable[[LaneT, float | None, float], float | None] = _as_scheduled
    # this replica does not lead the operator (any more): what else it forgets (the loop then answers the
    # resync requests waiting here)
    stand_by: Callable[[LaneT], None] | None = None
    # after the drain at stop (the lane led and pushed what it could)
    drained: Callable[[LaneT, Any], Awaitable[None]] | None = None


@dataclass(frozen=True)
class LaneLoop(Generic[LaneT, OutcomeT]):
    """The loop of one kind of lane and the steps every kind takes alike (backoff, doubt, settle)."""

    kind: LaneKind[LaneT, OutcomeT]
    leadership: Leadership
    store: LaneStore
    push: PushConfig
    unsure_for: float
    initial_resync: bool
    monotonic: Callable[[], float]
    wall_clock: Callable[[], float]
    rng: random.Random
    log: Any  # the kind's structlog logger

    async def run(self, lane: LaneT, stop: asyncio.Event) -> None:
        """Run the lane's steps until ``stop`` is set; then answer the resync requests still waiting, and
        push what is pending if this replica still leads the operator."""
        kind = self.kind
        log = self.log.bind(operator_id=str(lane.operator_id))
        while not stop.is_set():
            # Cleared before deciding, not after: a notify or a resync request that arrives while a step
            # awaits must still end the wait below.
            lane.wake.clear()
            try:
                if not await self.leads(lane, stop):
                    continue
                now = self.monotonic()
                step = kind.step(lane, now)
                if isinstance(step, Resync):
                    await self.resync_step(lane, step.reason)
                elif isinstance(step, Flush):
                    await kind.flush(lane)
                elif isinstance(step, Settle):
                    await kind.settle(lane)
                else:
                    seconds = kind.sleep(lane, step.seconds if isinstance(step, Sleep) else None, now)
                    if self.leadership.shared:  # wake to look in the store for other replicas' intake
                        seconds = min(seconds or self.push.flush_interval, self.push.flush_interval)
                    await wait(lane.wake, stop, seconds)
            except LeaseLostError as exc:
                # Another replica may lead now: this one changed nothing (fenced) and stops; the next leader
                # takes what this one had in flight as pending again (its ``_take_over``).
                log.warning(kind.lost_lead_message, error=str(exc))
                kind.lost_lead(lane)
            except StoreError as exc:
                # The store failed (disk full, locked...): never let that end the lane. Records this step
                # had claimed are pending again at the next recovery; the lane tries again after a pause.
                log.error(kind.store_error_message, error=str(exc))
                with contextlib.suppress(StoreError):
                    await self.store.recover(self.unsure_for, lane.operator_id)
                lane.request_floor = self.monotonic() + max(0.05, self.push.max_retry_interval)
                await wait(lane.wake, stop, max(0.05, self.push.max_retry_interval))
        self.answer_waiting(lane, "stopping")
        await self._drain(lane, log)

    async def leads(self, lane: LaneT, stop: asyncio.Event) -> bool:
        """Whether this replica runs the lane's next step (bridge.leadership); if not, the lane waited.

        One process (SQLite): always, at no cost. Several replicas: only in the term the lane took over
        at; a leading lane also looks in the store every flush interval for what other replicas' intake
        committed (their commits notify only their own process)."""
        term = self.leadership.term(lane.lease)
        if term is None:
            if self.kind.stand_by is not None:
                self.kind.stand_by(lane)
            # the fullLoads asked here are the leader's to run
            holder = self.leadership.holder
            self.answer_waiting(lane, f"replica {holder} does not lead {lane.operator_id}: ask the leader")
            # /ready of this replica is about its own pushes: failures from when it led are not its now
            lane.term, lane.failures, lane.refusal = None, 0, None
            await wait(lane.wake, stop, self.leadership.recheck)
            return False
        if term != lane.term:
            await self.kind.take_over(lane, term)
        elif self.leadership.shared and lane.pending == 0 and self.monotonic() >= lane.next_look:
            await self.kind.look_for_work(lane)
        return True

    async def start_clocks(
        self, lane: LaneT, stored_pending: int, interval: float, now: float, wall: float
    ) -> None:
        """The lane's clocks from the store, as it starts or takes the lead: what is pending (the store
        just said ``stored_pending``), when the next scheduled fullLoad is due (``interval`` after the
        last one), and whether the first one is."""
        # what the intake notified while the store was read counts too: the read may predate its commit
        # (the receiver takes OCPI before the lanes start), and ``pending`` is an upper bound anyway
        lane.pending = max(lane.pending, stored_pending)
        if lane.first_unpushed_at is None and lane.pending:
            lane.first_unpushed_at = now
        lane.quiet_from = now
        last_at, _ = await self.store.last_fullload(lane.operator_id)
        if interval > 0 and last_at is not None:
            lane.scheduled_resync_at = on_monotonic(last_at + interval, now, wall)
        lane.first_fullload_due = self.initial_resync and interval > 0 and last_at is None

    async def _drain(self, lane: LaneT, log: Any) -> None:
        """Stopping: push what is pending now, without waiting for flush_interval; a failure ends it. Only
        the leading replica drains (another replica's lanes are the leader's to push)."""
        if lane.term is None or self.leadership.term(lane.lease) != lane.term:
            return
        with contextlib.suppress(StoreError):
            while await self.kind.flush(lane):
                pass
        if self.kind.drained is not None:
            await self.kind.drained(lane, log)

    async def run_until_idle(self, lanes: Iterable[LaneT], within: float) -> None:
        async with asyncio.timeout(within):
            for lane in lanes:
                while await self.kind.flush(lane):
                    pass

    async def request_resync(self, lanes: Sequence[LaneT], force: bool) -> list[OutcomeT]:
        """Queue a fullLoad in each of ``lanes`` and wait for the outcomes."""
        loop = asyncio.get_running_loop()
        requests = []
        for lane in lanes:
            request = ResyncRequest[OutcomeT](force, loop.create_future())
            lane.resyncs.append(request)
            lane.wake.set()
            requests.append(request)
        return [await request.done for request in requests]

    def answer_waiting(self, lane: LaneT, message: str) -> None:
        """Every resync request still waiting fails with ``message`` (the lane will not run it)."""
        for request in lane.resyncs:
            if not request.done.done():
                request.done.set_result(self.kind.failed(lane.operator_id, message))
        lane.resyncs.clear()

    async def resync_step(self, lane: LaneT, reason: ResyncReason) -> None:
        if reason is not ResyncReason.REQUESTED:
            await self.kind.resync(lane, force=False, reason=reason)
            return
        request = lane.resyncs.popleft()
        outcome = self.kind.failed(lane.operator_id, "the store failed")
        try:
            outcome = await self.kind.resync(lane, force=request.force, reason=reason)
        finally:
            if not request.done.done():
                request.done.set_result(outcome)

    # --- the steps every kind takes alike ---------------------------------------------------------------

    def backoff(self, lane: LaneT, error: RequestError | None) -> None:
        lane.failures += 1
        lane.last_error = str(error) if error is not None else lane.last_error
        lane.request_floor = request_floor(
            self.monotonic(),
            lane.failures,
            None if error is None else error.retry_after,
            retryable=True if error is None else error.retryable,
            base=BACKOFF_BASE,
            cap=self.push.max_retry_interval,
            rng=self.rng,
        )

    def acknowledged(self, lane: LaneT, doubt: float | None = None) -> None:
        """Hubject acknowledged a push: the lane's backoff ends. An acknowledgement that came only after a
        retried attempt leaves the earlier attempt's outcome in doubt for ``doubt`` seconds."""
        if doubt is not None:
            self.doubt(lane, doubt)
        lane.failures, lane.request_floor, lane.last_error = 0, 0.0, None
        lane.last_push_at = self.wall_clock()

    def doubt(self, lane: LaneT, seconds: float) -> None:
        """Records with an unknown outcome are pushed once more when ``seconds`` have passed."""
        lane.settle_at = sooner(lane.settle_at, self.monotonic() + seconds)

    async def settle(self, lane: LaneT) -> int:
        """Doubtful records whose quiet period ended are pending again (``store.settle``): how many; the
        lane settles again when the next doubt ends."""
        count, next_until = await self.store.settle(lane.operator_id)
        lane.settle_at = None
        if next_until is not None:
            lane.settle_at = on_monotonic(next_until, self.monotonic(), self.wall_clock())
        return count


def lane_view(lane: LaneState[Any], first_fullload_at: float | None, *, pending: int) -> LaneView:
    """What the scheduler (``bridge.lanes.next_step``) reads of a lane."""
    return LaneView(
        pending=pending,
        first_unpushed_at=lane.first_unpushed_at,
        request_floor=lane.request_floor,
        resync_requested=bool(lane.resyncs),
        first_fullload_at=first_fullload_at,
        settle_at=lane.settle_at,
        settle_fullload_at=lane.settle_fullload_at,
        scheduled_resync_at=lane.scheduled_resync_at,
    )


async def wait(wake: asyncio.Event, stop: asyncio.Event, seconds: float | None) -> None:
    """Until ``wake`` or ``stop`` is set, or ``seconds`` have passed (``None``: no limit)."""
    waking = asyncio.ensure_future(wake.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waking, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waking, stopping):
            task.cancel()
        await asyncio.gather(waking, stopping, return_exceptions=True)
