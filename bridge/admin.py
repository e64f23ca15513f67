"""The admin listener: health, readiness, Prometheus metrics, the status page, and resync on demand.

Readiness never asks Hubject anything (Hubject's Acceptable Use Policy forbids availability probing): it
is false while the store is closed, or while an operator's last push failed after the client's whole
retry budget.
"""

from __future__ import annotations

import hmac
import html
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from bridge.dispatcher import Dispatcher, ResyncResult
from bridge.metrics import Metrics
from bridge.ocpi.errors import OcpiError
from bridge.status import read_status
from bridge.store.database import Database
from oicp.errors import InvalidIDError
from oicp.ids import OperatorID


class AdminApp:
    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        metrics: Metrics,
        *,
        token: SecretStr | None,
        refetch: Callable[[], Awaitable[int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.token = token
        self.refetch = refetch
        self.clock = clock

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/status.json", self.status_json)
        app.router.add_get("/status", self.status_page)
        app.router.add_post("/resync", self.resync)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def readiness(self) -> tuple[bool, list[str]]:
        problems = []
        if not self.db.is_open:
            problems.append("the store is closed")
        for lane in self.dispatcher.lanes.values():
            if lane.failures > 0:
                problems.append(f"pushes for {lane.operator_id} are failing: {lane.last_error}")
        return not problems, problems

    async def ready(self, request: web.Request) -> web.Response:
        ok, problems = self.readiness()
        return web.json_response({"ready": ok, "problems": problems}, status=200 if ok else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self) -> dict[str, Any]:
        operator_ids = [str(lane.operator_id) for lane in self.dispatcher.lanes.values()]
        now = self.clock()
        status = await self.db.read(lambda conn: read_status(conn, operator_ids, now))
        for lane in self.dispatcher.lanes.values():
            entry = status["operators"].setdefault(str(lane.operator_id), {})
            entry["pushing_now"] = lane.busy
            entry["consecutive_failures"] = lane.failures
            entry["next_attempt_in_s"] = (
                round(lane.backoff_remaining(time.monotonic()), 3) if lane.failures else None
            )
        status["ready"], status["problems"] = self.readiness()
        return status

    async def status_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.status(), dumps=lambda data: json.dumps(data, indent=2))

    async def status_page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_status_page(await self.status()), content_type="text/html")

    async def resync(self, request: web.Request) -> web.Response:
        if self.token is None:
            return web.json_response({"error": "resync over HTTP needs [admin] token to be set"}, status=403)
        expected = f"Bearer {self.token.get_secret_value()}"
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        operator: OperatorID | None = None
        if "operator" in request.query:
            try:
                operator = OperatorID(request.query["operator"])
                self.dispatcher.lane(operator)
            except (InvalidIDError, KeyError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        force = request.query.get("force", "").lower() in ("1", "true", "yes")
        if request.query.get("refetch", "").lower() in ("1", "true", "yes"):
            if self.refetch is None:
                return web.json_response(
                    {"error": "no [[ocpi.sources]] configured to re-fetch from"}, status=400
                )
            try:
                await self.refetch()
            except OcpiError as exc:
                return web.json_response({"error": f"full OCPI re-fetch failed: {exc}"}, status=502)
        outcomes = await self.dispatcher.request_resync(operator, force=force)
        body = [
            {
                "operator_id": str(o.operator_id),
                "result": o.result.value,
                "records": o.records,
                "parked": o.parked,
                "message": o.message,
            }
            for o in outcomes
        ]
        failed = any(o.result is not ResyncResult.DONE for o in outcomes)
        return web.json_response({"outcomes": body}, status=409 if failed else 200)


def render_status_page(status: dict[str, Any]) -> str:
    def cell(value: object) -> str:
        return "<td>" + html.escape("—" if value is None else str(value)) + "</td>"

    columns = [
        "pending",
        "in_flight",
        "delivered",
        "dead",
        "parked",
        "oldest_pending_age_s",
        "last_success",
        "last_fullload",
        "last_error",
    ]
    rows = "".join(
        "<tr><th>"
        + html.escape(operator_id)
        + "</th>"
        + "".join(cell(info.get(c)) for c in columns)
        + "</tr>"
        for operator_id, info in status["operators"].items()
    )
    statuses = "".join(
        f"<tr><th>{html.escape(str(k))}</th>{cell(v)}</tr>"
        for k, v in status["records_by_oicp_status"].items()
    )
    dead = "".join(
        "<tr>" + "".join(cell(d[k]) for k in ("operator_id", "evse_id", "state", "code", "reason")) + "</tr>"
        for d in status["dead_letters"]
    )
    skipped = "".join(f"<tr><th>{html.escape(k)}</th>{cell(v)}</tr>" for k, v in status["not_pushed"].items())
    ready = "ready" if status["ready"] else "NOT READY: " + "; ".join(status["problems"])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["operator", *columns])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>oicp-bridge status</title>
<meta http-equiv="refresh" content="10">
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>oicp-bridge</h1><p>{html.escape(ready)} — {html.escape(str(status["generated_at"]))}</p>
<h2>Operators</h2><table><tr>{head}</tr>{rows}</table>
<h2>Records by Hubject status</h2><table>{statuses}</table>
<h2>Dead letters and parked records</h2><table><tr><th>operator</th><th>EvseID</th><th>state</th>
<th>code</th><th>reason</th></tr>{dead}</table>
<h2>Not pushed</h2><table>{skipped}</table></body></html>
"""
