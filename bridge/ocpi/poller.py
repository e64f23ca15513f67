"""Polling a CPO's OCPI Locations *sender* (``[[ocpi.sources]]``).

One poll: discover the CPO's locations endpoint through its versions URL (version_information_endpoint),
then GET it page by page, following ``Link: <...>; rel="next"`` (transport_and_format, Pagination), and
hand each page to the store as it arrives, so memory stays bounded by one page however large the CPO.

Incremental polls ask for ``date_from`` = the cursor minus an overlap (clock skew between the CPO and
us); the store ignores what it already has, so the overlap duplicates nothing downstream. Every poll also
sends ``date_to`` = the moment it started: a Location updated while we page through the set leaves the
set, which changes ``X-Total-Count``; such a poll may have skipped an entry (offset pagination shifted under
us), so it does not advance the cursor, and the next poll asks again from the old cursor. A complete,
consistent poll moves the cursor to its start. The cursor lives in ``ocpi_sender_poll`` (one row per
source), so a restart resumes incrementally.

A page that fails (transport error, HTTP 5xx/429, OCPI 3xxx) is retried with exponential backoff;
a poll that still fails is retried by ``run`` with backoff up to ``max_backoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from bridge.config import SourceConfig
from bridge.errors import StoreError
from bridge.feeds import FeedHealth
from bridge.leadership import Leadership, source_lease
from bridge.ocpi.auth import token_header
from bridge.ocpi.client import Answer, OcpiClient, RetryableResponseError, next_link
from bridge.ocpi.errors import OcpiClientError, OcpiError, OcpiResponseError, OcpiTransportError
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import EPOCH, to_micros
from bridge.store.engine import Engine
from bridge.store.port import Tx

if TYPE_CHECKING:  # the session is only passed through to the one OCPI client
    import aiohttp

__all__ = ["PollError", "SenderPoller", "authorization", "backoff_delay", "next_link"]

# structured events (docs/bridge.md, logs): an event name and fields, never a Python repr as the message
log = structlog.get_logger("bridge.ocpi.poller")

Clock = Callable[[], datetime]
Document = dict[str, Any]

DEFAULT_OVERLAP = timedelta(seconds=60)
MAX_IMMEDIATE_REPOLLS = 2


class PollError(OcpiClientError):
    """A poll of a CPO's Locations sender did not complete; the cursor was not advanced."""


class SourceConfigError(PollError):
    """The source cannot be polled as configured (e.g. OCPI 2.1.1 without country_code/party_id)."""


class SenderLocationsSink(Protocol):
    """Where polled pages go (``bridge.ocpi.store.OcpiStore``)."""

    async def apply_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll did. ``complete``: every page arrived and the set held still, so the cursor moved."""

    source: str
    version: OcpiVersion
    full: bool
    started_at: datetime
    date_from: datetime | None
    pages: int
    locations: int
    changed: int
    retries: int
    complete: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_datetime(value: datetime) -> str:
    """OCPI DateTime in UTC (``2024-05-01T12:00:00.123Z``), for query parameters."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


authorization = token_header  # the one header builder (bridge.ocpi.auth), under its old name here


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [base * 2**attempt / 2, base * 2**attempt], capped."""
    ceiling = min(cap, base * 2**attempt)
    return rng.uniform(ceiling / 2, ceiling)


def _from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# --- the cursor -------------------------------------------------------------------------------------


class PollCursors:
    """Per-source poll bookkeeping in ``ocpi_sender_poll``."""

    def __init__(self, db: Engine) -> None:
        self.db = db

    async def load(self, source: str) -> datetime | None:
        def read(conn: Tx) -> datetime | None:
            row = conn.execute(
                "SELECT cursor_us FROM ocpi_sender_poll WHERE source = ?", (source,)
            ).fetchone()
            return None if row is None or row[0] is None else _from_us(int(row[0]))

        return await self.db.read(read)

    async def full_done(self, source: str) -> bool:
        """Whether a full poll of ``source`` ever completed (by any replica)."""

        def read(conn: Tx) -> bool:
            row = conn.execute(
                "SELECT last_full_at FROM ocpi_sender_poll WHERE source = ?", (source,)
            ).fetchone()
            return row is not None and row[0] is not None

        return await self.db.read(read)

    async def save_success(self, source: str, cursor: datetime, *, full: bool) -> None:
        now = time.time()

        def write(conn: Tx) -> None:
            conn.execute(
                "INSERT INTO ocpi_sender_poll (source, cursor_us, last_success_at, last_full_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET cursor_us = excluded.cursor_us,"
                " last_success_at = excluded.last_success_at,"
                # the table's name on the old value: a bare column is ambiguous on PostgreSQL
                " last_full_at = COALESCE(excluded.last_full_at, ocpi_sender_poll.last_full_at),"
                " last_error = NULL",
                (source, to_micros(cursor), now, now if full else None),
            )

        await self.db.write(write)

    async def save_error(self, source: str, error: str) -> None:
        now = time.time()

        def write(conn: Tx) -> None:
            conn.execute(
                "INSERT INTO ocpi_sender_poll (source, last_error, last_error_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error,"
                " last_error_at = excluded.last_error_at",
                (source, error[:1000], now),
            )

        await self.db.write(write)


# --- the poller -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Endpoint:
    version: OcpiVersion
    locations_url: str


@dataclass(frozen=True, slots=True)
class _Page:
    locations: list[Document]
    total: int | None
    next_url: str | None


class SenderPoller:
    """Polls one source. ``poll_once`` for one poll, ``run`` for the loop, ``request_full`` for a resync."""

    def __init__(
        self,
        source: SourceConfig,
        sink: SenderLocationsSink,
        db: Engine,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = utc_now,
        overlap: timedelta = DEFAULT_OVERLAP,
        page_limit: int | None = None,
        page_attempts: int = 5,
        retry_base: float = 0.5,
        max_backoff: float = 300.0,
        timeout: float = 30.0,
        rng: random.Random | None = None,
        feeds: FeedHealth | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.source = source
        # several replicas: only the one leading this source polls it (``bridge.leadership``)
        self.leadership = leadership
        self.feeds = feeds
        self.key = source.versions_url
        self.sink = sink
        self.cursors = PollCursors(db)
        self.clock = clock
        self.overlap = overlap
        self.page_limit = page_limit
        self.page_attempts = page_attempts
        self.retry_base = retry_base
        self.max_backoff = max_backoff
        self.client = OcpiClient(source.token.get_secret_value(), session=session, timeout=timeout)
        self._rng = rng or random.Random()
        self._endpoint: _Endpoint | None = None
        self.full_poll_done = False  # the bridge holds this sender's set (the first fullLoad waits for it)
        self._full_requested = False
        self._wake = asyncio.Event()
        self.consecutive_failures = 0
        self._failing_since = 0.0
        self._moving_streak = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    def request_full(self) -> None:
        """Make the next poll of ``run`` a full fetch (resync), and start it now."""
        self._full_requested = True
        self._wake.set()

    # --- HTTP ------------------------------------------------------------------------------------

    async def _get(
        self, url: str, version: OcpiVersion | None, params: dict[str, str] | None = None
    ) -> _Page:
        """One GET; an OCPI success answer as a page (``data`` a list, or one object), else an error."""
        return _page(await self.client.call("GET", url, version, params=params))

    async def _get_with_retries(
        self, url: str, version: OcpiVersion, params: dict[str, str] | None, counter: list[int]
    ) -> _Page:
        for attempt in range(self.page_attempts):
            try:
                return await self._get(url, version, params)
            except (OcpiTransportError, RetryableResponseError) as exc:
                if attempt + 1 >= self.page_attempts:
                    raise PollError(
                        f"{self.key}: giving up after {self.page_attempts} attempts: {exc}"
                    ) from exc
                counter[0] += 1
                delay = backoff_delay(attempt, base=self.retry_base, cap=self.max_backoff, rng=self._rng)
                log.debug("ocpi_page_retry", source=self.key, error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- discovery -------------------------------------------------------------------------------

    async def discover(self) -> _Endpoint:
        """The CPO's locations sender endpoint for the best version both sides speak (cached)."""
        if self._endpoint is not None:
            return self._endpoint
        discovery = await self.client.discover(self.source.versions_url)
        # used exactly as advertised: a sender whose URL ends in "/" may route only that spelling
        url = discovery.endpoint("locations", "SENDER")
        if url is None:
            raise PollError(f"{discovery.details_url}: the CPO offers no locations sender endpoint")
        self._endpoint = _Endpoint(discovery.version, url)
        return self._endpoint

    # --- polling ---------------------------------------------------------------------------------

    def _party_of(self, version: OcpiVersion, location: Document) -> tuple[str, str]:
        country, party = self.source.country_code, self.source.party_id
        if version is OcpiVersion.V2_2_1:  # 2.2.1 Locations name their party
            country = location.get("country_code") or country
            party = location.get("party_id") or party
        if not isinstance(country, str) or not isinstance(party, str):
            raise SourceConfigError(
                f"{self.key}: OCPI {version} Locations do not name their party: set country_code and party_id"
            )
        return country, party

    async def _apply(self, version: OcpiVersion, locations: list[Document]) -> int:
        groups: dict[tuple[str, str], list[Document]] = {}
        for location in locations:
            if isinstance(location, dict):
                groups.setdefault(self._party_of(version, location), []).append(location)
        changed = 0
        for (country, party), group in groups.items():
            changed += await self.sink.apply_sender_locations(country, party, version, group)
        return changed

    async def poll_once(self, *, full: bool = False) -> PollResult:
        """One poll (full if asked or if this source never completed one); raises PollError on failure."""
        try:
            return await self._poll(full=full)
        except PollError:
            self._endpoint = None  # rediscover next time: the CPO may have moved its endpoints
            raise
        except (OcpiError, StoreError) as exc:
            self._endpoint = None
            raise PollError(f"{self.key}: {exc}") from exc

    async def _poll(self, *, full: bool) -> PollResult:
        endpoint = await self.discover()
        started = self.clock()
        cursor = None if full else await self.cursors.load(self.key)
        date_from = None if cursor is None else cursor - self.overlap
        params = {"date_to": format_datetime(started)}
        if date_from is not None:
            params["date_from"] = format_datetime(date_from)
        if self.page_limit is not None:
            params["limit"] = str(self.page_limit)
        retries = [0]
        pages = locations = changed = 0
        totals: set[int] = set()
        url: str | None = endpoint.locations_url
        seen_urls: set[str] = set()
        while url is not None:
            page = await self._get_with_retries(
                url, endpoint.version, params if pages == 0 else None, retries
            )
            pages += 1
            locations += len(page.locations)
            if page.total is not None:
                totals.add(page.total)
            changed += await self._apply(endpoint.version, page.locations)
            seen_urls.add(url)
            url = page.next_url
            if url is not None and (url in seen_urls or not page.locations):
                raise PollError(f"{self.key}: pagination does not advance (next {url})")
        consistent = len(totals) <= 1
        if consistent:
            await self.cursors.save_success(self.key, started, full=cursor is None)
            self.full_poll_done = True  # caught up: a full poll, or an incremental one on top of one
        else:
            log.warning("ocpi_poll_set_moved", source=self.key, total_counts=sorted(totals))
        result = PollResult(
            self.key,
            endpoint.version,
            cursor is None,
            started,
            date_from,
            pages,
            locations,
            changed,
            retries[0],
            consistent,
        )
        log.info(
            "ocpi_poll_done",
            source=self.key,
            version=result.version.value,
            full=result.full,
            pages=pages,
            locations=locations,
            changed=changed,
            retries=result.retries,
            complete=consistent,
        )
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``poll_interval`` until ``stop`` is set; after a failure wait with exponential backoff
        (capped at ``max_backoff``); a poll the set moved under is repeated at once, at most twice running."""
        while not stop.is_set():
            if not await self._leads(stop):
                continue
            full, self._full_requested = self._full_requested, False
            self._wake.clear()
            try:
                result = await self.poll_once(full=full)
            except PollError as exc:
                self.consecutive_failures += 1
                self._full_requested = self._full_requested or full
                delay = backoff_delay(
                    self.consecutive_failures - 1,
                    base=self.retry_base * 4,
                    cap=self.max_backoff,
                    rng=self._rng,
                )
                # one line when the feed starts failing (error when only the configuration can fix it),
                # then only debug lines until it recovers; the store keeps the last error for /status
                if self.consecutive_failures == 1:
                    if isinstance(exc, SourceConfigError):
                        log.error("ocpi_source_failing", source=self.key, error=str(exc), permanent=True)
                    else:
                        log.warning("ocpi_source_failing", source=self.key, error=str(exc))
                    self._failing_since = time.monotonic()
                else:
                    log.debug(
                        "ocpi_poll_failed",
                        source=self.key,
                        error=str(exc),
                        failures=self.consecutive_failures,
                        retry_in_s=round(delay, 1),
                    )
                await self._record_error(str(exc))
                if self.feeds is not None:
                    self.feeds.poll_failed(self.key, str(exc))
            else:
                if self.feeds is not None:
                    self.feeds.polled(self.key, result.changed)
                if self.consecutive_failures:
                    log.info(
                        "ocpi_source_recovered",
                        source=self.key,
                        failed_polls=self.consecutive_failures,
                        down_s=round(time.monotonic() - self._failing_since, 1),
                    )
                self.consecutive_failures = 0
                self._moving_streak = 0 if result.complete else self._moving_streak + 1
                # Repeat a poll the set moved under at once, but only twice in a row: a CPO busy enough to
                # move it every time is polled at the normal interval (from the kept cursor, so nothing lost).
                again = 0 < self._moving_streak <= MAX_IMMEDIATE_REPOLLS
                delay = 0.0 if again else self.source.poll_interval
            await self._wait(stop, delay)

    async def _leads(self, stop: asyncio.Event) -> bool:
        """Whether this replica polls the source now; if not, it waited. A replica that does not poll a
        source learns from the store whether the leader completed a full poll (the first fullLoad of an
        operator this replica leads waits for that)."""
        if self.leadership is None or self.leadership.term(source_lease(self.key)) is not None:
            return True
        with contextlib.suppress(StoreError):
            self.full_poll_done = self.full_poll_done or await self.cursors.full_done(self.key)
        await self._wait(stop, self.leadership.recheck)
        return False

    async def _record_error(self, error: str) -> None:
        try:
            await self.cursors.save_error(self.key, error)
        except StoreError as exc:
            log.error("ocpi_poll_error_not_recorded", source=self.key, error=str(exc))

    async def _wait(self, stop: asyncio.Event, delay: float) -> None:
        if delay <= 0:
            return
        stopped = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopped, woken}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            woken.cancel()

    async def get_location(self, country_code: str, party_id: str, location_id: str) -> Document | None:
        """GET one Location from the CPO's sender; None if the CPO does not know it (or it is another
        party's)."""
        endpoint = await self.discover()
        # mod_locations sender, "GET Object": {locations_endpoint_url}/{location_id}
        url = f"{endpoint.locations_url.rstrip('/')}/{location_id}"
        try:
            page = await self._get(url, endpoint.version)
        except OcpiResponseError as exc:
            if exc.http_status == 404 or exc.status_code == 2003:
                return None
            raise
        if not page.locations:
            return None
        location = page.locations[0]
        if self._party_of(endpoint.version, location) != (country_code, party_id):
            return None
        return location

    async def fetch_location(self, country_code: str, party_id: str, location_id: str) -> None:
        """The receiver's ``fetch_missing``: GET the Location from the CPO's sender and store it.

        Raises an OcpiError if the CPO cannot be asked; a Location the CPO does not know is left unknown.
        """
        try:
            location = await self.get_location(country_code, party_id, location_id)
        except PollError:
            raise
        except OcpiError as exc:
            self._endpoint = None
            raise PollError(f"{self.key}: fetching Location {location_id}: {exc}") from exc
        if location is None:
            log.warning(
                "ocpi_location_unknown_to_sender",
                source=self.key,
                country_code=country_code,
                party_id=party_id,
                location_id=location_id,
            )
            return
        endpoint = await self.discover()
        await self.sink.apply_sender_locations(country_code, party_id, endpoint.version, [location])


def _page(answer: Answer) -> _Page:
    """A success answer as a page: ``data`` a list (or one object, as a list of one)."""
    answer.success()
    data = answer.data
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise OcpiResponseError(
            f"GET {answer.url}: the answer has no data list",
            http_status=answer.http_status,
            status_code=answer.status_code,
        )
    return _Page(data, answer.total, answer.next_url)
