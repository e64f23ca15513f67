"""The dispatcher: one sequential lane per operator that pushes the outbox to Hubject, and resyncs.

Each lane asks the pure scheduler (``bridge.lanes.next_step``) what to do and does it: push one batch, run
a fullLoad, settle doubtful rows, or sleep. Resyncs (``fullLoad``) run in the same lane, so nothing overtakes
anything for an operator; the OICP client adds the rule that only one push is in flight at a time (OICP 2.3
CPO 01, "Data push operations"). Lanes learn of new work from the intake after its commit (``notify``); a
change for one operator wakes only that operator's lane.

Failure handling (docs/bridge.md, docs/architecture.md):
- every failure backs off: the lane sends nothing to Hubject before its ``request_floor`` (exponential
  backoff with jitter, and never before a ``Retry-After`` Hubject gave, even one beyond the client's budget);
- a refusal that names EvseIDs of the batch (any non-retryable code, matched exactly) sets those aside —
  603 ones parked until the next fullLoad, others dead with Hubject's code — and the rest are pushed again;
- a record-level refusal that names nobody is bisected; a record is dead only when it is refused alone
  while a sibling half was accepted; a refusal that persists in every half is a request failure;
- a fullLoad refused by its guard is not retried before the next interval (or a forced resync), and shows
  on ``/ready``; a failed fullLoad backs off like a push.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from bridge.config import OperatorConfig, PushConfig, ResyncConfig
from bridge.errors import StoreError
from bridge.lane_loop import LaneKind, LaneLoop, LaneState, Pushed, lane_view
from bridge.lanes import Flush, LaneView, ResyncReason, Step, Timing, next_step, on_monotonic
from bridge.leadership import SOLE_TERM, Leadership, SoleLeader, while_leading
from bridge.metrics import Metrics
from bridge.outbox import (
    Record,
    RecordState,
    evse_key,
    fullload_refusal,
    halves,
    named_in,
    named_keys,
    split_by_action,
)
from bridge.store.outbox import FullLoadSnapshot, OutboxStore, Recovered
from oicp import EvseStatusClient
from oicp.codes import RECORD_LEVEL_CODES
from oicp.errors import RejectedError, RequestError, TransportError
from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord

if TYPE_CHECKING:
    from bridge.data_lane import DataLanes

# OICP requires EvseStatus in every EvseStatusRecord, also in a delete, where Hubject ignores it.
_DELETE_PLACEHOLDER = EvseStatus.UNKNOWN
# Codes caused by records, not by the request as a whole; 022 "Data error" may be either, so a batch
# answered 022 naming nobody is bisected like the others until the refused record is isolated.
RECORD_CODES = RECORD_LEVEL_CODES | {"022"}
UNKNOWN_EVSE = "603"
FULLLOAD_ROUNDS = 8  # each round sets aside the EvseIDs Hubject named, then sends the set again


class ResyncResult(StrEnum):
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class ResyncOutcome:
    operator_id: OperatorID
    result: ResyncResult
    records: int = 0
    parked: int = 0
    message: str = ""


@dataclass(frozen=True)
class _Result:
    kind: Pushed
    refusal: RejectedError | None = None  # for UNNAMED: what Hubject answered


_SETTLED, _FAILED = _Result(Pushed.SETTLED), _Result(Pushed.FAILED)


@dataclass
class Lane(LaneState[ResyncOutcome]):
    """One operator's status lane; what every lane holds is in ``LaneState``."""

    notified: int = 0  # how many times the intake told of new pending rows (see _flush_once)
    busy: bool = False
    fullload_doubt_until: float | None = None  # a fullLoad sent before this may be overtaken by a late one
    prefetched: list[Record] | None = None  # the next batch, claimed while the previous push was out

    def backoff_remaining(self, now: float) -> float:
        return max(0.0, self.request_floor - now) if self.failures else 0.0


class Dispatcher:
    def __init__(
        self,
        store: OutboxStore,
        client: EvseStatusClient,
        operators: Sequence[OperatorConfig],
        push: PushConfig,
        resync: ResyncConfig,
        *,
        metrics: Metrics | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        initial_resync: bool = True,
        unsure_for: float = 60.0,
        attempt_timeout: float = 30.0,
        sources_ready: Callable[[], bool] = lambda: True,
        rng: random.Random | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.push = push
        self.resync_config = resync
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.initial_resync = initial_resync
        self.unsure_for = unsure_for  # ~2x the client's timeout: after it, a lost attempt cannot land
        # a call that took longer than one attempt may (the client retried a timeout): its outcome is in doubt
        self.attempt_timeout = attempt_timeout
        self.sources_ready = sources_ready
        self.rng = rng or random.Random()
        self.timing = Timing(push.flush_interval, push.max_batch)
        self.lanes = {op.operator_id.canonical_key: Lane(op) for op in operators}
        # who runs each operator's lane (bridge.leadership); one process on SQLite runs all of them
        self.leadership = leadership or SoleLeader([lane.lease for lane in self.lanes.values()])
        self.log = structlog.get_logger("bridge.dispatcher")
        self._started = False
        self.data: DataLanes | None = None  # EVSE data lanes (bridge.data_lane), beside these
        kind = LaneKind[Lane, ResyncOutcome](
            take_over=self._take_over,
            look_for_work=self._look_for_work,
            step=self._step,
            resync=self._resync,
            flush=self._flush_once,
            settle=self._settle,
            failed=_failed_outcome,
            lost_lead=_lost_lead,
            lost_lead_message="lost the lead of the operator mid-step",
            store_error_message="store error in the dispatcher; retrying",
            stand_by=self._stand_by,
            drained=self._drained,
        )
        self._loop = LaneLoop(
            kind,
            self.leadership,
            store,
            push,
            unsure_for=unsure_for,
            initial_resync=initial_resync,
            monotonic=monotonic,
            wall_clock=wall_clock,
            rng=self.rng,
            log=self.log,
        )

    def _data_first(self, lane: Lane) -> bool:
        """Whether the operator pushes EVSE data: its statuses then wait for their data (design §6.1)."""
        return self.data is not None and self.data.pushes(lane.operator_id)

    # --- control -------------------------------------------------------------------------------------

    def notify(self, operator_id: OperatorID, *, pending: int, new_evses: int) -> None:
        """The intake committed rows for ``operator_id`` (on the event loop, after the commit)."""
        lane = self.lanes.get(operator_id.canonical_key)
        if lane is None:
            return
        now = self.monotonic()
        # Wake the lane only when its next step changes: it had nothing pending (it may wait for nothing),
        # the batch just became full (push now), or the first fullLoad was waiting for EVSEs. Otherwise it
        # already sleeps until its max-wait deadline, which a further change never moves: waking it on
        # every commit only made it compute the same deadline again (intake CPU, docs/benchmarks.md).
        wake = False
        if pending:
            # ``pending`` is the net change: rows that became pending, less rows whose content went back to
            # what Hubject holds (counting only the first, a row flipping back and forth counted each time
            # and the count passed max_batch: the lane flushed "full" batches of a few dozen rows)
            before = lane.pending
            lane.pending = max(0, lane.pending + pending)
            lane.notified += 1
            if pending > 0:
                if lane.first_unpushed_at is None:
                    lane.first_unpushed_at = now
                limit = self.push.max_batch
                wake = before == 0 or (before < limit <= lane.pending)
        if new_evses:
            lane.quiet_from = now  # a later first fullLoad: the lane sees it when it next wakes
            wake = wake or lane.waiting_for_evses
            lane.waiting_for_evses = False
        if wake:
            lane.wake.set()

    def lane(self, operator_id: OperatorID | str) -> Lane:
        key = OperatorID(operator_id).canonical_key
        if key not in self.lanes:
            raise KeyError(f"{operator_id} is not a configured operator")
        return self.lanes[key]

    def view(self, lane: Lane, now: float) -> LaneView:
        first_at = None
        if lane.first_fullload_due and not lane.waiting_for_evses and self.sources_ready():
            first_at = lane.quiet_from + self.resync_config.first_fullload_quiet
        return lane_view(lane, first_at, pending=lane.pending)

    async def request_resync(
        self, operator_id: OperatorID | None = None, *, force: bool = False
    ) -> list[ResyncOutcome]:
        """Queue a fullLoad in the lane(s) and wait for the outcome(s)."""
        lanes = [self.lane(operator_id)] if operator_id is not None else list(self.lanes.values())
        return await self._loop.request_resync(lanes, force)

    async def resync_now(
        self, operator_id: OperatorID | None = None, *, force: bool = False
    ) -> list[ResyncOutcome]:
        """Run a fullLoad directly, for when the lanes are not running (tests, the demo)."""
        lanes = [self.lane(operator_id)] if operator_id is not None else list(self.lanes.values())
        return [await self._resync(lane, force=force, reason=ResyncReason.REQUESTED) for lane in lanes]

    # --- running ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover what a stopped process left in flight and set each lane's clocks from the store. With
        several replicas each lane does that for its operator when it takes the lead (``_take_over``)."""
        if self._started:
            return
        self._started = True
        if not self.leadership.shared:
            recovered = await self.store.recover(self.unsure_for)
            if recovered.records:
                self.log.info("recovered in-flight records as pending", records=recovered.records)
            for lane in self.lanes.values():
                await self._init_lane(lane, recovered)
                lane.term = SOLE_TERM
        if self.data is not None:
            await self.data.start()

    async def _take_over(self, lane: Lane, term: int) -> None:
        """This replica leads the operator from ``term`` on: what the previous leader had in flight is
        pending again and unsure (as after a restart), and the lane's clocks come from the store."""
        self.leadership.accept(lane.lease, term)
        lane.term, lane.prefetched = None, None
        recovered = await self.store.recover(self.unsure_for, lane.operator_id)
        await self._init_lane(lane, recovered)
        lane.term = term
        self.log.info(
            "leading the operator",
            operator_id=str(lane.operator_id),
            replica=self.leadership.holder,
            term=term,
            recovered=recovered.records,
        )

    async def _init_lane(self, lane: Lane, recovered: Recovered) -> None:
        now, wall = self.monotonic(), self.wall_clock()
        status = await self.store.lane_status(lane.operator_id)
        await self._loop.start_clocks(lane, status.pending, self.resync_config.interval, now, wall)
        if str(lane.operator_id) in recovered.interrupted_fullloads:
            lane.settle_fullload_at = now + self.unsure_for
        if recovered.unsure_until is not None:
            lane.settle_at = on_monotonic(recovered.unsure_until, now, wall)

    def _stand_by(self, lane: Lane) -> None:
        """This replica does not lead the operator (any more): it says so once and drops the batch it had
        claimed ahead."""
        if lane.term is not None:
            self.log.warning(
                "no longer leading the operator",
                operator_id=str(lane.operator_id),
                replica=self.leadership.holder,
            )
        lane.prefetched = None

    async def _look_for_work(self, lane: Lane) -> None:
        now, wall = self.monotonic(), self.wall_clock()
        lane.next_look = now + self.push.flush_interval
        status = await self.store.lane_status(lane.operator_id)
        if status.pending and lane.pending == 0:
            lane.pending = status.pending
            since = status.oldest_pending_since if status.oldest_pending_since is not None else wall
            lane.first_unpushed_at = now - max(0.0, wall - since)
            lane.waiting_for_evses = False

    async def run(self, stop: asyncio.Event) -> None:
        """Run every lane until ``stop`` is set, then flush what is pending; whatever is still running
        ``shutdown_timeout`` after ``stop`` is cancelled (its records are recovered at the next start)."""
        await self.start()
        tasks = [
            asyncio.create_task(self._loop.run(lane, stop), name=f"lane {lane.operator_id}")
            for lane in self.lanes.values()
        ]
        if self.data is not None:
            tasks += self.data.tasks(stop)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]  # a lane's bug ends the dispatcher, loudly
            pending = sum(lane.pending for lane in self.lanes.values())
            self.log.info(
                "draining: pushing what is pending", timeout=self.push.shutdown_timeout, pending=pending
            )
            _, late = await asyncio.wait(tasks, timeout=self.push.shutdown_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                self.log.warning(
                    "shutdown timeout: in-progress pushes cancelled; records stay pending for the next start",
                    lanes=len(late),
                    pending=await self._unacknowledged(),
                )
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(stopping, *tasks, return_exceptions=True)

    async def _unacknowledged(self) -> int:
        with contextlib.suppress(StoreError):
            return sum(
                [
                    (await self.store.lane_status(lane.operator_id)).unacknowledged
                    for lane in self.lanes.values()
                ]
            )
        return 0

    async def run_until_idle(self, within: float = 30.0) -> None:
        """Push everything pending now, ignoring flush_interval (tests, the demo, shutdown)."""
        await self._loop.run_until_idle(self.lanes.values(), within)

    def _step(self, lane: Lane, now: float) -> Step:
        # a batch claimed while the previous push was out is in flight already: it goes next
        return Flush() if lane.prefetched else next_step(self.view(lane, now), now, self.timing)

    async def _drained(self, lane: Lane, log: structlog.stdlib.BoundLogger) -> None:
        """After the drain at stop: say so if records stay pending."""
        if lane.pending:
            status = await self.store.lane_status(lane.operator_id)
            if status.pending:
                log.warning("records stay pending for the next start", pending=status.pending)

    # --- pushing --------------------------------------------------------------------------------------------

    async def _claim(self, lane: Lane, *, ahead: bool = False) -> list[Record]:
        """Claim up to ``max_batch`` pending records (in flight now) and keep the lane's estimate honest."""
        notified, started, counted = lane.notified, self.monotonic(), lane.pending
        if self._data_first(lane):  # the statuses whose EVSE data Hubject holds (design §6.1)
            records = await self.store.claim(
                lane.operator_id, self.push.max_batch, ahead=ahead, data_first=True
            )
        else:
            records = await self.store.claim(lane.operator_id, self.push.max_batch, ahead=ahead)
        more = lane.notified != notified  # changes came in while claiming
        arrived = max(1, lane.pending - counted)  # rows that became pending meanwhile (notify adds them)
        if len(records) == self.push.max_batch:
            lane.pending = max(1, lane.pending - len(records))  # more may be pending, older ones too
        elif more and not records:
            lane.pending = arrived
        elif not records:
            # Nothing pending: the changes since the last push went back to what Hubject holds. The
            # max-wait clock keeps running from the first of them (never pushed): a max-wait, not a
            # debounce, so an EVSE cycling through its delivered status cannot starve its pushes.
            lane.pending = 0
        elif more:
            # With no push out, every change committed before the claim read the rows is in this batch, so
            # those left pending arrived after the claim began: their max-wait runs from then. (Kept at the
            # change before, whose wait had run out, the lane pushed back to back for as long as changes
            # came in during its claims: 32 pushes a second for one lane under the wrk benchmark.) A claim
            # made while a push is out leaves that push's changed rows for later: its clock stays.
            # The estimate, too, starts again from what came in meanwhile: it counts rows that *became*
            # pending, so a row flipping back and forth through its delivered status counted each time,
            # and an estimate grown past max_batch flushed a batch of a few dozen rows at once.
            if not ahead:
                lane.pending, lane.first_unpushed_at = arrived, started
            else:
                lane.pending = max(1, lane.pending - len(records))
        else:
            lane.pending, lane.first_unpushed_at = 0, None  # everything pending is in this batch
        return records

    async def _flush_once(self, lane: Lane) -> bool:
        """Push one batch (the one claimed while the previous push was out, or a new claim); False when
        nothing was pending or the push failed.

        With a full batch out and more pending, the next batch is claimed while this push is in flight,
        so the store's round trip hides behind Hubject's (the pushes themselves stay one at a time: OICP
        2.3 CPO 01); if this push fails, that batch is released unsent."""
        records, lane.prefetched = lane.prefetched or await self._claim(lane), None
        if not records:
            return False
        lane.busy = True
        ahead: asyncio.Future[list[Record]] | None = None
        try:
            updates, deletes = split_by_action(records)
            groups = [(g, a) for g, a in ((updates, ActionType.UPDATE), (deletes, ActionType.DELETE)) if g]
            for index, (group, action) in enumerate(groups):
                if index == len(groups) - 1 and len(records) == self.push.max_batch:
                    ahead = asyncio.ensure_future(self._claim(lane, ahead=True))
                result = await self._push(lane, action, group)
                if result.refusal is not None:  # refused in every half: the request, not a record
                    await self._failed(lane, group, result.refusal)
                if result.kind is not Pushed.SETTLED:
                    unsent = [r for g, _ in groups[index + 1 :] for r in g]
                    if ahead is not None:
                        unsent += await ahead
                    if unsent:
                        await self.store.release(
                            lane.operator_id, unsent, "not sent: the push before failed", 0.0
                        )
                    self._repend(lane, len(records))
                    return False
            if ahead is not None:
                lane.prefetched = await ahead
        finally:
            if ahead is not None and not ahead.done():  # cancelled (shutdown): recovered at the next start
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            lane.busy = False
        return True

    def _repend(self, lane: Lane, count: int) -> None:
        lane.pending += count
        if lane.first_unpushed_at is None:
            lane.first_unpushed_at = self.monotonic()

    async def _push(self, lane: Lane, action: ActionType, records: Sequence[Record]) -> _Result:
        """Push one group; settle what Hubject answered for it (see the module's docstring)."""
        operator_id = lane.operator_id
        wire = [
            EvseStatusRecord(evse_id=r.evse_id, evse_status=r.status or _DELETE_PLACEHOLDER) for r in records
        ]
        sent_at, started = self.wall_clock(), self.monotonic()
        try:
            # never open past this replica's lead: another replica may push once the lease ends
            async with while_leading(self.leadership, lane.lease):
                await self.client.push_evse_status(
                    operator_id, action, wire, operator_name=lane.operator.operator_name
                )
        except RejectedError as error:
            self._observe_latency(action, started)
            return await self._refused(lane, action, records, error)
        except RequestError as error:
            self._observe_latency(action, started)
            await self._failed(lane, records, error)
            return _FAILED
        elapsed = self._observe_latency(action, started)
        # an acknowledgement that took longer than the client's timeout came after a retried attempt whose
        # outcome is unknown: that attempt may still land after a later push (docs/architecture.md)
        doubt = self.unsure_for if elapsed >= self.attempt_timeout else None
        await self.store.delivered(operator_id, records, sent_at, doubt_for=doubt)
        self._loop.acknowledged(lane, doubt)
        self._count(operator_id, "delivered", len(records))
        if action is ActionType.DELETE and self._data_first(lane) and self.data is not None:
            self.data.notify_data(operator_id, pending=len(records))  # their data deletes may go now
        return _SETTLED

    async def _refused(
        self, lane: Lane, action: ActionType, records: Sequence[Record], error: RejectedError
    ) -> _Result:
        if error.retryable:
            await self._failed(lane, records, error)
            return _FAILED
        named = named_in(error.additional_info, records)
        if named:
            await self._refuse(lane, named, error)
            rest = [r for r in records if r not in named]
            return await self._push(lane, action, rest) if rest else _SETTLED
        if error.code not in RECORD_CODES:
            await self._failed(lane, records, error)
            return _FAILED
        if len(records) == 1:
            return _Result(Pushed.UNNAMED, error)
        left, right = halves(records)
        first = await self._push(lane, action, left)
        if first.kind is Pushed.FAILED:
            await self.store.release(lane.operator_id, right, str(error), 0.0)
            return _FAILED
        second = await self._push(lane, action, right)
        if second.kind is Pushed.FAILED:
            if first.kind is Pushed.UNNAMED:
                await self.store.release(lane.operator_id, left, str(error), 0.0)
            return _FAILED
        if first.kind is Pushed.UNNAMED and second.kind is Pushed.UNNAMED:
            return _Result(Pushed.UNNAMED, error)  # no evidence that any record is at fault
        for half, result in ((left, first), (right, second)):
            if result.kind is Pushed.UNNAMED:  # its sibling was accepted: these records are the culprits
                await self._refuse(lane, half, error)
        return _SETTLED

    async def _refuse(self, lane: Lane, records: Sequence[Record], error: RejectedError) -> None:
        if error.code == UNKNOWN_EVSE and self.data is not None and self.data.pushes(lane.operator_id):
            # Hubject lacks their EVSE data: the data goes again, the statuses wait for it (design §6.1)
            keys = {evse_key(r.evse_id) for r in records}
            await self.data.store.unknown_to_hubject(lane.operator_id, keys)
            await self.store.release(lane.operator_id, records, str(error), 0.0)
            self.data.notify_data(lane.operator_id, pending=len(records))
            self.log.warning(
                "Hubject lacks EVSE data (603): data pushed again, statuses held",
                operator_id=str(lane.operator_id),
                evse_ids=[str(r.evse_id) for r in records][:20],
            )
            return
        state = RecordState.PARKED if error.code == UNKNOWN_EVSE else RecordState.DEAD
        reason = str(error)
        await self.store.refuse(lane.operator_id, records, state, error.code, reason)
        self._count(lane.operator_id, state.value, len(records))
        if self.metrics is not None and state is RecordState.DEAD:
            self.metrics.dead_letters.labels(str(lane.operator_id), error.code).inc(len(records))
        self.log.warning(
            "records set aside" if state is RecordState.PARKED else "records dead-lettered",
            operator_id=str(lane.operator_id),
            code=error.code,
            evse_ids=[str(r.evse_id) for r in records][:20],
            count=len(records),
            reason=reason,
        )

    async def _failed(self, lane: Lane, records: Sequence[Record], error: RequestError) -> None:
        message = str(error)
        await self.store.release(lane.operator_id, records, message, self.unsure_for)
        self._loop.backoff(lane, error)
        self._loop.doubt(lane, self.unsure_for)
        self._count(lane.operator_id, "retry", len(records))
        self.log.warning(
            "push failed; records stay pending",
            operator_id=str(lane.operator_id),
            records=len(records),
            error=message,
            retryable=error.retryable,
            next_attempt_in=round(lane.request_floor - self.monotonic(), 2),
        )

    async def _settle(self, lane: Lane) -> None:
        count = await self._loop.settle(lane)
        if count:
            self.log.info(
                "pushing doubtful records once more", operator_id=str(lane.operator_id), records=count
            )
            self._repend(lane, count)

    # --- fullLoad --------------------------------------------------------------------------------------

    async def _resync(self, lane: Lane, *, force: bool, reason: ResyncReason) -> ResyncOutcome:
        operator_id = lane.operator_id
        log = self.log.bind(operator_id=str(operator_id), reason=reason.value, force=force)
        if reason is ResyncReason.SETTLE:
            lane.settle_fullload_at = None
        excluded: set[EvseID] = set()
        _, last_count = await self.store.last_fullload(operator_id)
        lane.busy = True
        try:
            data_first = self._data_first(lane)
            count = await self.store.fullload_count(operator_id, data_first=data_first)
            if count == 0 and reason is ResyncReason.FIRST_START:
                lane.waiting_for_evses = True  # nothing to send yet: wait for the CPO's EVSEs
                return ResyncOutcome(operator_id, ResyncResult.REFUSED, message="no EVSE yet")
            refusal = None if force else fullload_refusal(count, last_count, self.resync_config.max_shrink)
            if refusal is not None:
                return await self._resync_refused(lane, refusal, log)
            await self.store.fullload_starting(operator_id)
            sent_at, started = self.wall_clock(), self.monotonic()
            for _ in range(FULLLOAD_ROUNDS):
                opened: list[FullLoadSnapshot] = []
                try:
                    async with while_leading(self.leadership, lane.lease):
                        await self.client.push_evse_status_stream(
                            operator_id,
                            ActionType.FULL_LOAD,
                            self._fullload_pages(operator_id, frozenset(excluded), opened, data_first),
                            operator_name=lane.operator.operator_name,
                        )
                except RejectedError as error:
                    keys = named_keys(error.additional_info)
                    if not error.retryable and keys:
                        if error.code == UNKNOWN_EVSE and data_first and self.data is not None:
                            # Hubject lost their EVSE data: pushed again; the statuses follow it
                            await self.data.store.unknown_to_hubject(operator_id, keys)
                            self.data.notify_data(operator_id, pending=len(keys))
                        state = RecordState.PARKED if error.code == UNKNOWN_EVSE else RecordState.DEAD
                        named = await self.store.set_aside(operator_id, keys, state, error.code, str(error))
                        if named - excluded:
                            excluded |= named
                            log.warning("fullLoad named EvseIDs; set aside, sending again", code=error.code,
                                        count=len(named))  # fmt: skip
                            continue
                    return await self._resync_failed(lane, error, log)
                except RequestError as error:
                    return await self._resync_failed(lane, error, log)
                snapshot = opened[-1]
                await self.store.fullload_finished(
                    operator_id, snapshot, frozenset(excluded), sent_at, data_first=data_first
                )
                self._fullload_done(lane, started)
                log.info("fullLoad done", records=snapshot.count, set_aside=len(excluded))
                return self._resync_outcome(
                    operator_id, ResyncResult.DONE, snapshot.count, len(excluded), "done"
                )
            return await self._resync_failed(lane, None, log)
        finally:
            lane.busy = False

    def _fullload_done(self, lane: Lane, started: float) -> None:
        now = self.monotonic()
        self._loop.acknowledged(lane)
        lane.refusal, lane.first_fullload_due = None, False
        if self.resync_config.interval > 0:
            lane.scheduled_resync_at = now + self.resync_config.interval
        if now - started >= self.attempt_timeout:  # an attempt timed out and was retried: it may land late
            lane.fullload_doubt_until = max(lane.fullload_doubt_until or 0.0, started + self.unsure_for)
        if lane.fullload_doubt_until is not None and started < lane.fullload_doubt_until:
            lane.settle_fullload_at = lane.fullload_doubt_until
        lane.fullload_doubt_until = None if lane.settle_fullload_at is None else lane.fullload_doubt_until

    async def _resync_refused(
        self, lane: Lane, refusal: str, log: structlog.stdlib.BoundLogger
    ) -> ResyncOutcome:
        message = f"{refusal}; use 'oicp-bridge resync --force' to send it anyway"
        log.warning("fullLoad refused", why=message)
        await self.store.operator_error(lane.operator_id, f"fullLoad refused: {message}")
        await self.store.fullload_finished(lane.operator_id, None, frozenset(), 0.0, refusal=message)
        lane.refusal = message
        lane.first_fullload_due = False
        interval = self.resync_config.interval
        lane.scheduled_resync_at = self.monotonic() + interval if interval > 0 else None
        return self._resync_outcome(lane.operator_id, ResyncResult.REFUSED, message=message)

    def _fullload_pages(
        self,
        operator_id: OperatorID,
        excluded: frozenset[EvseID],
        opened: list[FullLoadSnapshot],
        data_first: bool = False,
    ) -> Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]]:
        """The client calls this once per attempt; each attempt reads its own consistent snapshot, and the
        one whose request was acknowledged is the last one opened."""
        store = self.store

        async def pages() -> AsyncIterator[Sequence[EvseStatusRecord]]:
            async for page in store.fullload_pages(
                operator_id, excluded, opened.append, data_first=data_first
            ):
                yield [EvseStatusRecord(evse_id=EvseID(e), evse_status=EvseStatus(s)) for e, s in page]

        return pages

    async def _resync_failed(
        self, lane: Lane, error: RequestError | None, log: structlog.stdlib.BoundLogger
    ) -> ResyncOutcome:
        message = str(error) if error is not None else "too many rounds of EvseIDs set aside"
        await self.store.operator_error(lane.operator_id, f"fullLoad failed: {message}")
        await self.store.fullload_finished(lane.operator_id, None, frozenset(), 0.0)
        self._loop.backoff(lane, error)
        lane.last_error = message
        if error is None or isinstance(error, TransportError) or error.retryable:
            # the outcome may be unknown (a timeout): a fullLoad sent before this passes may be overtaken
            lane.fullload_doubt_until = self.monotonic() + self.unsure_for
        log.error(
            "fullLoad failed", error=message, next_attempt_in=round(lane.request_floor - self.monotonic(), 2)
        )
        return self._resync_outcome(lane.operator_id, ResyncResult.FAILED, message=message)

    def _resync_outcome(
        self,
        operator_id: OperatorID,
        result: ResyncResult,
        records: int = 0,
        parked: int = 0,
        message: str = "",
    ) -> ResyncOutcome:
        if self.metrics is not None:
            self.metrics.resyncs.labels(str(operator_id), result.value).inc()
        return ResyncOutcome(operator_id, result, records, parked, message)

    # --- metrics ------------------------------------------------------------------------------------------

    def _count(self, operator_id: OperatorID, result: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.records_pushed.labels(str(operator_id), result).inc(count)

    def _observe_latency(self, action: ActionType, started: float) -> float:
        elapsed = self.monotonic() - started
        if self.metrics is not None:
            self.metrics.push_latency.labels(action.value).observe(elapsed)
        return elapsed


def _failed_outcome(operator_id: OperatorID, message: str) -> ResyncOutcome:
    return ResyncOutcome(operator_id, ResyncResult.FAILED, message=message)


def _lost_lead(lane: Lane) -> None:
    lane.term, lane.prefetched, lane.busy = None, None, False
