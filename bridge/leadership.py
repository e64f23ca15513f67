"""Who acts for an operator or a polled source: the one question every lane asks before a step.

Contract "Several replicas": for each operator exactly one replica at a time pushes to Hubject (OICP 2.3 CPO
01 forbids parallel pushes per operator), runs its fullLoads and its schedule; each polled OCPI source is
polled by one replica. Any lane (the status push lane in ``bridge.dispatcher``, an EVSE data lane, a sender
poller) asks ``Leadership.term(name)`` before each step, with ``operator_lease(id)`` or ``source_lease(url)``
as the name, and acts only while it gets a term:

- ``SoleLeader`` (SQLite, one process): always the leader, term 0; fencing costs nothing.
- ``bridge.store.pg_leases.LeaseLeadership`` (PostgreSQL): the lease rows of ``LeaseKeeper``; a term is the
  lease's fencing token, so a lane that sees a new term knows that another replica may have led in between
  (it takes over: what that replica had in flight is pending again). ``fence(tx, name)``, in the same
  transaction as a lane's write (claiming, marking delivered, fullLoad bookkeeping), refuses the write of a
  replica that no longer holds the term it took over with (``LeaseLostError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.leases import LeaseLostError
from bridge.store.port import Tx

SOLE_TERM = 0
SOLE_HOLDER = "this process"


def operator_lease(operator_id: object) -> str:
    """The lease name of an operator's lanes (status, EVSE data), its fullLoads and its schedule."""
    return f"operator:{operator_id}"


def source_lease(versions_url: str) -> str:
    """The lease name of a polled OCPI source."""
    return f"source:{versions_url}"


@dataclass(frozen=True, slots=True)
class Leader:
    """One row of ``/status``: who leads ``name`` (``holder``; "" for nobody), with which token, until
    when (seconds from now, on the database's clock), and whether that is this replica."""

    name: str
    holder: str
    token: int
    expires_in: float
    mine: bool


class Leadership(Protocol):
    """What a lane asks before a step, and what its fenced writes check (see the module's docstring)."""

    @property
    def holder(self) -> str:
        """This replica's name (host and pid)."""
        ...

    @property
    def shared(self) -> bool:
        """Several replicas may write the store: a leading lane looks in the store for work other replicas'
        intake committed (nobody notifies it across processes)."""
        ...

    @property
    def recheck(self) -> float:
        """How long a lane that does not lead waits before it asks again."""
        ...

    def term(self, name: str) -> int | None:
        """The term under which this replica may act on ``name`` now, or None (another leads it, or this
        replica cannot tell: it stops before anyone else can take over)."""
        ...

    def valid_until(self, name: str) -> float | None:
        """Until when (``time.monotonic``) this replica may act on ``name`` as things stand, or None."""
        ...

    def accept(self, name: str, term: int) -> None:
        """The lane took over ``name`` at ``term``: its fenced writes are checked against that term."""
        ...

    def fence(self, tx: Tx, name: str) -> None:
        """In a write's transaction: raise LeaseLostError unless this replica still leads ``name`` in the
        term its lane accepted."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and renew the leases until ``stop``; then give them up."""
        ...

    async def report(self) -> list[Leader]:
        """Who leads which operator and source (``/status``)."""
        ...


class SoleLeader:
    """One process on its own store (SQLite): it leads everything, always, and nothing needs fencing."""

    shared = False
    recheck = 1.0

    def __init__(self, names: list[str], holder: str = SOLE_HOLDER) -> None:
        self.names = sorted(names)
        self.holder = holder

    def term(self, name: str) -> int | None:
        return SOLE_TERM

    def valid_until(self, name: str) -> float | None:
        return None

    def accept(self, name: str, term: int) -> None:
        return None

    def fence(self, tx: Tx, name: str) -> None:
        return None

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def report(self) -> list[Leader]:
        return [Leader(name, self.holder, SOLE_TERM, float("inf"), True) for name in self.names]


@contextlib.asynccontextmanager
async def while_leading(
    leadership: Leadership, name: str, *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[None]:
    """Run the block only while this replica leads ``name``: when its lease would end (it could not renew
    it), the block is cancelled and LeaseLostError raised, so a push that hangs never stays open past the
    moment another replica may start one (a cancelled aiohttp request closes its connection). Nothing on
    ``SoleLeader``."""
    if leadership.valid_until(name) is None:
        yield
        return
    scope = asyncio.timeout(None)
    try:
        async with scope:
            watcher = asyncio.ensure_future(_watch(leadership, name, scope, clock))
            try:
                yield
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    except TimeoutError:
        if scope.expired():
            raise LeaseLostError(
                f"{leadership.holder} stopped acting on {name}: its lease would end"
            ) from None
        raise


async def _watch(
    leadership: Leadership, name: str, scope: asyncio.Timeout, clock: Callable[[], float]
) -> None:
    """Keep ``scope``'s deadline at the lease's local end as renewals move it; let it fire when it stops
    moving."""
    loop = asyncio.get_running_loop()
    while True:
        until = leadership.valid_until(name)
        if until is None:
            scope.reschedule(loop.time())  # lost already: cancel the block now
            return
        scope.reschedule(loop.time() + max(0.0, until - clock()))
        await asyncio.sleep(max(0.01, min(until - clock(), leadership.recheck)))
