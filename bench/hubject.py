"""The Hubject simulator in a process of its own, as Hubject is in production: the bridge under test does
not pay for the simulator's work. ``GET /_bench/pushes`` returns every push it applied, with when it was
received and acknowledged (``time.monotonic()``) and the statuses it carried, for delay measurement.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from bench.common import REPO_ROOT, Json
from oicp.models import Acknowledgement, PushEvseStatusRequest
from oicp.simulator import HubjectSimulator, serve_simulator


class RecordingSimulator(HubjectSimulator):
    """The simulator, also remembering for each applied push when it was acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[Json] = []

    def handle_push(self, path_operator_id: str, request: PushEvseStatusRequest) -> Acknowledgement:
        ack = super().handle_push(path_operator_id, request)
        records = request.operator_evse_status.evse_status_records
        self.pushes.append(
            {
                "acked_at": time.monotonic(),
                "action": request.action_type.value,
                "result": ack.result,
                "count": len(records),
                # only the updates' statuses are needed (and a fullLoad's would be large)
                "statuses": {str(r.evse_id): r.evse_status.value for r in records}
                if request.action_type.value == "update"
                else {},
            }
        )
        return ack

    def build_app(self) -> web.Application:
        app = super().build_app()

        async def pushes(request: web.Request) -> web.Response:
            return web.json_response(self.pushes)

        async def clear(request: web.Request) -> web.Response:
            self.pushes.clear()
            self.request_log.clear()
            return web.json_response({})

        app.router.add_get("/_bench/pushes", pushes)
        app.router.add_post("/_bench/clear", clear)
        return app


async def _serve() -> None:
    async with serve_simulator(RecordingSimulator()) as served:
        print(json.dumps({"url": served.url, "base_url": served.base_url}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


@asynccontextmanager
async def hubject_process() -> AsyncIterator[tuple[str, str]]:
    """Run the simulator in a child process; yields (OICP url, base url)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.hubject",
        "--child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the simulator process did not start")
        where: dict[str, Any] = json.loads(line)
        yield where["url"], where["base_url"]
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
