"""The dispatcher: one sequential lane per operator that pushes the outbox to Hubject, and resyncs.

Each lane waits until its oldest pending record has waited ``flush_interval`` (a max-wait, never a
debounce) or ``max_batch`` records are pending, then claims them and sends one ``update`` (and one
``delete`` for withdrawals). Resyncs (``fullLoad``) run in the same lane, so nothing overtakes anything
for an operator; the OICP client adds the global rule that only one push is in flight at a time
(OICP 2.3 CPO 01, "Data push operations").

Failure handling (docs/bridge.md):
- retryable (transport, 5xx, 429, retryable codes): the client retries within its budget; past it the
  records go back to pending and the lane backs off;
- a permanent code caused by records (018, 022, 603, 604): the records Hubject names (AdditionalInfo) are
  set aside — 603 ones parked until the next fullLoad, others dead with Hubject's code — and the rest are
  pushed again; when Hubject names none, the batch is halved until the culprits are isolated;
- any other permanent failure (017 unauthorised, 4xx): nothing is dropped; the records stay pending, the
  lane backs off to ``max_retry_interval`` and the error is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from bridge.config import OperatorConfig, PushConfig, ResyncConfig
from bridge.errors import StoreError
from bridge.metrics import Metrics
from bridge.outbox import (
    Record,
    RecordState,
    flush_due_in,
    fullload_refusal,
    halves,
    named_in,
    split_by_action,
)
from bridge.store.outbox import FullLoadSnapshot, OutboxStore
from oicp import EvseStatusClient
from oicp.codes import RECORD_LEVEL_CODES
from oicp.errors import RejectedError, RequestError
from oicp.ids import EVSE_ID_PATTERN, EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord

# OICP requires EvseStatus in every EvseStatusRecord, also in a delete, where Hubject ignores it.
_DELETE_PLACEHOLDER = EvseStatus.UNKNOWN
# Codes caused by records, not by the request as a whole; 022 "Data error" may be either, so a batch
# answered 022 is split like the others until the refused record is isolated.
RECORD_CODES = RECORD_LEVEL_CODES | {"022"}
UNKNOWN_EVSE = "603"
# The official EvseID pattern, unanchored, to find the EvseIDs Hubject names in AdditionalInfo.
_EVSE_ID_IN_TEXT = re.compile(EVSE_ID_PATTERN.removeprefix("^").removesuffix("$"))


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


@dataclass
class _ResyncRequest:
    force: bool
    done: asyncio.Future[ResyncOutcome]


@dataclass
class Lane:
    """The state of one operator's lane (what the status page shows)."""

    operator: OperatorConfig
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    resyncs: asyncio.Queue[_ResyncRequest] = field(default_factory=asyncio.Queue)
    failures: int = 0
    backoff_until: float = 0.0
    last_error: str | None = None
    last_push_at: float | None = None
    busy: bool = False

    @property
    def operator_id(self) -> OperatorID:
        return self.operator.operator_id


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
        clock: Callable[[], float] = time.time,
        initial_resync: bool = True,
    ) -> None:
        self.store = store
        self.client = client
        self.push = push
        self.resync_config = resync
        self.metrics = metrics
        self.clock = clock
        self.initial_resync = initial_resync
        self.lanes = {op.operator_id.canonical_key: Lane(op) for op in operators}
        self.log = structlog.get_logger("bridge.dispatcher")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    # --- control -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """New records may be pending (called after each store commit; safe from any thread)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for lane in self.lanes.values():
            lane.wake.set()

    def lane(self, operator_id: OperatorID | str) -> Lane:
        key = OperatorID(operator_id).canonical_key
        if key not in self.lanes:
            raise KeyError(f"{operator_id} is not a configured operator")
        return self.lanes[key]

    async def request_resync(
        self, operator_id: OperatorID | None = None, *, force: bool = False
    ) -> list[ResyncOutcome]:
        """Queue a fullLoad in the lane(s) and wait for the outcome(s)."""
        lanes = [self.lane(operator_id)] if operator_id is not None else list(self.lanes.values())
        loop = asyncio.get_running_loop()
        requests = []
        for lane in lanes:
            request = _ResyncRequest(force, loop.create_future())
            await lane.resyncs.put(request)
            lane.wake.set()
            requests.append(request)
        return [await request.done for request in requests]

    async def resync_now(
        self, operator_id: OperatorID | None = None, *, force: bool = False
    ) -> list[ResyncOutcome]:
        """Run a fullLoad directly, for when the lanes are not running (tests, the demo)."""
        lanes = [self.lane(operator_id)] if operator_id is not None else list(self.lanes.values())
        self._loop = asyncio.get_running_loop()
        return [await self._resync(lane, force=force, reason="requested") for lane in lanes]

    # --- running ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run every lane until ``stop`` is set, then flush what is pending (bounded by shutdown_timeout)."""
        self._loop = asyncio.get_running_loop()
        recovered = await self.store.recover()
        if recovered:
            self.log.info("recovered in-flight records as pending", records=recovered)
        async with asyncio.TaskGroup() as group:
            for lane in self.lanes.values():
                group.create_task(self._run_lane(lane, stop), name=f"lane {lane.operator_id}")

    async def run_until_idle(self, within: float = 30.0) -> None:
        """Push everything pending now, ignoring flush_interval (tests, the demo, shutdown)."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            for lane in self.lanes.values():
                while await self._flush_once(lane):
                    pass

    async def _run_lane(self, lane: Lane, stop: asyncio.Event) -> None:
        log = self.log.bind(operator_id=str(lane.operator_id))
        first_fullload_due = False
        if self.initial_resync and self.resync_config.interval > 0:
            last_at, _ = await self.store.last_fullload(lane.operator_id)
            first_fullload_due = last_at is None
        while not stop.is_set():
            request: _ResyncRequest | None = None
            # Cleared before looking at the store, not after: a commit or a resync request that arrives
            # while this step awaits its reads must still wake the wait below (it was lost before, and a
            # lone change or a requested resync then waited for the next timeout).
            lane.wake.clear()
            try:
                if first_fullload_due and await self._ready_for_first_fullload(lane):
                    outcome = await self._resync(lane, force=False, reason="first start")
                    first_fullload_due = outcome.result is ResyncResult.FAILED
                    continue
                if not lane.resyncs.empty():
                    request = lane.resyncs.get_nowait()
                    outcome = await self._resync(lane, force=request.force, reason="requested")
                    if not request.done.done():
                        request.done.set_result(outcome)
                    continue
                timeout = await self._next_wakeup(lane)
                if timeout == 0.0:
                    await self._flush_once(lane)
                    continue
                wake = asyncio.ensure_future(lane.wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({wake, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (wake, stopping):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if timeout is not None and not lane.wake.is_set() and not stop.is_set():
                    await self._maybe_scheduled_resync(lane)
            except StoreError as exc:
                # The store failed (disk full, locked...): never let that end the lane. Records this step
                # had claimed are pending again, and the lane tries again after a pause.
                log.error("store error in the dispatcher; retrying", error=str(exc))
                if request is not None and not request.done.done():
                    request.done.set_result(
                        ResyncOutcome(lane.operator_id, ResyncResult.FAILED, message=f"store error: {exc}")
                    )
                with contextlib.suppress(StoreError):
                    await self.store.recover()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.05, self.push.max_retry_interval))
        await self._drain(lane, log)

    async def _ready_for_first_fullload(self, lane: Lane) -> bool:
        """The first fullLoad waits until the bridge holds statuses and has pushed them all as updates:
        an empty store at first start has nothing to replace Hubject's set with (docs/bridge.md)."""
        if lane.failures or self.clock() < lane.backoff_until:
            return False
        status = await self.store.lane_status(lane.operator_id)
        return status.pending == 0 and await self.store.fullload_count(lane.operator_id) > 0

    async def _next_wakeup(self, lane: Lane) -> float | None:
        """0: push now; a number: sleep at most that long; None: wait for a wake-up."""
        now = self.clock()
        status = await self.store.lane_status(lane.operator_id)
        if self.metrics is not None:
            self.metrics.pending.labels(str(lane.operator_id)).set(status.unacknowledged)
            oldest = status.oldest_unacknowledged_since
            age = 0.0 if oldest is None else max(0.0, now - oldest)
            self.metrics.oldest_pending_age.labels(str(lane.operator_id)).set(age)
        due = flush_due_in(
            status.oldest_pending_since, status.pending, now, self.push.flush_interval, self.push.max_batch
        )
        if due is not None and lane.backoff_until > now:
            due = max(due, lane.backoff_until - now)
        resync_due = await self._resync_due_in(lane, now)
        candidates = [d for d in (due, resync_due) if d is not None]
        return min(candidates) if candidates else None

    async def _resync_due_in(self, lane: Lane, now: float) -> float | None:
        interval = self.resync_config.interval
        if interval <= 0:
            return None
        last_at, _ = await self.store.last_fullload(lane.operator_id)
        if last_at is None:
            return None
        return max(0.001, last_at + interval - now)

    async def _maybe_scheduled_resync(self, lane: Lane) -> None:
        interval = self.resync_config.interval
        if interval <= 0:
            return
        last_at, _ = await self.store.last_fullload(lane.operator_id)
        if last_at is not None and last_at + interval <= self.clock():
            await self._resync(lane, force=False, reason="schedule")

    async def _drain(self, lane: Lane, log: Any) -> None:
        """Stopping: push what is pending now, without waiting for flush_interval or a backoff."""
        try:
            async with asyncio.timeout(self.push.shutdown_timeout):
                while await self._flush_once(lane):
                    pass
        except TimeoutError:
            status = await self.store.lane_status(lane.operator_id)
            log.warning("shutdown timeout: records stay pending for the next start", pending=status.pending)

    # --- pushing --------------------------------------------------------------------------------------------

    async def _flush_once(self, lane: Lane) -> bool:
        """Claim and push one batch; False when nothing was pending."""
        records = await self.store.claim(lane.operator_id, self.push.max_batch)
        if not records:
            return False
        lane.busy = True
        try:
            updates, deletes = split_by_action(records)
            ok = True
            for group, action in ((updates, ActionType.UPDATE), (deletes, ActionType.DELETE)):
                if group and not await self._push(lane, action, group):
                    ok = False
        finally:
            lane.busy = False
        return ok

    async def _push(self, lane: Lane, action: ActionType, records: Sequence[Record]) -> bool:
        """Push one group; True if every record was settled (delivered or set aside)."""
        operator_id = lane.operator_id
        wire = [
            EvseStatusRecord(evse_id=r.evse_id, evse_status=r.status or _DELETE_PLACEHOLDER) for r in records
        ]
        started = time.monotonic()
        try:
            await self.client.push_evse_status(
                operator_id, action, wire, operator_name=lane.operator.operator_name
            )
        except RejectedError as error:
            self._observe_latency(action, started)
            if not error.retryable and error.code in RECORD_CODES:
                return await self._set_aside(lane, action, records, error)
            await self._failed(lane, records, error)
            return False
        except RequestError as error:
            self._observe_latency(action, started)
            await self._failed(lane, records, error)
            return False
        self._observe_latency(action, started)
        await self.store.delivered(operator_id, records)
        lane.failures, lane.backoff_until, lane.last_error = 0, 0.0, None
        lane.last_push_at = self.clock()
        self._count(operator_id, "delivered", len(records))
        return True

    async def _set_aside(
        self, lane: Lane, action: ActionType, records: Sequence[Record], error: RejectedError
    ) -> bool:
        named = named_in(error.additional_info, records)
        if named and len(named) < len(records):
            await self._refuse(lane, named, error)
            rest = [r for r in records if r not in named]
            return await self._push(lane, action, rest)
        if len(records) == 1 or named:
            await self._refuse(lane, records, error)
            return True
        left, right = halves(records)
        left_ok = await self._push(lane, action, left)
        right_ok = await self._push(lane, action, right)
        return left_ok and right_ok

    async def _refuse(self, lane: Lane, records: Sequence[Record], error: RejectedError) -> None:
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
        await self.store.release(lane.operator_id, records, message)
        lane.failures += 1
        lane.last_error = message
        cap = self.push.max_retry_interval
        wait = cap if not error.retryable else min(cap, 2.0 ** min(lane.failures, 16))
        lane.backoff_until = self.clock() + wait
        self._count(lane.operator_id, "retry", len(records))
        self.log.warning(
            "push failed; records stay pending",
            operator_id=str(lane.operator_id),
            records=len(records),
            error=message,
            retryable=error.retryable,
            next_attempt_in=round(wait, 2),
        )

    # --- fullLoad --------------------------------------------------------------------------------------

    async def _resync(self, lane: Lane, *, force: bool, reason: str) -> ResyncOutcome:
        operator_id = lane.operator_id
        log = self.log.bind(operator_id=str(operator_id), reason=reason, force=force)
        excluded: set[EvseID] = set()
        _, last_count = await self.store.last_fullload(operator_id)
        lane.busy = True
        try:
            count = await self.store.fullload_count(operator_id)
            refusal = None if force else fullload_refusal(count, last_count, self.resync_config.max_shrink)
            if refusal is not None:
                message = f"{refusal}; use 'oicp-bridge resync --force' to send it anyway"
                log.warning("fullLoad refused", why=message)
                await self.store.operator_error(operator_id, f"fullLoad refused: {message}")
                return self._resync_outcome(operator_id, ResyncResult.REFUSED, message=message)
            await self.store.fullload_starting(operator_id)
            for _ in range(8):  # each round parks the EvseIDs Hubject reported unknown, then tries again
                snapshot_box: list[FullLoadSnapshot] = []
                pages = self._fullload_pages(operator_id, frozenset(excluded), snapshot_box)
                try:
                    await self.client.push_evse_status_stream(
                        operator_id, ActionType.FULL_LOAD, pages, operator_name=lane.operator.operator_name
                    )
                except RejectedError as error:
                    unknown = _evse_ids_in(error.additional_info) - excluded
                    if error.code == UNKNOWN_EVSE and unknown:
                        excluded |= unknown
                        await self.store.park(operator_id, unknown, error.code, str(error))
                        log.warning(
                            "fullLoad named EvseIDs without EVSE data; parked, retrying", count=len(unknown)
                        )
                        continue
                    return await self._resync_failed(lane, error, log)
                except RequestError as error:
                    return await self._resync_failed(lane, error, log)
                snapshot = snapshot_box[-1]
                await self.store.fullload_delivered(operator_id, snapshot, frozenset(excluded))
                lane.last_push_at = self.clock()
                log.info("fullLoad done", records=snapshot.count, parked=len(excluded))
                return self._resync_outcome(
                    operator_id, ResyncResult.DONE, snapshot.count, len(excluded), "done"
                )
            return await self._resync_failed(lane, None, log)
        finally:
            lane.busy = False
            lane.wake.set()  # updates that arrived meanwhile follow now

    def _fullload_pages(
        self,
        operator_id: OperatorID,
        excluded: frozenset[EvseID],
        snapshot_box: list[FullLoadSnapshot],
    ) -> Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]]:
        store = self.store

        async def pages() -> AsyncIterator[Sequence[EvseStatusRecord]]:
            loop = asyncio.get_running_loop()
            snapshot, rows, close = await loop.run_in_executor(
                None, store.fullload_rows, operator_id, excluded
            )
            try:
                snapshot_box.append(snapshot)
                while (page := await loop.run_in_executor(None, next, rows, None)) is not None:
                    yield [EvseStatusRecord(evse_id=EvseID(e), evse_status=s) for e, s in page]
            finally:
                await loop.run_in_executor(None, close)

        return pages

    async def _resync_failed(self, lane: Lane, error: RequestError | None, log: Any) -> ResyncOutcome:
        message = str(error) if error is not None else "too many rounds of unknown EvseIDs"
        await self.store.operator_error(lane.operator_id, f"fullLoad failed: {message}")
        lane.last_error = message
        log.error("fullLoad failed", error=message)
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

    def _observe_latency(self, action: ActionType, started: float) -> None:
        if self.metrics is not None:
            self.metrics.push_latency.labels(action.value).observe(time.monotonic() - started)


def _evse_ids_in(text: str | None) -> set[EvseID]:
    found: set[EvseID] = set()
    for match in _EVSE_ID_IN_TEXT.finditer(text or ""):
        if EvseID.is_valid(match.group(0)):
            found.add(EvseID(match.group(0)))
    return found
