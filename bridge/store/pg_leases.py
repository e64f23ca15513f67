"""Leadership leases on PostgreSQL: a lease row per operator's push lane or polled source (``bridge_lease``,
``bridge.store.schema_pg``), judged by the pure rules of ``bridge.leases``.

Why lease rows with a fencing token, not session advisory locks: an advisory lock lives as long as the
session, so a replica that is paused (SIGSTOP, a long GC, a frozen VM) keeps its session and its lock, and
nobody takes over however long it is gone; and when it resumes, nothing in the database tells its pending
writes that it has been away. A lease row expires on the server's clock whatever the holder does, so another
replica takes over within ``[store] lease``; and its token, checked in the same transaction as a write
(``fence``), refuses the late writes of the holder that lost it. A lost connection needs no special case
either: the holder stops acting at its local end of the lease (``LeasePolicy.may_act``), which comes before
the server lets anyone else claim it.

Each claim, renewal or release is one transaction on the server's clock (``clock_timestamp()``): the row is
locked ``FOR UPDATE``, the pure rule decides, the row is written. A fenced write locks the row ``FOR SHARE``
for the rest of its transaction, so a takeover waits for that write's commit (and the write, if it comes
second, sees the new token and fails): never both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from bridge import leases
from bridge.errors import StoreError
from bridge.leadership import Leader
from bridge.leases import HeldLease, Lease, LeaseLostError, LeasePolicy
from bridge.store.port import Tx
from bridge.store.postgres import PostgresDatabase

log = logging.getLogger(__name__)

T = TypeVar("T")

_NOW = "SELECT extract(epoch FROM clock_timestamp())::double precision"


def _server_now(tx: Tx) -> float:
    # clock_timestamp(), not now(): now() is the transaction's start, and a group's transaction may have
    # started well before this statement.
    return float(tx.execute(_NOW).fetchone()[0])


def _locked_row(tx: Tx, name: str, *, share: bool) -> Lease | None:
    row = tx.execute(
        "SELECT holder, token, expires_at FROM bridge_lease WHERE name = ? "
        + ("FOR SHARE" if share else "FOR UPDATE"),
        (name,),
    ).fetchone()
    return None if row is None else Lease(name, row[0], int(row[1]), float(row[2]))


def claim_row(tx: Tx, name: str, holder: str, duration: float) -> Lease | None:
    """In a write transaction: claim or renew ``name`` for ``holder``; the granted lease, or None."""
    tx.execute(
        "INSERT INTO bridge_lease (name, holder, token, expires_at) VALUES (?, ?, 0, 0)"
        " ON CONFLICT (name) DO NOTHING",
        (name, leases.NOBODY),
    )
    current = _locked_row(tx, name, share=False)
    granted = leases.claim(current, name, holder, _server_now(tx), duration)
    if granted is not None:
        tx.execute(
            "UPDATE bridge_lease SET holder = ?, token = ?, expires_at = ? WHERE name = ?",
            (granted.holder, granted.token, granted.expires_at, name),
        )
    return granted


def release_row(tx: Tx, name: str, holder: str, token: int) -> bool:
    """In a write transaction: give ``name`` up if ``holder`` holds it with ``token``; whether it did."""
    current = _locked_row(tx, name, share=False)
    if current is None:
        return False
    released = leases.release(current, holder, token, _server_now(tx))
    if released is not None:
        tx.execute("UPDATE bridge_lease SET expires_at = ? WHERE name = ?", (released.expires_at, name))
    return released is not None


def fence(tx: Tx, held: HeldLease) -> None:
    """In the transaction of a write that only the lease's holder may make: raise LeaseLostError (so the
    write's savepoint is rolled back) unless ``held`` still holds the lease with its token, on the server's
    clock. The row stays locked (FOR SHARE) until the transaction ends, so no takeover commits in between."""
    current = _locked_row(tx, held.name, share=True)
    if not leases.fence_ok(current, held.holder, held.token, _server_now(tx)):
        raise LeaseLostError(
            f"{held.holder} no longer holds the lease {held.name} (token {held.token}): the write is refused"
        )


def read_leases(tx: Tx) -> list[Lease]:
    """Every lease row (for ``/status``: which replica leads which operator and source)."""
    rows = tx.execute("SELECT name, holder, token, expires_at FROM bridge_lease ORDER BY name").fetchall()
    return [Lease(r[0], r[1], int(r[2]), float(r[3])) for r in rows]


class LeaseKeeper:
    """One replica's leases: claims and renews names on its database, and tells what it may do now.

    ``holder`` names the replica (unique among the replicas, e.g. host and pid). ``clock`` is the monotonic
    clock the local lease ends are measured on."""

    def __init__(
        self,
        db: PostgresDatabase,
        holder: str,
        policy: LeasePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.holder = holder
        self.policy = policy
        self._clock = clock
        self._held: dict[str, HeldLease] = {}

    async def claim(self, name: str) -> HeldLease | None:
        """Claim or renew ``name``: the lease held now, or None (another replica holds it). On a database
        error the lease is kept as it was locally (it runs out on its own) and StoreError is raised."""
        asked_at = self._clock()
        holder, duration = self.holder, self.policy.duration
        granted = await self.db.write(lambda tx: claim_row(tx, name, holder, duration))
        if granted is None:
            self._held.pop(name, None)
            return None
        held = self.policy.held(granted, asked_at)
        self._held[name] = held
        return held

    async def release(self, name: str) -> None:
        """Give ``name`` up (another replica may claim it at once)."""
        held = self._held.pop(name, None)
        if held is not None:
            await self.db.write(lambda tx: release_row(tx, held.name, held.holder, held.token))

    def current(self, name: str) -> HeldLease | None:
        """The lease on ``name`` if this replica may act on it now (its local end, less the margin, is
        ahead), else None."""
        held = self._held.get(name)
        return held if self.policy.may_act(held, self._clock()) else None

    async def write_fenced(self, held: HeldLease, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction that commits only if ``held`` still holds its lease then."""

        def fenced(tx: Tx) -> T:
            fence(tx, held)
            return fn(tx)

        return await self.db.write(fenced)

    async def keep(self, names: Iterable[str]) -> dict[str, HeldLease | None]:
        """One round: claim every name not held, renew those due. What this replica holds afterwards."""
        wanted = list(names)
        now = self._clock()
        # sorted: replicas lock the lease rows in one order, so their groups never deadlock on them
        due = [n for n in sorted(wanted) if (h := self._held.get(n)) is None or self.policy.renew_due(h, now)]
        outcomes: list[Any] = await asyncio.gather(*(self.claim(n) for n in due), return_exceptions=True)
        for name, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, StoreError):  # the database is away: the lease runs out locally
                log.warning("cannot renew the lease %s: %s", name, outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return {n: self.current(n) for n in wanted}

    async def run(self, names: Iterable[str], stop: asyncio.Event) -> None:
        """Keep ``names`` until ``stop`` is set, a round every renewal interval; then release them."""
        wanted = list(names)
        while not stop.is_set():
            await self.keep(wanted)
            try:
                await asyncio.wait_for(stop.wait(), self.policy.renew_interval)
            except TimeoutError:
                continue
        for name in wanted:
            try:
                await self.release(name)
            except StoreError as exc:  # it runs out on its own within the lease
                log.warning("cannot release the lease %s: %s", name, exc)


class LeaseLeadership:
    """``bridge.leadership.Leadership`` on lease rows: what a replica on PostgreSQL may do now.

    A term is the lease's fencing token while this replica may act on it (``LeaseKeeper.current``). The
    lane that takes over at a term ``accept``s it; ``fence`` then refuses, in the write's transaction, any
    write of that lane once the replica no longer holds the lease with that token (lost, expired, or lost
    and claimed again: a new term means another replica may have led in between)."""

    shared = True

    def __init__(self, keeper: LeaseKeeper, names: Iterable[str]) -> None:
        self.keeper = keeper
        self.names = sorted(set(names))
        self._accepted: dict[str, int] = {}

    @property
    def holder(self) -> str:
        return self.keeper.holder

    @property
    def recheck(self) -> float:
        return self.keeper.policy.renew_interval

    def term(self, name: str) -> int | None:
        held = self.keeper.current(name)
        return None if held is None else held.token

    def valid_until(self, name: str) -> float | None:
        held = self.keeper.current(name)
        return None if held is None else held.valid_until - self.keeper.policy.safety_margin

    def accept(self, name: str, term: int) -> None:
        self._accepted[name] = term

    def fence(self, tx: Tx, name: str) -> None:
        held = self.keeper.current(name)
        accepted = self._accepted.get(name)
        if held is None or held.token != accepted:
            raise LeaseLostError(
                f"{self.holder} does not lead {name} in term {accepted}: the write is refused"
            )
        fence(tx, held)

    async def run(self, stop: asyncio.Event) -> None:
        await self.keeper.run(self.names, stop)

    async def report(self) -> list[Leader]:
        shown = await self.keeper.db.read(lambda tx: leaders(tx, self.names))
        return [
            dataclasses.replace(
                leader, mine=leader.holder == self.holder and self.term(leader.name) == leader.token
            )
            for leader in shown
        ]


def leaders(tx: Tx, names: Iterable[str]) -> list[Leader]:
    """Who leads each of ``names`` now, on the server's clock (``mine`` left False: the caller knows)."""
    now = _server_now(tx)
    by_name = {row.name: row for row in read_leases(tx)}
    shown = []
    for name in names:
        row = by_name.get(name)
        if row is None or not row.held_at(now):
            shown.append(Leader(name, "", 0 if row is None else row.token, 0.0, False))
        else:
            shown.append(Leader(name, row.holder, row.token, round(row.expires_at - now, 3), False))
    return shown
