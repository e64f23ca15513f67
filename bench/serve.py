"""A server for the wrk intake benchmark, in a process of its own: ``python bench/serve.py bare|bridge``.

Run by path with ``PYTHONPATH`` set to the tree whose code is measured, so the same script serves the
bridge of another commit (``bench/wrk.py``'s ``--tree``): it imports only names that commit has too
(``bench.common.bridge_config``, ``bench.hubject.hubject_process``, ``bridge.app.Bridge``). It prints one
JSON line (``url``, ``pid``) to the file named by its second argument once it listens (its stdout
carries the bridge's log), and runs until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from aiohttp import web

PATH = "/ocpi/2.2.1/locations/{cc}/{pid}/{location_id}/{evse_uid}"


def _ready(url: str) -> None:
    Path(sys.argv[2]).write_text(json.dumps({"url": url, "pid": os.getpid()}))


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def bare() -> None:
    """The baseline: an aiohttp handler that parses the same JSON body and answers the same envelope."""

    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"status_code": 1000})

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


async def bridge() -> None:
    """The whole bridge (``Bridge.running()``, SQLite file, synchronous=FULL, group commit), pushing to
    the Hubject simulator in a process of its own."""
    from bench.common import bridge_config
    from bench.hubject import hubject_process
    from bridge.app import Bridge

    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        async with hubject_process() as (hubject_url, _):
            built = Bridge.build(bridge_config(Path(tmp) / "bridge.db", hubject_url), initial_resync=False)
            async with built.running():
                assert built.receiver_url is not None
                _ready(built.receiver_url)
                await _until_stdin_closes()


if __name__ == "__main__":
    asyncio.run({"bare": bare, "bridge": bridge}[sys.argv[1]]())
