"""The console's actions over real HTTP: retry dead letters and request a resync, each only with the admin
token, the process's CSRF token and from the same origin; a refusal changes nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bridge.app import Bridge
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.console.conftest import (
    ADMIN_TOKEN,
    OPERATOR,
    config,
    one_dead_letter_next,
    push_fleet,
    running,
    small_fleet,
    status_json,
)


@asynccontextmanager
async def with_dead_letters(
    tmp_path: Path, **sections: object
) -> AsyncIterator[tuple[Bridge, ServedSimulator]]:
    async with serve_simulator(HubjectSimulator()) as hubject:
        one_dead_letter_next(hubject, "018")
        async with running(config(tmp_path, hubject, **sections)) as bridge:
            await push_fleet(bridge, small_fleet())

            async def dead() -> bool:
                body = await status_json(bridge)
                return bool(body["dead_letters_total"] == 1 and body["operators"][OPERATOR]["delivered"] == 2)

            await wait_for(dead, within=15)
            yield bridge, hubject


async def csrf_of(session: aiohttp.ClientSession, admin_url: str) -> str:
    async with session.get(f"{admin_url}/status") as response:
        page = await response.text()
        assert "script-src 'nonce-" in response.headers["Content-Security-Policy"]
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


async def post_form(
    session: aiohttp.ClientSession, url: str, form: dict[str, str], origin: str | None = None
) -> tuple[int, str, str | None]:
    headers = {"Origin": origin} if origin else {}
    async with session.post(url, data=form, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Location")


async def test_the_retry_form_needs_token_csrf_and_same_origin_and_a_refusal_changes_nothing(
    tmp_path: Path,
) -> None:
    async with with_dead_letters(tmp_path) as (bridge, _), aiohttp.ClientSession() as session:
        admin = bridge.admin_url or ""
        url = f"{admin}/status/retry-dead-letters"
        csrf = await csrf_of(session, admin)
        refusals = [
            ({"token": ADMIN_TOKEN}, None, 403, "out of date"),
            ({"token": ADMIN_TOKEN, "csrf": "forged"}, None, 403, "out of date"),
            ({"token": "wrong", "csrf": csrf}, None, 401, "wrong admin token"),
            ({"token": ADMIN_TOKEN, "csrf": csrf}, "http://evil.example", 403, "another site"),
            (
                {"token": ADMIN_TOKEN, "csrf": csrf, "operator": "XX*NOP"},
                None,
                400,
                "not a configured operator",
            ),
        ]
        for form, origin, status, text in refusals:
            got_status, body, _ = await post_form(session, url, form, origin)
            assert (got_status, text in body) == (status, True), (form, origin, body)
            assert ADMIN_TOKEN not in body
        assert (await status_json(bridge))["dead_letters_total"] == 1

        status, _, location = await post_form(
            session, url, {"token": ADMIN_TOKEN, "csrf": csrf, "operator": OPERATOR}, admin
        )
        assert status == 303
        assert location == "/status?done=retried&count=1"

        async def delivered() -> bool:
            op = (await status_json(bridge))["operators"][OPERATOR]
            return bool(op["dead"] == 0 and op["delivered"] == 3)

        await wait_for(delivered, within=15)
        async with session.get(f"{admin}{location}") as response:
            assert "1 dead letter is pending again and pushed now." in await response.text()


async def test_the_retry_api_takes_the_bearer_token(tmp_path: Path) -> None:
    async with with_dead_letters(tmp_path) as (bridge, _), aiohttp.ClientSession() as session:
        url = f"{bridge.admin_url}/dead-letters/retry"
        async with session.post(url) as response:
            assert response.status == 401
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with session.post(url, params={"operator": "XX*NOPE"}, headers=auth) as response:
            assert response.status == 400
        assert (await status_json(bridge))["dead_letters_total"] == 1
        async with session.post(url, headers=auth) as response:
            assert response.status == 200
            assert await response.json() == {"retried": 1}


async def test_the_resync_form_runs_a_fullload(tmp_path: Path) -> None:
    async with (
        serve_simulator(HubjectSimulator()) as hubject,
        running(config(tmp_path, hubject)) as bridge,
        aiohttp.ClientSession() as session,
    ):
        await push_fleet(bridge, small_fleet())

        async def delivered() -> bool:
            return bool((await status_json(bridge))["operators"][OPERATOR]["delivered"] == 3)

        await wait_for(delivered, within=15)
        admin = bridge.admin_url or ""
        csrf = await csrf_of(session, admin)
        status, _, location = await post_form(
            session, f"{admin}/status/resync", {"token": ADMIN_TOKEN, "csrf": csrf}, admin
        )
        assert status == 303
        assert location == "/status?done=resync-done"
        assert any(e.action_type == "fullLoad" for e in hubject.simulator.request_log)
        body = await status_json(bridge)
        assert body["operators"][OPERATOR]["last_fullload"] is not None


async def test_without_an_admin_token_the_page_says_the_actions_need_one(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        cfg = config(tmp_path, hubject, admin={"listen": "127.0.0.1:0"})
        async with running(cfg) as bridge, aiohttp.ClientSession() as session:
            async with session.get(f"{bridge.admin_url}/status") as response:
                page = await response.text()
            assert "need <code>[admin] token</code>" in page
            assert 'name="token"' not in page
            async with session.post(f"{bridge.admin_url}/dead-letters/retry") as response:
                assert response.status == 403
