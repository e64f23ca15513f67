"""The admin listener: health, readiness, Prometheus metrics, the operator's console, and actions.

Readiness never asks Hubject anything (Hubject's Acceptable Use Policy forbids availability probing): it
is false while the store is closed, or while an operator's last push failed after the client's whole
retry budget. A stale OCPI feed does not make the bridge unready (bridge.feeds, docs/operations.md).

Every view (``/status``, ``/status.json``, ``/metrics``) is computed from one ``Snapshot`` read when asked
(the store on its reader thread, the lanes and feeds in memory), so each tells the truth at that moment.

Actions need the admin token: ``POST /resync`` and ``POST /dead-letters/retry`` as ``Authorization:
Bearer``; the console's forms post it as a form field together with this process's CSRF token, and are
refused when the browser says the request comes from another origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from bridge.console.history import DEFAULT_INTERVAL, History
from bridge.console.page import PageContext, render_page
from bridge.dispatcher import Dispatcher, ResyncOutcome, ResyncResult
from bridge.errors import StoreError
from bridge.feeds import FeedHealth
from bridge.metrics import Metrics, bridge_version
from bridge.ocpi.errors import OcpiError
from bridge.status import Snapshot, assess, lane_report, read_store, snapshot_json
from bridge.store.engine import Engine
from oicp.errors import InvalidIDError
from oicp.ids import OperatorID

log = structlog.get_logger("bridge.admin")

# What a console action may report back on the page after its redirect (fixed texts: nothing from the
# request is reflected).
NOTICES = {
    "retried": "{count} dead {letters} pending again and pushed now.",
    "resync-done": "Resync done.",
    "resync-failed": "Resync did not succeed; see the operator's last failure.",
}


class AdminApp:
    def __init__(
        self,
        db: Engine,
        dispatcher: Dispatcher,
        metrics: Metrics,
        *,
        token: SecretStr | None,
        refetch: Callable[[], Awaitable[int]] | None = None,
        feeds: FeedHealth | None = None,
        clock: Callable[[], float] = time.time,
        sample_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.token = token
        self.refetch = refetch
        self.clock = clock
        self.feeds = feeds or FeedHealth(stale_after=0.0, clock=clock)
        self.started_at = clock()
        self.version = bridge_version()
        self.history = History(interval=sample_interval)
        self.csrf = secrets.token_urlsafe(24)  # per process: a form from an older page needs a reload

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/status.json", self.status_json)
        app.router.add_get("/status", self.status_page)
        app.router.add_post("/resync", self.resync)
        app.router.add_post("/dead-letters/retry", self.retry_api)
        app.router.add_post("/status/retry-dead-letters", self.retry_form)
        app.router.add_post("/status/resync", self.resync_form)
        app.cleanup_ctx.append(self._sampling)
        return app

    # --- reading ---------------------------------------------------------------------------------------

    async def snapshot(self, *, details: bool = True) -> Snapshot:
        monotonic_now = time.monotonic()
        lanes = {
            str(lane.operator_id): lane_report(lane, monotonic_now) for lane in self.dispatcher.lanes.values()
        }
        store, store_error = None, None
        try:
            dialect = self.db.dialect
            store = await self.db.read(
                lambda conn: read_store(conn, list(lanes), details=details, dialect=dialect)
            )
        except StoreError as exc:  # closed or failing: the views say so instead of failing themselves
            store_error = str(exc)
        now = self.clock()
        stored_polls = {
            source: (row.last_success_at, row.last_error, row.last_error_at)
            for source, row in (store.polls.items() if store else [])
        }
        for party in store.registered_parties if store else []:
            self.feeds.know_party(party)
        feeds = self.feeds.report(now, stored_polls=stored_polls)
        problems, warnings = assess(store, store_error, lanes, feeds)
        leadership = self.dispatcher.leadership
        leaders = []
        if details:
            with contextlib.suppress(StoreError):  # the store's own problem is reported above
                leaders = await leadership.report()
        return Snapshot(
            now,
            self.started_at,
            self.version,
            store,
            store_error,
            lanes,
            feeds,
            self.feeds.stale_after,
            problems,
            warnings,
            self.feeds.rejected_unknown,
            leadership.holder,
            leaders,
        )

    async def _sampling(self, app: web.Application) -> AsyncIterator[None]:
        """The console's history: one sample every ``history.interval`` seconds while the app runs."""
        task = asyncio.create_task(self._sample_forever(), name="console history")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _sample_forever(self) -> None:
        while True:
            snap = await self.snapshot(details=False)
            if snap.store is not None:
                ops = snap.store.operators
                self.history.add(
                    snap.now,
                    {op: row.unacknowledged for op, row in ops.items()},
                    {
                        op: 0.0
                        if row.oldest_unacknowledged_since is None
                        else snap.now - row.oldest_unacknowledged_since
                        for op, row in ops.items()
                    },
                    self.metrics.push_duration_totals(),
                )
            await asyncio.sleep(self.history.interval)

    # --- views ----------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        snap = await self.snapshot(details=False)
        return web.json_response(
            {"ready": snap.ready, "problems": snap.problems}, status=200 if snap.ready else 503
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition(await self.snapshot(details=False))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self) -> dict[str, Any]:
        return snapshot_json(await self.snapshot(), self.history.as_json())

    async def status_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.status(), dumps=lambda data: json.dumps(data, indent=2))

    async def status_page(self, request: web.Request) -> web.Response:
        notice, is_error = _notice(request)
        nonce = secrets.token_urlsafe(16)
        context = PageContext(self.csrf, nonce, self.token is not None, notice, is_error)
        page = render_page(await self.snapshot(), self.history, context)
        response = web.Response(text=page, content_type="text/html")
        # Nothing but this page's own inline style and nonce'd script; forms post only to this origin.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" makes forms post Origin: null
        return response

    # --- authorisation ------------------------------------------------------------------------------------

    def _token_matches(self, presented: str) -> bool:
        """The admin token typed into a console form, compared as bytes like ``bearer_matches``."""
        if self.token is None:
            return False
        expected = self.token.get_secret_value().encode("utf-8")
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape").strip(), expected)

    def _auth_failed(self, request: web.Request) -> None:
        self.metrics.auth_failures.labels("admin").inc()
        log.warning("admin_authentication_failed", source=request.remote or "unknown", path=request.path)

    def _refuse_api(self, request: web.Request) -> web.Response | None:
        if self.token is None:
            return web.json_response(
                {"error": "this action over HTTP needs [admin] token to be set"}, status=403
            )
        if not bearer_matches(request.headers.get("Authorization"), self.token):
            self._auth_failed(request)
            return web.json_response(
                {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return None

    async def _refuse_form(self, request: web.Request) -> tuple[web.Response | None, dict[str, str]]:
        """A console form: same origin (when the browser says), this process's CSRF token, the admin token."""
        try:
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        except ValueError:
            return _page_error("the form could not be read", 400), {}
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
            return _page_error("the form was sent from another site", 403), form
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            return _page_error(
                "the page was out of date (the bridge restarted?): reload it and try again", 403
            ), form
        if self.token is None:
            return _page_error("this action needs [admin] token in the configuration", 403), form
        if not self._token_matches(form.get("token", "")):
            self._auth_failed(request)
            return _page_error("wrong admin token: nothing was changed", 401), form
        return None, form

    def _operator(self, value: str | None) -> OperatorID | None:
        """The operator an action is for (None: all); raises ValueError for one not configured."""
        if not value:
            return None
        try:
            operator = OperatorID(value)
            self.dispatcher.lane(operator)
        except (InvalidIDError, KeyError) as exc:
            raise ValueError(str(exc).strip("'\"")) from exc
        return operator

    # --- actions --------------------------------------------------------------------------------------

    async def resync(self, request: web.Request) -> web.Response:
        if (refused := self._refuse_api(request)) is not None:
            return refused
        try:
            operator = self._operator(request.query.get("operator"))
        except ValueError as exc:
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
        if request.query.get("data", "").lower() in ("1", "true", "yes"):
            return await self._resync_data(operator, force)
        outcomes = await self.dispatcher.request_resync(operator, force=force)
        failed = any(o.result is not ResyncResult.DONE for o in outcomes)
        return web.json_response({"outcomes": _outcomes_json(outcomes)}, status=409 if failed else 200)

    async def _resync_data(self, operator: OperatorID | None, force: bool) -> web.Response:
        """``POST /resync?data=1``: an EVSE data fullLoad, then a status fullLoad (bridge.data_lane)."""
        lanes = self.dispatcher.data
        if lanes is None or (operator is not None and not lanes.pushes(operator)):
            which = "any operator" if operator is None else str(operator)
            return web.json_response(
                {"error": f"EVSE data push is off for {which} (push_evse_data = false)"}, status=400
            )
        data = await lanes.request_resync(operator, force=force)
        statuses = [o.status for o in data if o.status is not None]
        failed = any(o.result is not ResyncResult.DONE for o in data) or any(
            o.result is not ResyncResult.DONE for o in statuses
        )
        body = {
            "data_outcomes": [
                {"operator_id": str(o.operator_id), "result": o.result.value, "records": o.records,
                 "message": o.message}
                for o in data
            ],
            "outcomes": _outcomes_json(statuses),
        }  # fmt: skip
        return web.json_response(body, status=409 if failed else 200)

    async def _retry(self, operator: OperatorID | None) -> int:
        now = self.clock()
        only = None if operator is None else str(operator)
        counts = await self.db.write(lambda conn: self.dispatcher.store.retry_dead(conn, only, now))
        for operator_id, count in counts.items():  # committed: the lanes push them now
            self.dispatcher.notify(OperatorID(operator_id), pending=count, new_evses=0)
        log.info("dead letters retried", operator_id=only, records=sum(counts.values()))
        return sum(counts.values())

    async def retry_api(self, request: web.Request) -> web.Response:
        if (refused := self._refuse_api(request)) is not None:
            return refused
        try:
            operator = self._operator(request.query.get("operator"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            count = await self._retry(operator)
        except StoreError as exc:
            return web.json_response({"error": f"the store cannot take it: {exc}"}, status=503)
        return web.json_response({"retried": count})

    async def retry_form(self, request: web.Request) -> web.StreamResponse:
        refused, form = await self._refuse_form(request)
        if refused is not None:
            return refused
        try:
            count = await self._retry(self._operator(form.get("operator")))
        except ValueError as exc:
            return _page_error(str(exc), 400)
        except StoreError as exc:
            return _page_error(f"the store cannot take it: {exc}", 503)
        raise web.HTTPSeeOther(f"/status?done=retried&count={count}")

    async def resync_form(self, request: web.Request) -> web.StreamResponse:
        refused, form = await self._refuse_form(request)
        if refused is not None:
            return refused
        try:
            operator = self._operator(form.get("operator"))
        except ValueError as exc:
            return _page_error(str(exc), 400)
        outcomes = await self.dispatcher.request_resync(operator, force=False)
        ok = all(o.result is ResyncResult.DONE for o in outcomes)
        raise web.HTTPSeeOther("/status?done=" + quote("resync-done" if ok else "resync-failed"))


def bearer_matches(header: str | None, token: SecretStr) -> bool:
    """``Authorization: Bearer <token>``, the scheme in any case (RFC 7235 2.1), compared as bytes in
    constant time: a header with non-ASCII bytes is a wrong token (401), never an exception, and the
    header never reaches a message. aiohttp decodes header bytes as UTF-8 with surrogateescape."""
    if not header:
        return False
    raw = header.encode("utf-8", "surrogateescape").strip()
    scheme, _, value = raw.partition(b" ")
    expected = token.get_secret_value().encode("utf-8")
    return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), expected)


def _outcomes_json(outcomes: list[ResyncOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "operator_id": str(o.operator_id),
            "result": o.result.value,
            "records": o.records,
            "parked": o.parked,
            "message": o.message,
        }
        for o in outcomes
    ]


def _notice(request: web.Request) -> tuple[str | None, bool]:
    done = request.query.get("done")
    if done not in NOTICES:
        return None, False
    count = request.query.get("count", "0")
    number = int(count) if count.isdigit() else 0
    text = NOTICES[done].format(count=number, letters="letter is" if number == 1 else "letters are")
    return text, done.endswith("failed")


def _page_error(message: str, status: int) -> web.Response:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        "<title>not done · oicp-bridge</title>"
        '</head><body style="font-family:system-ui,sans-serif;margin:2rem">'
        f'<p role="alert">Not done: {html.escape(message)}</p>'
        '<p><a href="/status">Back to the console</a></p>'
        "</body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")
