"""The EVSE data lanes: one sequential lane per operator with ``push_evse_data = true``, beside its status
lane (``bridge.dispatcher``), pushing the data outbox (``bridge.store.evse_data``) to Hubject.

Each lane asks the same pure scheduler as the status lanes (``bridge.lanes.next_step``: flush, fullLoad or
sleep, the backoff and ``Retry-After`` floor) and does the step:
- a flush claims up to ``max_batch`` pending records and sends them as ``insert`` (EvseIDs Hubject does not
  hold), then ``update``, then ``delete`` (with the last acknowledged record), one request per ActionType
  and batch (``bridge.evse_data.decide.batches``), each validated locally first
  (``oicp.evse_data.validate_records``: a bad record is dead, the batch goes on);
- a refusal naming EvseIDs (exact match, Hubject writes them with or without ``*``) sets those aside — a
  first 009 re-classifies insert/update, anything else is dead with Hubject's code — and the rest go again;
  a record-level refusal naming nobody is bisected as in the status lane; any other failure releases the
  batch and backs off;
- an acknowledgement makes Hubject's holding known; the statuses held for those EvseIDs are released and
  the status lane is woken (data before status, design §6.1);
- a data fullLoad (first start, ``[resync] data_interval``, ``resync --data``, ``POST /resync?data=1``) is
  streamed from one snapshot, guarded like the status fullLoad (empty or shrunk beyond ``max_shrink`` →
  refused unless forced), and followed by a status fullLoad of the operator.

Pushes of EVSE data are never in parallel (one lane per operator, and the client's PushEVSEData lock);
a data push and a status push may overlap (OICP 2.3 CPO 01: the rule is per operation).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bridge.config import OperatorConfig, PushConfig, ResyncConfig
from bridge.dispatcher import ResyncResult
from bridge.evse_data.decide import REFUSED_INSERT_OR_UPDATE, DataRecord, batches, halves
from bridge.lane_loop import LaneKind, LaneLoop, LaneState, Pushed, lane_view
from bridge.lanes import LaneView, ResyncReason, Step, Timing, next_step
from bridge.leadership import SOLE_TERM, operator_lease, while_leading
from bridge.metrics import Metrics
from bridge.outbox import evse_key, fullload_refusal, named_keys
from bridge.store.evse_data import DataOutboxStore, DataSnapshot
from oicp import EvseDataClient
from oicp.codes import RECORD_LEVEL_CODES
from oicp.errors import RejectedError, RequestError, TransportError
from oicp.evse_data import EvseDataRecord, validate_records
from oicp.ids import OperatorID
from oicp.models import ActionType

if TYPE_CHECKING:
    from bridge.dispatcher import Dispatcher, ResyncOutcome

RECORD_CODES = RECORD_LEVEL_CODES | {"022", REFUSED_INSERT_OR_UPDATE}
LOCALLY_REFUSED = "local"  # the dead code of a record local validation refused (never sent)
FULLLOAD_ROUNDS = 8


DataResult = Pushed  # what came of one data push: the status lane's vocabulary (bridge.lane_loop)


@dataclass(frozen=True)
class DataResyncOutcome:
    operator_id: OperatorID
    result: ResyncResult
    records: int = 0
    message: str = ""
    status: ResyncOutcome | None = None  # the status fullLoad that followed


@dataclass
class DataLane(LaneState[DataResyncOutcome]):
    """One operator's EVSE data lane; what every lane holds is in ``LaneState``."""

    blocked_until: float | None = None  # deletes wait for their status delete: look again then


class DataLanes:
    """Every operator's data lane; the dispatcher runs them beside the status lanes."""

    def __init__(
        self,
        store: DataOutboxStore,
        client: EvseDataClient,
        operators: Sequence[OperatorConfig],
        push: PushConfig,
        resync: ResyncConfig,
        dispatcher: Dispatcher,
        *,
        metrics: Metrics | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        initial_resync: bool = True,
        unsure_for: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.push = push
        self.resync_config = resync
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.initial_resync = initial_resync
        self.unsure_for = unsure_for
        self.rng = rng or random.Random()
        self.timing = Timing(push.flush_interval, push.max_batch)
        self.lanes = {op.operator_id.canonical_key: DataLane(op) for op in operators if op.push_evse_data}
        self.log = structlog.get_logger("bridge.data_lane")
        # maps every stored EVSE again (bridge.data_intake.DataIntake.reconcile), before each data fullLoad
        self.remap: Callable[[], Awaitable[int]] | None = None
        kind = LaneKind[DataLane, DataResyncOutcome](
            take_over=self._take_over,
            look_for_work=self._look_for_work,
            step=self._step,
            resync=self.resync,
            flush=self._flush_once,
            settle=self._settle,
            failed=_failed_outcome,
            lost_lead=_lost_lead,
            lost_lead_message="lost the lead of the operator's data lane mid-step",
            store_error_message="store error in the data lane; retrying",
            sleep=_sleep_for,
        )
        self._loop = LaneLoop(
            kind,
            dispatcher.leadership,
            store,
            push,
            unsure_for=unsure_for,
            initial_resync=initial_resync,
            monotonic=monotonic,
            wall_clock=wall_clock,
            rng=self.rng,
            log=self.log,
        )

    def pushes(self, operator_id: OperatorID) -> bool:
        return operator_id.canonical_key in self.lanes

    def lane(self, operator_id: OperatorID | str) -> DataLane:
        key = OperatorID(operator_id).canonical_key
        if key not in self.lanes:
            raise KeyError(f"{operator_id} does not push EVSE data (push_evse_data = false)")
        return self.lanes[key]

    # --- control -------------------------------------------------------------------------------------

    def notify_data(self, operator_id: OperatorID, *, pending: int) -> None:
        """The intake committed data rows that became pending (on the event loop, after the commit)."""
        lane = self.lanes.get(operator_id.canonical_key)
        if lane is None or not pending:
            return
        before = lane.pending
        lane.pending += pending
        now = self.monotonic()
        lane.quiet_from = now
        if lane.first_unpushed_at is None:
            lane.first_unpushed_at = now
        if before == 0 or before < self.push.max_batch <= lane.pending or lane.waiting_for_evses:
            lane.waiting_for_evses = False
            lane.wake.set()

    async def request_resync(
        self, operator_id: OperatorID | None = None, *, force: bool = False
    ) -> list[DataResyncOutcome]:
        """Queue a data fullLoad (then a status fullLoad) in the lane(s) and wait for the outcome(s)."""
        lanes = [self.lane(operator_id)] if operator_id is not None else list(self.lanes.values())
        return await self._loop.request_resync(lanes, force)

    def view(self, lane: DataLane, now: float) -> LaneView:
        first_at = None
        if lane.first_fullload_due and not lane.waiting_for_evses and self.dispatcher.sources_ready():
            first_at = lane.quiet_from + self.resync_config.first_fullload_quiet
        # the first upload is a fullLoad (Hubject's advice): it carries what is pending, so no flush
        # goes before it (the status lane instead pushes its pending statuses first)
        return lane_view(lane, first_at, pending=0 if first_at is not None else lane.pending)

    async def start(self) -> None:
        """Recover data pushes a stopped process left in flight; set each lane's clocks from the store. The
        status lanes of these operators leave their first fullLoad to the data lane (data goes first).
        With several replicas a lane does that for its operator when it takes the lead (``_take_over``)."""
        if self.dispatcher.leadership.shared:
            return
        recovered = await self.store.recover(self.unsure_for)
        if recovered:
            self.log.info("recovered in-flight EVSE data records as pending", records=recovered)
        for lane in self.lanes.values():
            await self._init_lane(lane)
            lane.term = SOLE_TERM

    async def _take_over(self, lane: DataLane, term: int) -> None:
        """The same as the status lane's (``Dispatcher._take_over``): the previous leader's in-flight data
        records are pending again, the lane's clocks come from the store."""
        self.dispatcher.leadership.accept(operator_lease(lane.operator_id), term)
        await self.store.recover(self.unsure_for, lane.operator_id)
        await self._init_lane(lane)
        lane.term = term

    async def _look_for_work(self, lane: DataLane) -> None:
        """Several replicas: what other replicas' data intake committed (it notifies only its own process)."""
        lane.next_look = self.monotonic() + self.push.flush_interval  # other replicas' data intake
        lane.pending = await self.store.pending_count(lane.operator_id)
        lane.first_unpushed_at = self.monotonic() if lane.pending else lane.first_unpushed_at

    async def _init_lane(self, lane: DataLane) -> None:
        now, wall = self.monotonic(), self.wall_clock()
        stored = await self.store.pending_count(lane.operator_id)
        await self._loop.start_clocks(lane, stored, self.resync_config.data_interval, now, wall)
        if await self.store.interrupted_fullload(lane.operator_id):
            lane.settle_fullload_at = now + self.unsure_for
        lane.settle_at = now  # the first Settle step finds when the stored doubts end (store.settle)
        with contextlib.suppress(KeyError):
            status_lane = self.dispatcher.lane(lane.operator_id)
            if lane.first_fullload_due:
                status_lane.first_fullload_due = False  # the data fullLoad is followed by one

    # --- running ------------------------------------------------------------------------------------------

    def tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self._loop.run(lane, stop), name=f"data lane {lane.operator_id}")
            for lane in self.lanes.values()
        ]

    async def run_until_idle(self, within: float = 30.0) -> None:
        """Push every pending record now, ignoring flush_interval (tests, the demo)."""
        await self._loop.run_until_idle(self.lanes.values(), within)

    def _step(self, lane: DataLane, now: float) -> Step:
        return next_step(self.view(lane, now), now, self.timing)

    # --- pushing ------------------------------------------------------------------------------------------

    async def _flush_once(self, lane: DataLane) -> bool:
        claimed = await self.store.claim(lane.operator_id, self.push.max_batch)
        records = claimed.records
        if len(records) < self.push.max_batch:
            lane.pending, lane.first_unpushed_at = 0, None
        else:
            lane.pending = max(1, lane.pending - len(records))
        if claimed.waiting:  # deletes wait for their status delete: look again after a flush interval
            lane.blocked_until = self.monotonic() + self.push.flush_interval
        if not records:
            return False
        planned = batches(records, self.push.max_batch)
        for index, (action, group) in enumerate(planned):
            result = await self._push(lane, action, group)
            if result is DataResult.UNNAMED:
                await self._failed(lane, group, None)
                result = DataResult.FAILED
            if result is DataResult.FAILED:
                unsent = [r for _, g in planned[index + 1 :] for r in g]
                if unsent:
                    await self.store.release(
                        lane.operator_id, unsent, "not sent: the push before failed", 0.0
                    )
                lane.pending += len(records)
                lane.first_unpushed_at = lane.first_unpushed_at or self.monotonic()
                return False
        return True

    async def _push(self, lane: DataLane, action: ActionType, records: Sequence[DataRecord]) -> DataResult:
        operator_id = lane.operator_id
        models = {r.evse_id: EvseDataRecord.model_validate_json(r.record) for r in records}
        checked = validate_records(models.values(), operator_id)
        if checked.refused:
            bad = {str(refused.record.evse_id) for refused in checked.refused}
            reasons = "; ".join(r for refused in checked.refused for r in refused.reasons)
            await self._dead(lane, [r for r in records if r.evse_id in bad], LOCALLY_REFUSED, reasons)
            records = [r for r in records if r.evse_id not in bad]
            if not records:
                return DataResult.SETTLED
        sent_at, started = self.wall_clock(), self.monotonic()
        try:
            async with while_leading(self.dispatcher.leadership, operator_lease(operator_id)):
                await self.client.push_evse_data(
                    operator_id,
                    action,
                    [models[r.evse_id] for r in records],
                    operator_name=lane.operator.operator_name,
                )
        except RejectedError as error:
            return await self._refused(lane, action, records, error)
        except RequestError as error:
            await self._failed(lane, records, error)
            return DataResult.FAILED
        elapsed = self.monotonic() - started
        doubt = self.unsure_for if elapsed >= self.dispatcher.attempt_timeout else None
        released = await self.store.delivered(operator_id, records, sent_at, doubt_for=doubt)
        # acknowledged only after a retried attempt: an earlier one may land late
        self._loop.acknowledged(lane, doubt)
        self._count(operator_id, "delivered", len(records))
        if released:  # their statuses were held for this data: the status lane has work now
            self.dispatcher.notify(operator_id, pending=released, new_evses=0)
        return DataResult.SETTLED

    async def _refused(
        self, lane: DataLane, action: ActionType, records: Sequence[DataRecord], error: RejectedError
    ) -> DataResult:
        # 009 is "retry" in the status catalogue; for EVSE data it is an insert of a held record or an
        # update of a missing one, which repeating cannot fix: re-classify (design §6.8)
        if error.retryable and error.code != REFUSED_INSERT_OR_UPDATE:
            await self._failed(lane, records, error)
            return DataResult.FAILED
        keys = named_keys(error.additional_info)
        named = [r for r in records if evse_key(r.evse_id) in keys]
        if named:
            await self._dead(lane, named, error.code, str(error))
            rest = [r for r in records if r not in named]
            return await self._push(lane, action, rest) if rest else DataResult.SETTLED
        if error.code not in RECORD_CODES:
            await self._failed(lane, records, error)
            return DataResult.FAILED
        if len(records) == 1:
            if error.code == REFUSED_INSERT_OR_UPDATE:  # alone, the 009 can only be about this record
                await self._dead(lane, records, error.code, str(error))
                return DataResult.SETTLED
            return DataResult.UNNAMED
        left, right = halves(records)
        first = await self._push(lane, action, left)
        if first is DataResult.FAILED:
            await self.store.release(lane.operator_id, right, str(error), 0.0)
            return DataResult.FAILED
        second = await self._push(lane, action, right)
        if second is DataResult.FAILED:
            if first is DataResult.UNNAMED:
                await self.store.release(lane.operator_id, left, str(error), 0.0)
            return DataResult.FAILED
        if first is DataResult.UNNAMED and second is DataResult.UNNAMED:
            return DataResult.UNNAMED
        for half, result in ((left, first), (right, second)):
            if result is DataResult.UNNAMED:
                await self._dead(lane, half, error.code, str(error))
        return DataResult.SETTLED

    async def _dead(self, lane: DataLane, records: Sequence[DataRecord], code: str, reason: str) -> None:
        """Refused for good (or re-classified once after a 009: ``decide.refused``)."""
        dead = await self.store.refuse(lane.operator_id, records, code, reason)
        if len(records) > dead:  # re-classified: pushed again with the other ActionType
            lane.pending += len(records) - dead
            lane.first_unpushed_at = lane.first_unpushed_at or self.monotonic()
        if dead:
            self._count(lane.operator_id, "dead", dead)
            if self.metrics is not None:
                self.metrics.data_dead_letters.labels(str(lane.operator_id), code).inc(dead)
        self.log.warning(
            "EVSE data records refused",
            operator_id=str(lane.operator_id),
            code=code,
            evse_ids=[r.evse_id for r in records][:20],
            dead=dead,
            reclassified=len(records) - dead,
            reason=reason,
        )

    async def _failed(
        self, lane: DataLane, records: Sequence[DataRecord], error: RequestError | None
    ) -> None:
        message = str(error) if error is not None else "refused in every half: the request, not a record"
        await self.store.release(lane.operator_id, records, message, self.unsure_for)
        # the failed attempt may still land: settle after its quiet period
        self._loop.doubt(lane, self.unsure_for)
        self._loop.backoff(lane, error)
        lane.last_error = message
        self._count(lane.operator_id, "retry", len(records))
        self.log.warning(
            "EVSE data push failed; records stay pending",
            operator_id=str(lane.operator_id),
            records=len(records),
            error=message,
            next_attempt_in=round(lane.request_floor - self.monotonic(), 2),
        )

    async def _settle(self, lane: DataLane) -> None:
        count = await self._loop.settle(lane)
        if count:
            self.log.info(
                "pushing doubtful EVSE data records once more",
                operator_id=str(lane.operator_id),
                records=count,
            )
            lane.pending += count
            lane.first_unpushed_at = lane.first_unpushed_at or self.monotonic()

    # --- the data fullLoad ----------------------------------------------------------------------------------

    async def resync(
        self, lane: DataLane, *, force: bool, reason: ResyncReason, then_status: bool = True
    ) -> DataResyncOutcome:
        """A data fullLoad of the operator, then (if it was acknowledged, and ``then_status``: not for the
        benchmark, which runs no status lane) a status fullLoad."""
        operator_id = lane.operator_id
        log = self.log.bind(operator_id=str(operator_id), reason=reason.value, force=force)
        if reason is ResyncReason.SETTLE:
            lane.settle_fullload_at = None
        if self.remap is not None:
            # the records as the OCPI state maps them today (a UTC offset moves with daylight saving time)
            remapped = await self.remap()
            log.info("EVSE data mapped again before the fullLoad", evses=remapped)
        _, last_count = await self.store.last_fullload(operator_id)
        count = await self.store.fullload_count(operator_id)
        if count == 0 and reason is ResyncReason.FIRST_START:
            lane.waiting_for_evses = True
            return DataResyncOutcome(operator_id, ResyncResult.REFUSED, message="no EVSE data yet")
        refusal = None if force else fullload_refusal(count, last_count, self.resync_config.max_shrink)
        if refusal is not None:
            message = f"EVSE data {refusal}; use 'oicp-bridge resync --data --force' to send it anyway"
            log.warning("EVSE data fullLoad refused", why=message)
            await self.store.fullload_finished(operator_id, None, 0.0, refusal=message)
            lane.refusal, lane.first_fullload_due = message, False
            self._schedule(lane)
            return DataResyncOutcome(operator_id, ResyncResult.REFUSED, message=message)
        await self.store.fullload_starting(operator_id)
        sent_at = self.wall_clock()
        dead: set[str] = set()
        for _ in range(FULLLOAD_ROUNDS):
            opened: list[DataSnapshot] = []
            try:
                async with while_leading(self.dispatcher.leadership, operator_lease(operator_id)):
                    await self.client.push_evse_data_stream(
                        operator_id,
                        ActionType.FULL_LOAD,
                        self._pages(operator_id, opened),
                        operator_name=lane.operator.operator_name,
                    )
            except RejectedError as error:
                keys = named_keys(error.additional_info)
                if not error.retryable and keys:
                    named = await self.store.set_dead(operator_id, keys, error.code, str(error))
                    if named - dead:
                        dead |= named
                        log.warning("EVSE data fullLoad named EvseIDs; dead, sending again", code=error.code)
                        continue
                return await self._resync_failed(lane, error, log)
            except RequestError as error:
                return await self._resync_failed(lane, error, log)
            snapshot = opened[-1]
            released = await self.store.fullload_finished(operator_id, snapshot, sent_at)
            self._loop.acknowledged(lane)
            lane.refusal, lane.first_fullload_due = None, False
            lane.pending = max(lane.pending, 1)  # changes since the snapshot follow as inserts/updates
            lane.first_unpushed_at = lane.first_unpushed_at or self.monotonic()
            self._schedule(lane)
            log.info("EVSE data fullLoad done", records=snapshot.count, dead=len(dead))
            if released:
                self.dispatcher.notify(operator_id, pending=released, new_evses=0)
            if not then_status:
                return DataResyncOutcome(operator_id, ResyncResult.DONE, snapshot.count, "done")
            status = await self.dispatcher.request_resync(operator_id, force=force)
            return DataResyncOutcome(
                operator_id, ResyncResult.DONE, snapshot.count, "done", status[0] if status else None
            )
        return await self._resync_failed(lane, None, log)

    def _schedule(self, lane: DataLane) -> None:
        interval = self.resync_config.data_interval
        lane.scheduled_resync_at = self.monotonic() + interval if interval > 0 else None

    def _pages(
        self, operator_id: OperatorID, opened: list[DataSnapshot]
    ) -> Callable[[], AsyncIterator[Sequence[str]]]:
        store = self.store

        def pages() -> AsyncIterator[Sequence[str]]:
            return store.fullload_pages(operator_id, opened.append)

        return pages

    async def _resync_failed(
        self, lane: DataLane, error: RequestError | None, log: structlog.stdlib.BoundLogger
    ) -> DataResyncOutcome:
        message = str(error) if error is not None else "too many rounds of EvseIDs set aside"
        await self.store.fullload_finished(lane.operator_id, None, 0.0, error=f"fullLoad failed: {message}")
        self._loop.backoff(lane, error)
        lane.last_error = message
        if error is None or isinstance(error, TransportError) or error.retryable:
            lane.settle_fullload_at = self.monotonic() + self.unsure_for  # the outcome may be unknown
        log.error("EVSE data fullLoad failed", error=message)
        return DataResyncOutcome(lane.operator_id, ResyncResult.FAILED, message=message)

    def _count(self, operator_id: OperatorID, result: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.data_records_pushed.labels(str(operator_id), result).inc(count)


def _failed_outcome(operator_id: OperatorID, message: str) -> DataResyncOutcome:
    return DataResyncOutcome(operator_id, ResyncResult.FAILED, message=message)


def _lost_lead(lane: DataLane) -> None:
    lane.term = None


def _sleep_for(lane: DataLane, seconds: float | None, now: float) -> float | None:
    """Deletes wait for their status delete (``blocked_until``): the lane looks at them again then."""
    if lane.blocked_until is not None:
        wait = max(0.0, lane.blocked_until - now)
        seconds = wait if seconds is None else min(seconds, wait)
        lane.blocked_until = None
        lane.pending = max(lane.pending, 1)  # look at the waiting deletes again
        lane.first_unpushed_at = lane.first_unpushed_at or now
    return seconds
