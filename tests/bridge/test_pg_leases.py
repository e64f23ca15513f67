"""Leadership leases on a real PostgreSQL server (bridge.store.pg_leases): several replicas' connections,
one holder at a time, renewal, failover after a holder stops or is killed with SIGKILL, fencing of a holder
that lost its lease, and a holder whose database connection drops stopping before anyone can take over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bridge.errors import StoreError
from bridge.leases import HeldLease, LeaseLostError, LeasePolicy
from bridge.store import schema_pg
from bridge.store.pg_leases import LeaseKeeper, fence, read_leases
from bridge.store.port import Tx
from bridge.store.postgres import PgTx, PostgresDatabase, connect
from tests.pg_server import PgServer

KV = "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
NAME = "operator:DE*ABC"
DEADLINE_S = 20.0


async def replica(url: str, holder: str, duration: float) -> LeaseKeeper:
    db = PostgresDatabase(url, [*schema_pg.MIGRATIONS, KV], application_name=f"replica-{holder}")
    await db.open()
    return LeaseKeeper(db, holder, LeasePolicy(duration=duration))


@contextlib.asynccontextmanager
async def replicas(url: str, count: int, duration: float) -> AsyncIterator[list[LeaseKeeper]]:
    keepers = [await replica(url, f"r{i}", duration) for i in range(count)]
    try:
        yield keepers
    finally:
        for keeper in keepers:
            await keeper.db.close()


async def until(condition: Callable[[], Awaitable[object]], what: str, *, step: float = 0.02) -> float:
    """Poll ``condition`` until true (a deadline, never a fixed sleep); the monotonic time it became true."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)
    return time.monotonic()


async def test_exactly_one_replica_gets_each_lease(pg_url: str) -> None:
    names = [f"operator:DE*A{i:02}" for i in range(12)] + ["source:https://cpo.example/ocpi/versions"]
    async with replicas(pg_url, 4, duration=30.0) as keepers:
        rounds = await asyncio.gather(*(k.keep(reversed(names)) for k in keepers))
        rows = await keepers[0].db.read(read_leases)
        for name in names:
            holders = [k.holder for k, held in zip(keepers, rounds, strict=True) if held[name] is not None]
            assert len(holders) == 1, f"{name}: held by {holders}"
        assert {r.name: (r.holder, r.token) for r in rows} == {
            name: (next(k.holder for k, held in zip(keepers, rounds, strict=True) if held[name]), 1)
            for name in names
        }
        # a second round: the holders renew (same token), the others are still refused
        again = await asyncio.gather(*(k.claim(names[0]) for k in keepers))
        assert sum(held is not None for held in again) == 1
        assert {held.token for held in again if held is not None} == {1}


async def test_a_renewing_holder_keeps_its_lease(pg_url: str) -> None:
    async with replicas(pg_url, 2, duration=1.5) as (leader, other):
        stop = asyncio.Event()
        held = await leader.claim(NAME)
        assert held is not None
        keeping = asyncio.create_task(leader.run([NAME], stop))
        end = time.monotonic() + 2 * leader.policy.duration  # longer than one lease
        refused = 0
        while time.monotonic() < end:
            assert await other.claim(NAME) is None
            assert leader.current(NAME) is not None
            refused += 1
            await asyncio.sleep(0.05)
        stop.set()
        await keeping
        assert refused > 10
        # run() released it on the way out: the next claim gets it at once, with the next token
        taken = await other.claim(NAME)
        assert taken is not None
        assert taken.token == held.token + 1


async def test_failover_within_the_lease_after_the_holder_stops_renewing(pg_url: str) -> None:
    duration = 1.0
    async with replicas(pg_url, 2, duration=duration) as (leader, follower):
        asked_at = time.monotonic()
        held = await leader.claim(NAME)
        assert held is not None
        await leader.db.close()  # it stops: no renewal, no release
        taken_at = await until(lambda: follower.claim(NAME), "the follower to take over")
        taken = follower.current(NAME)
        assert taken is not None
        assert taken.token == held.token + 1
        assert taken_at - asked_at >= duration * 0.9  # not before the lease ran out (server and local clocks)
        assert taken_at - asked_at <= duration + 1.0  # and promptly after


async def test_a_holder_that_lost_its_lease_cannot_write_under_it(pg_url: str) -> None:
    async with replicas(pg_url, 2, duration=1.0) as (old, new):
        stale = await old.claim(NAME)
        assert stale is not None
        await old.write_fenced(stale, lambda tx: tx.execute("INSERT INTO kv VALUES ('delivered', 1)"))
        await until(lambda: new.claim(NAME), "the lease to pass on")  # `old` paused past its lease
        fresh = new.current(NAME)
        assert fresh is not None
        assert fresh.token == stale.token + 1

        def mark_delivered(tx: Tx) -> None:
            tx.execute("UPDATE kv SET v = v + 1 WHERE k = 'delivered'")

        with pytest.raises(LeaseLostError, match="no longer holds"):
            await old.write_fenced(stale, mark_delivered)
        assert await old.db.read(lambda tx: tx.execute("SELECT v FROM kv").fetchone()[0]) == 1
        await new.write_fenced(fresh, mark_delivered)
        assert await old.db.read(lambda tx: tx.execute("SELECT v FROM kv").fetchone()[0]) == 2
        # nor may it take the lease back by renewing: the new holder has it
        assert await old.claim(NAME) is None


async def test_a_fenced_write_and_a_takeover_never_both_commit(pg_url: str) -> None:
    """The fence locks the lease row for the rest of the write's transaction: a takeover that comes while
    that write is open waits for its commit, and sees the lease expired only then."""
    async with replicas(pg_url, 2, duration=2.0) as (old, new):
        held = await old.claim(NAME)
        assert held is not None
        loop = asyncio.get_running_loop()
        with connect(pg_url) as conn:
            tx = PgTx(conn, {})
            conn.execute("BEGIN")
            await loop.run_in_executor(None, fence, tx, held)  # passes: the lease is still held
            conn.execute("INSERT INTO kv VALUES ('marked', 1)")
            await asyncio.sleep(held.valid_until - time.monotonic() + 0.1)  # the lease runs out meanwhile
            takeover = asyncio.create_task(new.claim(NAME))
            done, _ = await asyncio.wait([takeover], timeout=0.5)
            assert not done, "the takeover did not wait for the fenced write"
            conn.execute("COMMIT")
        taken = await asyncio.wait_for(takeover, DEADLINE_S)
        assert taken is not None
        assert taken.token == held.token + 1
        with pytest.raises(LeaseLostError):
            await old.write_fenced(held, lambda tx: tx.execute("INSERT INTO kv VALUES ('late', 1)"))
        keys = await new.db.read(lambda tx: [r[0] for r in tx.execute("SELECT k FROM kv")])
        assert keys == ["marked"]


async def test_a_holder_cut_off_from_the_database_stops_before_anyone_takes_over(pg_url: str) -> None:
    """The leader's connections are cut and it cannot log in again (its role loses LOGIN), while the follower
    still reaches the database: the leader stops acting, on its own clock, before the follower gets in."""
    role = f"leader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER".encode())
    try:
        async with replicas(pg_url, 1, duration=1.0) as (follower,):
            leader = await replica(make_conninfo(pg_url, user=role), "leader", duration=1.0)
            try:
                held = await leader.claim(NAME)
                assert held is not None
                # the moment it stops acting, by its own rule (the local end of its lease, less the margin)
                stops_at = held.valid_until - leader.policy.safety_margin
                with psycopg.connect(pg_url, autocommit=True) as admin:
                    admin.execute(f"ALTER ROLE {role} NOLOGIN".encode())
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
                    )

                async def leader_stopped() -> bool:
                    with contextlib.suppress(StoreError):
                        await leader.keep([NAME])  # its renewals fail: the lease runs out locally
                    return leader.current(NAME) is None

                leader_acting_at_takeover: list[bool] = []

                async def follower_took_over() -> bool:
                    if await follower.claim(NAME) is None:
                        return False
                    leader_acting_at_takeover.append(leader.current(NAME) is not None)
                    return True

                _, taken_at = await asyncio.gather(
                    until(leader_stopped, "the leader to stop"),
                    until(follower_took_over, "the follower to take over"),
                )
                assert stops_at <= taken_at
                assert leader_acting_at_takeover == [False]
                assert leader.db.commits == 1  # the first claim only: no renewal got through
            finally:
                await leader.db.close()
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            admin.execute(f"DROP ROLE {role}".encode())


VICTIM = """
import asyncio, sys
from bridge.leases import LeasePolicy
from bridge.store import schema_pg
from bridge.store.postgres import PostgresDatabase
from bridge.store.pg_leases import LeaseKeeper

async def main() -> None:
    db = PostgresDatabase(sys.argv[1], schema_pg.MIGRATIONS)
    await db.open()
    keeper = LeaseKeeper(db, "victim", LeasePolicy(duration=float(sys.argv[2])))
    held = await keeper.claim(sys.argv[3])
    print("held", held.token if held else 0, flush=True)
    await keeper.run([sys.argv[3]], asyncio.Event())

asyncio.run(main())
"""


async def test_failover_after_the_holder_process_is_killed(pg_url: str) -> None:
    duration = 2.0
    async with replicas(pg_url, 1, duration=duration) as (survivor,):
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VICTIM, pg_url, str(duration), NAME, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert victim.stdout is not None
            line = await asyncio.wait_for(victim.stdout.readline(), DEADLINE_S)
            assert line.split() == [b"held", b"1"]
            end = time.monotonic() + 1.25 * duration  # the victim renews: nobody else gets it
            while time.monotonic() < end:
                assert await survivor.claim(NAME) is None
                await asyncio.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await victim.wait()
        finally:
            if victim.returncode is None:
                victim.kill()
                await victim.wait()
        taken_at = await until(lambda: survivor.claim(NAME), "the survivor to take over")
        taken = survivor.current(NAME)
        assert taken is not None
        assert taken.token == 2
        assert taken_at - killed_at <= duration + 1.0


def test_a_held_lease_is_plain_data() -> None:
    held = HeldLease(NAME, "r0", 3, 12.5)
    assert (held.name, held.holder, held.token, held.valid_until) == (NAME, "r0", 3, 12.5)


async def test_a_keeper_cut_off_from_the_database_retries_once_per_renewal_interval(
    pg_private_server: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = await replica(pg_private_server.url, "r0", duration=0.6)  # renews every 0.2 s
    try:
        assert await keeper.claim(NAME) is not None
        pg_private_server.stop(mode="immediate")
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, logger="bridge.store.pg_leases"):
            keeping = asyncio.create_task(keeper.run([NAME], stop))
            await asyncio.sleep(1.2)  # the span whose attempts are counted
            stop.set()
            await keeping
        attempts = [r for r in caplog.records if "cannot renew the lease" in r.getMessage()]
        assert 2 <= len(attempts) <= 8, f"{len(attempts)} renewal attempts in 1.2 s at one per 0.2 s"
        assert keeper.current(NAME) is None  # and it no longer acts
    finally:
        await keeper.db.close()
