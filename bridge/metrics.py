"""Prometheus metrics of one bridge instance, on a registry of its own (no global state).

Two kinds of series (names fixed in docs/contract.md, meanings in docs/metrics.md):
- counters and the push-duration histogram, counted where things happen (dispatcher, intake, Hubject
  calls), every known label value initialised at start so a series exists before its first event;
- gauges computed when scraped (``LiveCollector``) from a ``Snapshot`` of the store, the lanes and the feed
  tracker that the admin app reads just before: backlog, oldest unacknowledged age, failing and
  last-success are true at the moment of the scrape, not at the last lane wake-up.

No ``_created`` series: ``prometheus_client`` can only switch them off process-wide
(``disable_created_metrics``, a module global), so ``exposition`` filters them out of this registry's
output instead.
"""

from __future__ import annotations

import platform
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Self

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bridge.certificates import CertificateError, certificate_expiry
from bridge.config import HubjectConfig
from bridge.feeds import UNKNOWN_PARTY, FeedKind
from bridge.mapping import SkipReason
from bridge.observation import OcpiEvseStatus
from bridge.status import RECORD_STATES, DataView, Snapshot
from oicp import ConfigurationError, EvseDataClient, EvseStatusClient, PushResult, RestClient, WireRecord
from oicp.codes import CODE_CATALOGUE, RECORD_LEVEL_CODES
from oicp.errors import HTTPStatusError, RejectedError, RequestError
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord

PUSH_RESULTS = ("delivered", "retry", "dead", "parked")
RESYNC_RESULTS = ("done", "refused", "failed")  # bridge.dispatcher.ResyncResult (a test pins the match)
PUSH_ACTIONS = (ActionType.UPDATE, ActionType.DELETE, ActionType.FULL_LOAD)
# HTTP statuses a Hubject answer is counted under; anything else is "other" (bounded labels).
HTTP_STATUSES = ("200", "400", "401", "403", "404", "408", "429", "500", "502", "503", "504")
NO_ANSWER = "none"  # transport failure: no HTTP status, no OICP code
OTHER = "other"


def bridge_version() -> str:
    try:
        return version("oicp-bridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def client_cert_expiry(hubject: HubjectConfig) -> float | None:
    """notAfter of ``[hubject] client_cert``, read once at start; None without one or if unreadable
    (``check-config`` reports an unreadable certificate; the bridge's TLS setup fails on it anyway)."""
    if hubject.client_cert is None:
        return None
    try:
        return certificate_expiry(hubject.client_cert)
    except CertificateError:
        return None


class LiveCollector(Collector):
    """The gauges computed at scrape time from the snapshot the admin app read just before."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the snapshot; nothing to describe up front

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        if snap is None:
            return []
        return list(_live_families(snap))


def _live_families(snap: Snapshot) -> Iterator[Metric]:
    now = snap.now
    ready = GaugeMetricFamily(
        "oicp_bridge_ready", "1 when /ready answers 200 (store open, pushes not failing)"
    )
    ready.add_metric([], 1.0 if snap.ready else 0.0)
    yield ready
    uptime = GaugeMetricFamily("oicp_bridge_uptime_seconds", "seconds since this bridge process started")
    uptime.add_metric([], now - snap.started_at)
    yield uptime
    store = snap.store
    operators = sorted({*snap.lanes, *(store.operators if store else {})})
    pending = GaugeMetricFamily(
        "oicp_bridge_pending_records",
        "records Hubject has not acknowledged yet (pending or being pushed)",
        labels=["operator_id"],
    )
    oldest = GaugeMetricFamily(
        "oicp_bridge_oldest_pending_age_seconds",
        "age of the oldest record Hubject has not acknowledged (pending or being pushed); 0 when none",
        labels=["operator_id"],
    )
    records = GaugeMetricFamily(
        "oicp_bridge_records", "outbox records by delivery state", labels=["operator_id", "state"]
    )
    failing = GaugeMetricFamily(
        "oicp_bridge_operator_failing",
        "1 while the operator's pushes fail past the client's retry budget",
        labels=["operator_id"],
    )
    failing_for = GaugeMetricFamily(
        "oicp_bridge_push_failing_seconds",
        "seconds since the operator's pushes started failing; 0 when they are not",
        labels=["operator_id"],
    )
    last_success = GaugeMetricFamily(
        "oicp_bridge_last_success_timestamp_seconds",
        "time of the last push Hubject acknowledged (Unix seconds); 0 if never",
        labels=["operator_id"],
    )
    last_fullload = GaugeMetricFamily(
        "oicp_bridge_last_fullload_timestamp_seconds",
        "time of the last fullLoad Hubject acknowledged (Unix seconds); 0 if never",
        labels=["operator_id"],
    )
    for op in operators:
        row = store.operators.get(op) if store else None
        lane = snap.lanes.get(op)
        if row is not None:
            pending.add_metric([op], row.unacknowledged)
            since = row.oldest_unacknowledged_since
            oldest.add_metric([op], 0.0 if since is None else max(0.0, now - since))
            for state in RECORD_STATES:
                records.add_metric([op, state], row.counts.get(state, 0))
            last_success.add_metric([op], row.last_success_at or 0.0)
            last_fullload.add_metric([op], row.last_fullload_at or 0.0)
        is_failing = lane is not None and lane.failures > 0
        failing.add_metric([op], 1.0 if is_failing else 0.0)
        started = row.failing_since if row is not None else None
        failing_for.add_metric([op], max(0.0, now - started) if is_failing and started is not None else 0.0)
    yield from (pending, oldest, records, failing, failing_for, last_success, last_fullload)
    if store is not None and store.evse_data:
        yield from _data_families(store.evse_data)
    yield from _feed_families(snap)


def _data_families(views: dict[str, DataView]) -> Iterator[Metric]:
    """EVSE data (operators with push_evse_data = true): the data outbox and what waits for it."""
    records = GaugeMetricFamily(
        "oicp_bridge_evse_data_records",
        "EVSE data records by delivery state",
        labels=["operator_id", "state"],
    )
    held = GaugeMetricFamily(
        "oicp_bridge_evse_data_held_statuses",
        "statuses held until Hubject acknowledges their EVSE data",
        labels=["operator_id"],
    )
    dead = GaugeMetricFamily(
        "oicp_bridge_evse_data_dead_records",
        "EVSE data records refused for good, by Hubject's code ('local': refused before sending)",
        labels=["operator_id", "code"],
    )
    not_pushable = GaugeMetricFamily(
        "oicp_bridge_evse_data_not_pushable",
        "EVSEs without an EvseDataRecord, by reason (bridge.evse_data.NotPushableReason)",
        labels=["operator_id", "reason"],
    )
    for op, view in sorted(views.items()):
        for state in RECORD_STATES:
            records.add_metric([op, state], view.counts.get(state, 0))
        held.add_metric([op], view.held_statuses)
        for code, count in sorted(view.dead_by_code.items()):
            dead.add_metric([op, code], count)
        for reason, count in sorted(view.not_pushable_by_reason.items()):
            not_pushable.add_metric([op, reason], count)
    yield from (records, held, dead, not_pushable)


def _feed_families(snap: Snapshot) -> Iterator[Metric]:
    labels = ["kind", "feed"]
    stale = GaugeMetricFamily(
        "oicp_bridge_feed_stale",
        "1 when the feed was silent for longer than [ocpi] stale_after",
        labels=labels,
    )
    silent = GaugeMetricFamily(
        "oicp_bridge_feed_silence_seconds",
        "seconds since the feed's last sign of life (complete poll, accepted push), or since start",
        labels=labels,
    )
    last_change = GaugeMetricFamily(
        "oicp_bridge_feed_last_change_timestamp_seconds",
        "time the feed last changed something (Unix seconds); 0 if not since start",
        labels=labels,
    )
    requests = CounterMetricFamily(
        "oicp_bridge_feed_requests", "polls made / Locations requests received, per feed", labels=labels
    )
    errors = CounterMetricFamily(
        "oicp_bridge_feed_errors", "failed polls / refused Locations requests, per feed", labels=labels
    )
    rejected = CounterMetricFamily(
        "oicp_bridge_feed_rejected_authentications",
        "OCPI requests refused for a missing or wrong token, per party the URL names (unknown: none known)",
        labels=["party"],
    )
    for report in snap.feeds:
        s = report.state
        key = [s.kind.value, s.name]
        stale.add_metric(key, 1.0 if report.stale else 0.0)
        silent.add_metric(key, report.silent_for)
        last_change.add_metric(key, s.last_change_at or 0.0)
        requests.add_metric(key, s.requests)
        errors.add_metric(key, s.errors)
        if s.kind is FeedKind.PUSH:
            rejected.add_metric([s.name], s.rejected_auth)
    rejected.add_metric([UNKNOWN_PARTY], snap.rejected_unknown)
    threshold = GaugeMetricFamily(
        "oicp_bridge_feed_stale_after_seconds", "the configured [ocpi] stale_after (0: staleness is off)"
    )
    threshold.add_metric([], snap.stale_after)
    yield from (stale, silent, last_change, requests, errors, rejected, threshold)


class _WithoutCreated:
    """This registry's output minus the ``_created`` samples (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class Metrics:
    def __init__(
        self,
        operators: Sequence[OperatorID | str] = (),
        *,
        client_cert_expiry: float | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.live = LiveCollector()
        r.register(self.live)
        ops = [str(op) for op in operators]
        build = Gauge(
            "oicp_bridge_build_info", "the running bridge's version", ["version", "python"], registry=r
        )
        build.labels(bridge_version(), platform.python_version()).set(1)
        if client_cert_expiry is not None:
            expiry = Gauge(
                "oicp_bridge_client_cert_expiry_timestamp_seconds",
                "notAfter of [hubject] client_cert (Unix seconds), read at start",
                registry=r,
            )
            expiry.set(client_cert_expiry)
        self.observations = Counter(
            "oicp_bridge_observations",
            "OCPI EVSE observations received, by OCPI status",
            ["ocpi_status"],
            registry=r,
        )
        self.not_pushed = Counter(
            "oicp_bridge_observations_not_pushed",
            "observations not pushed, by reason",
            ["reason"],
            registry=r,
        )
        self.records_pushed = Counter(
            "oicp_bridge_records_pushed",
            "records sent to Hubject, by result (delivered, retry, dead, parked)",
            ["operator_id", "result"],
            registry=r,
        )
        self.push_latency = Histogram(
            "oicp_bridge_push_duration_seconds",
            "duration of one eRoamingPushEvseStatus call including retries",
            ["action"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.dead_letters = Counter(
            "oicp_bridge_dead_letters",
            "records Hubject refused for good, by code",
            ["operator_id", "code"],
            registry=r,
        )
        self.data_records_pushed = Counter(
            "oicp_bridge_evse_data_records_pushed",
            "EVSE data records sent to Hubject, by result (delivered, retry, dead)",
            ["operator_id", "result"],
            registry=r,
        )
        self.data_dead_letters = Counter(
            "oicp_bridge_evse_data_dead_letters",
            "EVSE data records Hubject (or local validation: code 'local') refused for good, by code",
            ["operator_id", "code"],
            registry=r,
        )
        self.auth_failures = Counter(
            "oicp_bridge_auth_failures",
            "requests refused for a missing, malformed or unknown token, by listener (ocpi, admin)",
            ["listener"],
            registry=r,
        )
        for listener in ("ocpi", "admin"):
            self.auth_failures.labels(listener)
        self.resyncs = Counter(
            "oicp_bridge_resyncs", "fullLoad resyncs, by result", ["operator_id", "result"], registry=r
        )
        self.hubject_requests = Counter(
            "oicp_bridge_hubject_requests",
            "eRoamingPushEvseStatus calls by Hubject's answer: HTTP status and OICP StatusCode "
            "(none: no answer; other: outside the catalogue)",
            ["http_status", "oicp_code"],
            registry=r,
        )
        self._initialise(ops)

    def _initialise(self, operators: list[str]) -> None:
        """A series for every known label value, so ``increase()`` and alerts see the first event."""
        for status in OcpiEvseStatus:
            self.observations.labels(status.value)
        for reason in SkipReason:
            self.not_pushed.labels(reason.value)
        for action in PUSH_ACTIONS:
            self.push_latency.labels(action.value)
        dead_codes = sorted((RECORD_LEVEL_CODES | {"022"}) - {"603"})  # 603 parks, it does not kill
        for op in operators:
            for result in PUSH_RESULTS:
                self.records_pushed.labels(op, result)
            for result in RESYNC_RESULTS:
                self.resyncs.labels(op, result)
            for code in dead_codes:
                self.dead_letters.labels(op, code)
        for code in [*CODE_CATALOGUE, OTHER]:
            self.hubject_requests.labels("200", code)
        for http_status in [*HTTP_STATUSES[1:], OTHER, NO_ANSWER]:
            self.hubject_requests.labels(http_status, NO_ANSWER)

    def exposition(self, snapshot: Snapshot) -> bytes:
        """The text exposition with the live gauges computed from ``snapshot``. Synchronous from setting
        the snapshot to the end of ``generate_latest``, so concurrent scrapes cannot mix snapshots."""
        self.live.snapshot = snapshot
        try:
            return generate_latest(_WithoutCreated(self.registry))
        finally:
            self.live.snapshot = None

    def push_duration_totals(self) -> tuple[float, float]:
        """(sum, count) of the push-duration histogram over every action (for the console's chart)."""
        total = count = 0.0
        for metric in self.push_latency.collect():
            for sample in metric.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
        return total, count

    def count_hubject_answer(self, error: RequestError | None) -> None:
        """One Hubject answer (``None``: an acknowledged push). Also the shape of the client's
        ``on_retry`` hook's error, so the lead can wire ``on_retry`` to ``on_retry`` below."""
        self.hubject_requests.labels(*hubject_labels(error)).inc()

    def on_retry(self, attempt: int, error: RequestError, wait: float) -> None:
        """``oicp.retry.RetryHook``: each failed attempt the client retries (wired in ``build_client``)."""
        self.count_hubject_answer(error)


def hubject_labels(error: RequestError | None) -> tuple[str, str]:
    """(http_status, oicp_code) of a Hubject answer, mapped to bounded values."""
    if error is None:
        return "200", "000"
    if isinstance(error, RejectedError):
        return "200", error.code if error.code in CODE_CATALOGUE else OTHER
    if isinstance(error, HTTPStatusError):
        status = str(error.status)
        return (status if status in HTTP_STATUSES else OTHER), NO_ANSWER
    return NO_ANSWER, NO_ANSWER


class CountingClient:
    """An ``EvseStatusClient`` that counts the final answer of every push by HTTP status and OICP code.

    Emulates the result hook the client does not have: the OICP client reports failed attempts it
    retries through ``on_retry`` only, and nothing for the last attempt. The lead replaces this wrapper by
    a result hook on ``HubjectTransport._push_with_retries`` (``on_result(error: RequestError | None)``,
    called once per attempt), wired in ``bridge.app.build_client``."""

    def __init__(self, inner: EvseStatusClient, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)

    async def push_evse_status(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        try:
            result = await self.inner.push_evse_status(
                operator_id, action, records, operator_name=operator_name
            )
        except RequestError as error:
            self.metrics.count_hubject_answer(error)
            raise
        self.metrics.count_hubject_answer(None)
        return result

    async def push_evse_status_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[EvseStatusRecord]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        try:
            result = await self.inner.push_evse_status_stream(
                operator_id,
                action,
                pages,
                operator_name=operator_name,
            )
        except RequestError as error:
            self.metrics.count_hubject_answer(error)
            raise
        self.metrics.count_hubject_answer(None)
        return result

    async def push_evse_data(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[WireRecord],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        return await self._counted(
            self._data_client().push_evse_data(operator_id, action, records, operator_name=operator_name)
        )

    async def push_evse_data_stream(
        self,
        operator_id: OperatorID,
        action: ActionType,
        pages: Callable[[], AsyncIterator[Sequence[str]]],
        *,
        operator_name: str | None = None,
    ) -> PushResult:
        return await self._counted(
            self._data_client().push_evse_data_stream(operator_id, action, pages, operator_name=operator_name)
        )

    def _data_client(self) -> EvseDataClient:
        if not isinstance(self.inner, RestClient):
            # check-config refuses push_evse_data with protocol = "soap" (bridge.config)
            raise ConfigurationError('EVSE data push needs the REST client (protocol = "rest")')
        return self.inner

    async def _counted(self, push: Awaitable[PushResult]) -> PushResult:
        try:
            result = await push
        except RequestError as error:
            self.metrics.count_hubject_answer(error)
            raise
        self.metrics.count_hubject_answer(None)
        return result

    async def pull_evse_status(
        self,
        provider_id: ProviderID,
        *,
        operator_ids: Sequence[OperatorID] | None = None,
        evse_ids: Sequence[EvseID] | None = None,
    ) -> dict[EvseID, EvseStatus]:
        return await self.inner.pull_evse_status(provider_id, operator_ids=operator_ids, evse_ids=evse_ids)
