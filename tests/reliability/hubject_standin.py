"""A recording Hubject stand-in that can be scripted to misbehave, for the core's regression tests.

It speaks the OICP 2.3 REST status push the bridge uses, ``POST {url}/evsepush/v21/operators/{OperatorID}
/status-records`` with an eRoamingPushEvseStatus body (cpo-openapi ``eRoamingPushEvseStatus_V2.1.yaml``),
answers an eRoamingAcknowledgement, and keeps Hubject's state per operator with the ActionType semantics of
``oicp/simulator/state.py`` (fullLoad replaces the set, update and insert upsert, delete removes).

Unlike ``oicp.simulator`` it validates nothing beyond what it needs, and it is meant to be *scripted*: each
request is answered by the first matching rule (``script``), else accepted. Every request is recorded with
the monotonic time it arrived, its operator, ActionType and records, how many requests of that operator
were open at that moment (OICP 2.3 CPO 01 "Data push operations": sequential), and how it was answered;
every change to the state is recorded with the size of the operator's set afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_PREFIX = "/api/oicp"
PUSH_ROUTE = API_PREFIX + "/evsepush/v21/operators/{operator_id}/status-records"


def operator_key(operator_id: str) -> str:
    """OICP OperatorIDs with and without ``*`` name one operator (``DE*OBD`` = ``DEOBD``)."""
    return operator_id.replace("*", "").upper()


# --- how a request is answered -------------------------------------------------------------------------


@dataclass(frozen=True)
class Accept:
    """Apply the request and answer Result true, 000 (after ``delay`` seconds, applied on arrival)."""

    delay: float = 0.0


@dataclass(frozen=True)
class Refuse:
    """Answer Result false with ``code`` and ``info`` as AdditionalInfo; the state is unchanged."""

    code: str
    info: str | None = None
    description: str = "Refused by the stand-in."


@dataclass(frozen=True)
class Busy:
    """Answer an HTTP error status (429, 503) with ``Retry-After``; the state is unchanged."""

    status: int = 429
    retry_after: str | None = "600"


@dataclass(frozen=True)
class Hang:
    """Hold the answer for ``seconds`` (past any client timeout); never applied."""

    seconds: float = 3600.0


@dataclass(frozen=True)
class LandLate:
    """Hold the answer past the client's timeout, but apply the request ``apply_after`` seconds after it
    arrived: a Hubject that received it and was slow to say so."""

    apply_after: float
    hold: float = 3600.0


Answer = Accept | Refuse | Busy | Hang | LandLate


@dataclass
class Push:
    """One push request as the stand-in received it."""

    seq: int
    at: float  # time.monotonic() on arrival
    operator_id: str
    action: str
    records: tuple[tuple[str, str], ...]  # (EvseID, EvseStatus) in request order
    open_at_once: int  # requests of this operator open when it arrived, itself included
    answer: str = ""  # the answer's class name, set when it is chosen

    @property
    def evse_ids(self) -> list[str]:
        return [evse_id for evse_id, _ in self.records]

    def has(self, evse_id: str) -> bool:
        return evse_id in self.evse_ids


@dataclass
class Rule:
    answer: Answer
    when: Callable[[Push], bool]
    times: int | None  # None: until removed


@dataclass(frozen=True)
class Applied:
    """A change to the state: which request, when, and the operator's set size after it."""

    seq: int
    at: float
    operator_id: str
    action: str
    held_after: int


@dataclass
class HubjectStandIn:
    rules: list[Rule] = field(default_factory=list)
    log: list[Push] = field(default_factory=list)
    changes: list[Applied] = field(default_factory=list)
    max_open: dict[str, int] = field(default_factory=dict)
    url: str = ""  # the bridge's [hubject] url, set while served
    _state: dict[str, dict[str, str]] = field(default_factory=dict)
    _open: dict[str, int] = field(default_factory=dict)
    _late: set[asyncio.Task[None]] = field(default_factory=set)

    # --- scripting ---------------------------------------------------------------------------------

    def script(
        self, answer: Answer, *, when: Callable[[Push], bool] | None = None, times: int | None = None
    ) -> Rule:
        """Answer matching requests (all when ``when`` is None) with ``answer``, ``times`` times or until
        removed; the first matching rule wins."""
        rule = Rule(answer, when or (lambda push: True), times)
        self.rules.append(rule)
        return rule

    def calm(self) -> None:
        """Every rule removed: accept everything from now on."""
        self.rules.clear()

    def seed(self, operator_id: str, statuses: Mapping[str, str]) -> None:
        """What Hubject already holds for an operator before the bridge says anything."""
        self._state.setdefault(operator_key(operator_id), {}).update(statuses)

    # --- reading -----------------------------------------------------------------------------------

    def held(self, operator_id: str) -> dict[str, str]:
        return dict(self._state.get(operator_key(operator_id), {}))

    def pushes(
        self, operator_id: str | None = None, *, action: str | None = None, since: float = 0.0
    ) -> list[Push]:
        return [
            push
            for push in self.log
            if (operator_id is None or operator_key(push.operator_id) == operator_key(operator_id))
            and (action is None or push.action == action)
            and push.at >= since
        ]

    def open_now(self, operator_id: str) -> int:
        """Requests of this operator being answered right now."""
        return self._open.get(operator_key(operator_id), 0)

    def held_sizes(self, operator_id: str) -> list[int]:
        key = operator_key(operator_id)
        return [change.held_after for change in self.changes if operator_key(change.operator_id) == key]

    # --- the app -----------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(PUSH_ROUTE, self._push)
        return app

    async def _push(self, request: web.Request) -> web.StreamResponse:
        path_operator = request.match_info["operator_id"]
        key = operator_key(path_operator)
        self._open[key] = self._open.get(key, 0) + 1
        self.max_open[key] = max(self.max_open.get(key, 0), self._open[key])
        try:
            return await self._answer(request, path_operator)
        finally:
            self._open[key] -= 1

    async def _answer(self, request: web.Request, path_operator: str) -> web.StreamResponse:
        key = operator_key(path_operator)
        try:
            body = json.loads(await request.read())
            block = body["OperatorEvseStatus"]
            action = str(body["ActionType"])
            records = tuple((str(r["EvseID"]), str(r["EvseStatus"])) for r in block["EvseStatusRecord"])
        except (ValueError, KeyError, TypeError) as exc:
            return _acknowledgement(False, "022", "Data error.", f"not an eRoamingPushEvseStatus: {exc}")
        push = Push(len(self.log), time.monotonic(), path_operator, action, records, self._open[key])
        self.log.append(push)
        answer = self._choose(push)
        push.answer = type(answer).__name__
        match answer:
            case Accept(delay):
                self._apply(push)
                if delay:
                    await asyncio.sleep(delay)
                return _acknowledgement(True, "000", "Success.")
            case Refuse(code, info, description):
                return _acknowledgement(False, code, description, info)
            case Busy(status, retry_after):
                headers = {"Retry-After": retry_after} if retry_after is not None else {}
                return web.Response(status=status, text="slow down", headers=headers)
            case Hang(seconds):
                await asyncio.sleep(seconds)
                return _acknowledgement(False, "001", "Hubject system error.")
            case LandLate(apply_after, hold):
                task = asyncio.create_task(self._land_later(push, apply_after))
                self._late.add(task)
                task.add_done_callback(self._late.discard)
                await asyncio.sleep(hold)
                return _acknowledgement(True, "000", "Success.")

    async def _land_later(self, push: Push, apply_after: float) -> None:
        await asyncio.sleep(max(0.0, push.at + apply_after - time.monotonic()))
        self._apply(push)

    def _choose(self, push: Push) -> Answer:
        for rule in self.rules:
            if rule.times is not None and rule.times <= 0:
                continue
            if rule.when(push):
                if rule.times is not None:
                    rule.times -= 1
                return rule.answer
        return Accept()

    def _apply(self, push: Push) -> None:
        held = self._state.setdefault(operator_key(push.operator_id), {})
        if push.action == "fullLoad":
            held.clear()
        if push.action == "delete":
            for evse_id, _ in push.records:
                held.pop(evse_id, None)
        else:
            held.update(push.records)
        self.changes.append(Applied(push.seq, time.monotonic(), push.operator_id, push.action, len(held)))

    def applied(self, push: Push) -> bool:
        return any(change.seq == push.seq for change in self.changes)

    async def aclose(self) -> None:
        for task in list(self._late):
            task.cancel()
        await asyncio.gather(*self._late, return_exceptions=True)


def _acknowledgement(result: bool, code: str, description: str, info: str | None = None) -> web.Response:
    status: dict[str, Any] = {"Code": code, "Description": description}
    if info is not None:
        status["AdditionalInfo"] = info
    return web.json_response(
        {"Result": result, "StatusCode": status}, headers={"Process-ID": str(uuid.uuid4())}
    )


@asynccontextmanager
async def serve_standin(standin: HubjectStandIn | None = None) -> AsyncIterator[HubjectStandIn]:
    """Serve on 127.0.0.1, port 0; ``standin.url`` is the bridge's ``[hubject] url``."""
    served = standin or HubjectStandIn()
    runner = web.AppRunner(served.build_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        served.url = f"http://127.0.0.1:{runner.addresses[0][1]}{API_PREFIX}"
        yield served
    finally:
        await served.aclose()
        await runner.cleanup()
