"""A server for the wrk intake benchmark, in a process of its own: ``python bench/serve.py bare|bridge``.

Run by path with ``PYTHONPATH`` set to the tree whose code is measured, so the same script serves the
bridge of another commit (``bench/wrk.py``'s ``--tree``): it imports only names that commit has too
(``bench.common.bridge_config``, ``bench.hubject.hubject_process``, ``bridge.app.Bridge``). It prints one
JSON line (``url``, ``pid``) to the file named by its second argument once it listens (its stdout
carries the bridge's log), and runs until its stdin closes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

PATH = "/ocpi/2.2.1/locations/{cc}/{pid}/{location_id}/{evse_uid}"


class Watch:
    """With ``BENCH_WATCH=<file>``: what stalls the event loop, for the p99 tail. Every garbage
    collection's pause by generation (``gc.callbacks``) and every event-loop stall over 5 ms (a task that
    asks to wake every millisecond and notes how late it woke), written to the file when the server stops.
    """

    def __init__(self) -> None:
        self.gc: dict[str, list[float]] = {"0": [], "1": [], "2": []}
        self.stalls_ms: list[float] = []
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc[str(info["generation"])].append(1000 * (time.perf_counter() - self._gc_started))

    async def watch_loop(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            late = 1000 * (time.perf_counter() - asked) - 1
            if late > 5:
                self.stalls_ms.append(round(late, 2))

    def write(self, path: str) -> None:
        pauses = {
            generation: {
                "count": len(values),
                "total_ms": round(sum(values), 1),
                "max_ms": round(max(values, default=0.0), 2),
                "over_5ms": sum(v > 5 for v in values),
            }
            for generation, values in self.gc.items()
        }
        stalls = sorted(self.stalls_ms)
        Path(path).write_text(
            json.dumps({"gc": pauses, "stalls_over_5ms": len(stalls), "worst_stalls_ms": stalls[-20:]})
        )


def _as_the_daemon_does() -> None:
    """What ``oicp-bridge run`` does once started, in a tree that has it (``BENCH_NO_SETTLE`` leaves it out,
    to measure without it)."""
    try:
        from bridge.commands.run import settle_heap  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # an older tree
        return
    if not os.environ.get("BENCH_NO_SETTLE"):
        settle_heap()


def _ready(url: str) -> None:
    Path(sys.argv[2]).write_text(json.dumps({"url": url, "pid": os.getpid()}))


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _serve_until_stdin_closes(handler: Callable[[web.Request], Awaitable[web.Response]]) -> None:
    """``handler`` for the benchmark's PATCH path, on a free loopback port, until stdin closes."""
    app = web.Application()
    app.router.add_patch(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    _ready(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        await _until_stdin_closes()
    finally:
        await runner.cleanup()


async def bare() -> None:
    """The baseline: an aiohttp handler that parses the same JSON body and answers the same envelope."""

    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"status_code": 1000})

    await _serve_until_stdin_closes(handler)


async def durable() -> None:
    """The bare handler plus the one thing the bridge may not skip: the change is durable before the
    answer. The bridge's own store engine (``Database``: SQLite WAL, synchronous=FULL, group commit, the
    write inline on the event loop as the bridge's status fast path runs it), one INSERT per request. What
    durability alone costs on this machine, with none of the bridge's OCPI or outbox work."""
    from bridge.store.database import Database

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        row = (request.match_info["evse_uid"], body.get("status"), body.get("last_updated"))
        await db.write(lambda tx: tx.execute("INSERT INTO change VALUES (?, ?, ?)", row), inline=True)
        return web.json_response({"status_code": 1000})

    with tempfile.TemporaryDirectory(prefix="bench-wrk-durable-") as tmp:
        db = Database(Path(tmp) / "durable.db", ["CREATE TABLE change (uid TEXT, status TEXT, at TEXT);"])
        await db.open()
        try:
            await _serve_until_stdin_closes(handler)
        finally:
            await db.close()


async def bridge() -> None:
    """The whole bridge (``Bridge.running()``, SQLite file, synchronous=FULL, group commit), pushing to
    the Hubject simulator in a process of its own."""
    from bench.common import bridge_config
    from bench.hubject import hubject_process
    from bridge.app import Bridge

    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        async with hubject_process() as (hubject_url, _):
            # BENCH_FLUSH_INTERVAL: e.g. 3600 to measure intake alone, with no push during the rounds
            push = (
                {"flush_interval": float(os.environ["BENCH_FLUSH_INTERVAL"])}
                if "BENCH_FLUSH_INTERVAL" in os.environ
                else {}
            )
            config = bridge_config(Path(tmp) / "bridge.db", hubject_url, **push)
            store_url = os.environ.get("BENCH_STORE_URL")  # bench/pg_intake.py: the bridge on PostgreSQL
            if store_url:
                config = config.model_copy(
                    update={"store": config.store.model_copy(update={"url": store_url})}
                )
            built = Bridge.build(config, initial_resync=False)
            async with built.running():
                _as_the_daemon_does()
                assert built.receiver_url is not None
                _ready(built.receiver_url)
                await _until_stdin_closes()
                db = built.db
                groups = {"commits": db.commits, "writes": db.writes, "syncs": getattr(db, "syncs", None)}
                print(json.dumps({"store": groups}), flush=True)  # the group sizes, for the log


async def _main(kind: str) -> None:
    where = os.environ.get("BENCH_WATCH")
    watch = Watch() if where else None
    watcher = asyncio.create_task(watch.watch_loop()) if watch else None
    try:
        await {"bare": bare, "durable": durable, "bridge": bridge}[kind]()
    finally:
        if watcher is not None and watch is not None and where:
            watcher.cancel()
            watch.write(where)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
