"""Wiring: the whole bridge built from one configuration, and its lifecycle.

Start order: store, Hubject client, dispatcher, OCPI receiver and pollers, admin listener. Stop order
(SIGTERM/SIGINT): stop taking input (receiver closed, pollers stopped), let the dispatcher push what is
pending within ``shutdown_timeout``, then close the client and the store, and log one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from bridge.admin import AdminApp
from bridge.config import BridgeConfig, Protocol, ReceiverConfig, StoreConfig, parse_listen
from bridge.data_intake import DataIntake
from bridge.data_lane import DataLanes
from bridge.dispatcher import Dispatcher
from bridge.errors import ConfigError, ListenError
from bridge.evse_data import RecordSettings
from bridge.feeds import FeedHealth
from bridge.intake import Decider, Intake
from bridge.leadership import Leadership, SoleLeader, operator_lease, source_lease
from bridge.leases import LeasePolicy
from bridge.mapping import StatusMapper, parse_overrides
from bridge.metrics import CountingClient, Metrics, client_cert_expiry
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.auth import Party
from bridge.ocpi.poller import SenderPoller
from bridge.ocpi.receiver import FetchMissing, build_receiver_app
from bridge.ocpi.store import OcpiStore
from bridge.ownership import PartyBinding
from bridge.store.database import Database
from bridge.store.engine import Engine
from bridge.store.evse_data import DataOutboxStore
from bridge.store.outbox import OutboxStore
from bridge.store.schema import MIGRATIONS
from oicp import EvseStatus, EvseStatusClient, RequestError, RestClient, RetryHook, SoapClient

# File descriptors kept free below the process's limit for everything but the OCPI receiver's
# connections: the store (a few), the Hubject connection pool, the admin listener, pollers, logs.
RESERVED_FDS = 160
ADMIN_MAX_CONNECTIONS = 64
ADMIN_IDLE_TIMEOUT = 15.0
# One line per this many seconds for repeated accept() failures (EMFILE...), with the count suppressed.
ACCEPT_ERROR_LOG_INTERVAL = 10.0
LINGERING_TIME = 1.0


def wire_evse_data(
    config: BridgeConfig,
    db: Engine,
    intake: Intake,
    dispatcher: Dispatcher,
    mapper: StatusMapper,
    binding: PartyBinding,
    metrics: Metrics,
    wall_clock: Callable[[], float],
) -> DataLanes:
    """The EVSE data outbox and lanes (issue 14) for the operators with ``push_evse_data = true``."""
    leadership = dispatcher.leadership  # the status lanes' (bridge.leadership): one gate for both lanes
    fence = (lambda tx, op: leadership.fence(tx, operator_lease(op))) if leadership.shared else None
    store = DataOutboxStore(db, clock=wall_clock, fence=fence)
    push_planned = isinstance(mapper.table[OcpiEvseStatus.PLANNED], EvseStatus)
    settings = {
        op.operator_id: RecordSettings.of(
            op.hotline_phone_number or "",
            config.evse_data,
            op.evse_data,
            include_unpublished=config.push.include_unpublished,
            push_planned=push_planned,
        )
        for op in config.operators
        if op.push_evse_data
    }
    data_intake = DataIntake(store, settings, intake.decider.operator_for, binding, clock=wall_clock)
    assert isinstance(dispatcher.client, CountingClient)  # its data methods need the REST client
    lanes = DataLanes(
        store,
        dispatcher.client,
        config.operators,
        config.push,
        config.resync,
        dispatcher,
        metrics=metrics,
        wall_clock=wall_clock,
        initial_resync=dispatcher.initial_resync,
        unsure_for=dispatcher.unsure_for,
    )
    data_intake.lanes = lanes
    lanes.remap = functools.partial(data_intake.reconcile, db, force=True)
    intake.data = data_intake
    dispatcher.data = lanes
    return lanes


def build_client(config: BridgeConfig, on_retry: RetryHook | None = None) -> EvseStatusClient:
    """The configured client; ``on_retry`` hears every attempt the client retries (counted and logged)."""
    settings = config.client_settings()
    if config.hubject.protocol is Protocol.SOAP:
        return SoapClient(settings, on_retry=on_retry)
    return RestClient(settings, on_retry=on_retry)


def replica_name() -> str:
    """This bridge among the replicas (the lease rows' holder): host, pid, and a random part, so two
    bridges built in one process (tests, an embedding application) are two replicas, not one."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_leadership(store: StoreConfig, db: Engine, names: list[str]) -> Leadership:
    """Who runs which operator's lanes and polls which source: on SQLite this process alone; on PostgreSQL
    the replica holding its lease (``[store] lease``, bridge.store.pg_leases)."""
    if not store.is_postgres:
        return SoleLeader(names)
    from bridge.store.pg_leases import LeaseKeeper, LeaseLeadership  # the postgres extra
    from bridge.store.postgres import PostgresDatabase

    assert isinstance(db, PostgresDatabase)
    return LeaseLeadership(LeaseKeeper(db, replica_name(), LeasePolicy(duration=store.lease)), names)


def build_store(store: StoreConfig) -> Engine:
    """The engine ``[store] url`` names: SQLite (embedded, one process) or PostgreSQL (replicas)."""
    if not store.is_postgres:
        return Database(store.sqlite_path, MIGRATIONS)
    try:  # the postgres extra (psycopg) is needed only when it is configured
        from bridge.store.postgres import PostgresDatabase
        from bridge.store.schema_pg import MIGRATIONS as PG_MIGRATIONS
    except ImportError as exc:
        extra = "pip install 'oicp-bridge[postgres]'"
        raise ConfigError([f"store.url: postgresql:// needs the postgres extra ({extra}): {exc}"]) from exc
    return PostgresDatabase(store.url, PG_MIGRATIONS)


@dataclass
class Bridge:
    """Every part of a running bridge; built by ``Bridge.build`` (no global state)."""

    config: BridgeConfig
    metrics: Metrics
    db: Engine
    outbox: OutboxStore
    ocpi_store: OcpiStore
    intake: Intake
    client: EvseStatusClient
    dispatcher: Dispatcher
    pollers: list[SenderPoller]
    admin: AdminApp
    log: structlog.stdlib.BoundLogger = field(default_factory=lambda: structlog.get_logger("bridge"))
    receiver_url: str | None = None
    admin_url: str | None = None
    feeds: FeedHealth | None = None

    @classmethod
    def build(
        cls,
        config: BridgeConfig,
        *,
        initial_resync: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> Bridge:
        """``wall_clock`` is for display and bookkeeping only: every wait runs on the monotonic clock."""
        metrics = Metrics(
            [op.operator_id for op in config.operators], client_cert_expiry=client_cert_expiry(config.hubject)
        )
        feeds = FeedHealth(
            stale_after=config.ocpi.stale_after,
            sources=[source.versions_url for source in config.ocpi.sources],
            parties=[f"{t.country_code}/{t.party_id}" for t in config.ocpi.receiver.tokens],
            clock=wall_clock,
        )
        db = build_store(config.store)
        leadership = build_leadership(
            config.store,
            db,
            [operator_lease(op.operator_id) for op in config.operators]
            + [source_lease(source.versions_url) for source in config.ocpi.sources],
        )
        mapper = StatusMapper(
            [op.operator_id for op in config.operators],
            parse_overrides(config.mapping),
            push_unpublished=config.push.include_unpublished,
        )
        binding = PartyBinding({op.operator_id: op.ocpi_parties for op in config.operators})
        # several replicas: every write of an operator's lane is fenced by its lease (bridge.leadership)
        fence = (lambda tx, op: leadership.fence(tx, operator_lease(op))) if leadership.shared else None
        outbox = OutboxStore(db, clock=wall_clock, fence=fence)
        ocpi_store = OcpiStore(db, clock=lambda: datetime.fromtimestamp(wall_clock(), UTC))
        intake = Intake(db, ocpi_store, outbox, Decider(mapper, binding), metrics=metrics, clock=wall_clock)
        retry_log = structlog.get_logger("bridge.hubject")

        def on_retry(attempt: int, error: RequestError, wait: float) -> None:
            """Every attempt the client retries is counted and logged where it happens (review C7)."""
            metrics.on_retry(attempt, error, wait)
            retry_log.warning("hubject_retry", attempt=attempt, wait_s=round(wait, 3), error=str(error))

        client = CountingClient(build_client(config, on_retry=on_retry), metrics)
        pollers: list[SenderPoller] = []
        dispatcher = Dispatcher(
            outbox,
            client,
            config.operators,
            config.push,
            config.resync,
            metrics=metrics,
            wall_clock=wall_clock,
            initial_resync=initial_resync,
            # after twice the client's timeout an attempt with an unknown outcome can no longer land
            unsure_for=2.0 * (config.hubject.timeout + config.hubject.connect_timeout),
            attempt_timeout=config.hubject.timeout,
            sources_ready=lambda: all(poller.full_poll_done for poller in pollers),
            leadership=leadership,
        )
        intake.lanes = dispatcher
        if any(op.push_evse_data for op in config.operators):
            wire_evse_data(config, db, intake, dispatcher, mapper, binding, metrics, wall_clock)
        pollers += [
            SenderPoller(source, intake, db, feeds=feeds, leadership=leadership)
            for source in config.ocpi.sources
        ]

        async def refetch_all() -> int:
            """A full OCPI fetch from every configured sender (before a resync, on request)."""
            results = [await poller.poll_once(full=True) for poller in pollers]
            return sum(result.locations for result in results)

        admin = AdminApp(
            db,
            dispatcher,
            metrics,
            token=config.admin.token,
            refetch=refetch_all if pollers else None,
            feeds=feeds,
            clock=wall_clock,
        )
        return cls(
            config, metrics, db, outbox, ocpi_store, intake, client, dispatcher, pollers, admin, feeds=feeds
        )

    def fetch_missing(self) -> FetchMissing | None:
        """A PATCH for a Location the bridge does not know: fetch it from that party's sender, if polled."""
        by_party = {
            (p.source.country_code, p.source.party_id): p for p in self.pollers if p.source.country_code
        }
        if not by_party:
            return None

        async def fetch(country_code: str, party_id: str, location_id: str) -> None:
            poller = by_party.get((country_code, party_id))
            if poller is not None:
                await poller.fetch_location(country_code, party_id, location_id)

        return fetch

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Event]:
        """Start everything; yields the event that stops it. On exit, stops in order and drains."""
        started = time.monotonic()
        await self.db.open()
        redecided = await self.intake.reconcile()
        if redecided:
            self.log.info(
                "configuration changed since the last start: every EvseID decided again", evse_ids=redecided
            )
        if self.intake.data is not None and (remapped := await self.intake.data.reconcile(self.db)):
            self.log.info("EVSE data settings changed since the last start: every EVSE mapped again",
                          evses=remapped)  # fmt: skip
        stop_intake, stop_dispatch = asyncio.Event(), asyncio.Event()
        receiver = self.config.ocpi.receiver
        own_party = Party.of(receiver.country_code, receiver.party_id)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.db.close)
            await stack.enter_async_context(self.client)
            receiver_socket = _bind(receiver.listen)
            stack.callback(receiver_socket.close)
            host, port = receiver_socket.getsockname()[:2]
            self.receiver_url = f"{receiver.scheme}://{host}:{port}"
            if receiver.public_url is None:  # CPOs discover our endpoints at the address really bound
                receiver = receiver.model_copy(update={"public_url": self.receiver_url})
            receiver_app = build_receiver_app(
                self.intake,
                receiver,
                fetch_missing=self.fetch_missing(),
                own_party=own_party,
                feeds=self.feeds,
                max_body_bytes=int(receiver.max_body_size),
                on_auth_failure=lambda: self.metrics.auth_failures.labels("ocpi").inc(),
            )
            loop = asyncio.get_running_loop()
            previous_handler = loop.get_exception_handler()
            loop.set_exception_handler(AcceptErrorLog(self.log).handle)
            stack.callback(loop.set_exception_handler, previous_handler)
            receiver_cap = connection_cap(receiver.max_connections)
            receiver_runner = await _serve(
                receiver_app,
                receiver_socket,
                receiver_tls(receiver),
                idle_timeout=receiver.idle_timeout,
                max_connections=receiver_cap,
            )
            admin_socket = _bind(self.config.admin.listen)
            stack.callback(admin_socket.close)
            admin_runner = await _serve(
                self.admin.build(),
                admin_socket,
                idle_timeout=ADMIN_IDLE_TIMEOUT,
                max_connections=ADMIN_MAX_CONNECTIONS,
            )
            stack.push_async_callback(admin_runner.cleanup)
            admin_host, admin_port = admin_socket.getsockname()[:2]
            self.admin_url = f"http://{admin_host}:{admin_port}"
            stop_leading = asyncio.Event()  # after the dispatcher's drain: it pushes under its leases
            leading = asyncio.create_task(self.dispatcher.leadership.run(stop_leading), name="leadership")
            tasks = [asyncio.create_task(self.dispatcher.run(stop_dispatch), name="dispatcher")]
            tasks += [asyncio.create_task(p.run(stop_intake), name=f"poller {p.key}") for p in self.pollers]
            self.log.info(
                "bridge started",
                receiver=self.receiver_url,
                admin=self.admin_url,
                hubject=self.config.hubject.url,
                protocol=self.config.hubject.protocol.value,
                operators=[str(o.operator_id) for o in self.config.operators],
                store=self.config.store.display_url,
                replica=self.dispatcher.leadership.holder,
                sources=len(self.pollers),
                max_connections=receiver_cap,
            )
            stop = asyncio.Event()
            try:
                yield stop
            finally:
                # 1. stop taking input
                await receiver_runner.cleanup()
                stop_intake.set()
                # the pollers end their loops (a poll under way too, bounded) before their sessions close
                polling = tasks[1:]
                if polling:
                    _, late = await asyncio.wait(polling, timeout=self.config.push.shutdown_timeout)
                    for task in late:
                        task.cancel()
                    await asyncio.gather(*late, return_exceptions=True)
                for poller in self.pollers:
                    await poller.aclose()
                # 2. push what is pending (the dispatcher's own drain is bounded by shutdown_timeout)
                stop_dispatch.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                stop_leading.set()  # give the leases up: another replica takes over at once
                tasks.append(leading)
                results.append((await asyncio.gather(leading, return_exceptions=True))[0])
                for task, result in zip(tasks, results, strict=True):
                    if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                        self.log.error(
                            "task failed",
                            task=task.get_name(),
                            error=str(result),
                            error_type=type(result).__name__,
                        )
                pending = sum(  # not yet acknowledged by Hubject: pending, or cut short in flight
                    [
                        (await self.outbox.lane_status(lane.operator_id)).unacknowledged
                        for lane in self.dispatcher.lanes.values()
                    ]
                )
                self.log.info(
                    "bridge stopped", pending_records=pending, uptime_s=round(time.monotonic() - started, 1)
                )

    async def run_until(self, stop: asyncio.Event) -> None:
        async with self.running() as running_stop:
            waiter = asyncio.ensure_future(stop.wait())
            other = asyncio.ensure_future(running_stop.wait())
            await asyncio.wait({waiter, other}, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, other):
                task.cancel()


def receiver_tls(receiver: ReceiverConfig) -> ssl.SSLContext | None:
    """The server context for ``[ocpi.receiver] tls_cert``/``tls_key``, or None (plain HTTP)."""
    if receiver.tls_cert is None or receiver.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(receiver.tls_cert, receiver.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"ocpi.receiver.tls_cert/tls_key cannot be loaded: {exc}"]) from exc
    return context


def connection_cap(configured: int) -> int:
    """``max_connections``, lowered to stay below the file-descriptor limit (systemd's default soft
    limit is 1024: 1 100 idle connections used to exhaust it and stop intake and pushes alike)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return min(configured, max(16, soft - RESERVED_FDS))


class AcceptErrorLog:
    """The event loop's exception handler: a failing ``accept()`` (EMFILE, ENFILE, ENOBUFS) is logged at
    most once per ``ACCEPT_ERROR_LOG_INTERVAL`` with the number of repeats; anything else goes to the
    loop's default handler as before."""

    def __init__(self, log: structlog.stdlib.BoundLogger, clock: Any = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self.last_logged: float | None = None
        self.suppressed = 0

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if not message.startswith("socket.accept()"):
            loop.default_exception_handler(context)
            return
        now = self.clock()
        if self.last_logged is not None and now - self.last_logged < ACCEPT_ERROR_LOG_INTERVAL:
            self.suppressed += 1
            return
        self.log.error(
            "accepting connections fails",
            error=str(context.get("exception", message)),
            repeated=self.suppressed,
            hint="raise LimitNOFILE or lower [ocpi.receiver] max_connections",
        )
        self.last_logged, self.suppressed = now, 0


def _bind(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


# What a connection beyond the cap gets before it is closed (no request is read from it).
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
    b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many open connections"
)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY_RESPONSE)
        transport.close()


@dataclass
class Listener:
    """One HTTP listener: aiohttp's request handling on an asyncio server that caps its connections."""

    runner: web.AppRunner
    server: asyncio.Server

    async def cleanup(self) -> None:
        self.server.close()  # stop accepting, then let aiohttp finish and close the open connections
        await self.runner.cleanup()


async def _serve(
    app: web.Application,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None = None,
    *,
    idle_timeout: float,
    max_connections: int,
) -> Listener:
    # aiohttp starts its keep-alive timer when a connection opens and re-arms it after each answer; it
    # closes the connection when it fires without a complete request head: that is both the header
    # timeout (a half-sent request) and the idle timeout.
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=idle_timeout,
        # after an early answer (413 for a body over the limit) aiohttp reads and drops the rest of the
        # body for up to this long before closing: 10 s by default, which also held up every shutdown
        lingering_time=LINGERING_TIME,
    )
    await runner.setup()
    handler_factory = runner.server
    assert handler_factory is not None

    def protocol() -> asyncio.BaseProtocol:
        if len(handler_factory.connections) >= max_connections:
            return _Refused()
        return handler_factory()

    server = await asyncio.get_running_loop().create_server(
        protocol, sock=sock, ssl=ssl_context, ssl_handshake_timeout=idle_timeout if ssl_context else None
    )
    return Listener(runner, server)
