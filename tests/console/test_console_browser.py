"""The console as an on-call engineer sees it on a phone, in Debian's headless chromium: with dead
letters, during an outage, after recovery; the retry button used with the admin token. Screenshots are
kept under tests/artifacts/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path

from oicp.simulator import HubjectSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.console.browser import Page, browser
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

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RED, AMBER, GREEN = "rgb(207, 34, 46)", "rgb(154, 103, 0)", "rgb(26, 127, 55)"


async def banner(page: Page) -> tuple[str, str]:
    colour = await page.js("getComputedStyle(document.querySelector('#overall')).backgroundColor")
    return await page.text("#overall"), str(colour)


async def card(page: Page) -> dict[str, str]:
    """The operator card as label → value, as read on screen."""
    pairs: list[list[str]] = await page.js(
        "[...document.querySelectorAll('section.card dt')]"
        ".map(dt => [dt.innerText, dt.nextElementSibling.innerText])"
    )
    return dict((k, v) for k, v in pairs)


async def fits_the_screen(page: Page) -> bool:
    return bool(await page.js("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_the_console_in_a_real_browser_dead_letters_outage_recovery(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        faults = hubject.simulator.faults
        one_dead_letter_next(hubject, "604")  # "EVSE ID is not Hubject compatible": dead
        async with running(config(tmp_path, hubject), sample_interval=0.2) as bridge, browser() as page:
            console = f"{bridge.admin_url}/status"
            await push_fleet(bridge, small_fleet())

            async def dead(count: int) -> bool:
                body = await status_json(bridge)
                return bool(
                    body["dead_letters_total"] == count and body["operators"][OPERATOR]["dead"] == count
                )

            await wait_for(lambda: dead(1), within=15)

            # 1. with dead letters: degraded (amber), the table shows Hubject's code and Process-ID
            await page.goto(console)
            text, colour = await banner(page)
            assert text.startswith("DEGRADED")
            assert "1 dead or parked record" in text
            assert colour == AMBER
            rows: list[list[str]] = await page.js(
                "[...document.querySelectorAll('#dead-letters tr')].slice(1)"
                ".map(r => [...r.cells].map(c => c.innerText))"
            )
            assert len(rows) == 1
            for cells in rows:
                assert cells[0] == OPERATOR
                assert cells[2] == "dead"
                assert cells[3] == "604"
                assert len(cells[4]) == 36  # the simulator's Process-ID, a UUID
                assert "ago" in cells[5]  # when Hubject refused it
            headers = await page.js(
                "[...document.querySelectorAll('#dead-letters th')].map(th => th.innerText)"
            )
            assert "Hubject code" in headers
            assert "Hubject Process-ID" in headers
            assert "Refused" in headers
            assert await fits_the_screen(page)
            await page.screenshot(ARTIFACTS / "console-dead-letters.png")

            # 2. Hubject goes down; the operator retries the dead letters from the page with the admin token
            faults.error_5xx_rate, faults.retry_after = 1.0, None
            await page.js(
                "const f = document.querySelector('#retry-form');"
                f"f.querySelector('input[name=token]').value = {ADMIN_TOKEN!r}; true"
            )
            page.expect_load()
            await page.js("document.querySelector('#retry-form button').click(); true")
            await page.wait_for_load()
            assert "1 dead letter is pending again" in await page.text(".notice")
            assert (await status_json(bridge))["dead_letters_total"] == 0

            async def failing() -> bool:
                return bool((await status_json(bridge))["operators"][OPERATOR]["failing"])

            await wait_for(failing, within=15)
            await page.goto(console)
            text, colour = await banner(page)
            assert text.startswith("NOT READY")
            assert f"pushes for {OPERATOR} are failing" in text
            assert "HTTP 500" in text
            assert colour == RED
            seen = await card(page)
            assert seen["Waiting for Hubject"].startswith("1 record")
            assert seen["Oldest wait"].endswith(" s")  # an age, not a dash
            assert "not recovered" in seen["Last failure"]
            assert "ago" in seen["Last failure"]
            assert await page.js("document.querySelectorAll('#charts svg polyline').length") >= 1
            assert await fits_the_screen(page)
            await page.screenshot(ARTIFACTS / "console-outage.png")

            # 3. recovery: no manual step
            faults.error_5xx_rate = 0.0

            async def recovered() -> bool:
                op = (await status_json(bridge))["operators"][OPERATOR]
                return bool(not op["failing"] and op["delivered"] == 3 and op["unacknowledged"] == 0)

            await wait_for(recovered, within=20)
            await page.goto(console)
            text, colour = await banner(page)
            assert text.startswith("OK"), text
            assert colour == GREEN
            seen = await card(page)
            assert seen["Oldest wait"] == "nothing waits"
            assert "recovered since" in seen["Last failure"]
            assert "ago" in seen["Last success"]
            assert "None: Hubject took every record" in await page.text("#dead-letters")
            await page.screenshot(ARTIFACTS / "console-recovered.png")

            assert page.console_errors() == []
            foreign = [u for u in page.requested_urls() if not u.startswith(bridge.admin_url or "?")]
            assert foreign == []  # the page loads nothing from anywhere else


async def test_a_wrong_admin_token_in_the_form_changes_nothing(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        one_dead_letter_next(hubject)
        async with (
            running(config(tmp_path, hubject)) as bridge,
            browser(width=1280, height=900, mobile=False) as page,
        ):
            await push_fleet(bridge, small_fleet())

            async def dead() -> bool:
                return bool((await status_json(bridge))["dead_letters_total"] == 1)

            await wait_for(dead, within=15)
            await page.goto(f"{bridge.admin_url}/status")
            assert await fits_the_screen(page)
            await page.screenshot(ARTIFACTS / "console-desktop.png")
            await page.js("document.querySelector('#retry-form input[name=token]').value = 'wrong'; true")
            page.expect_load()
            await page.js("document.querySelector('#retry-form button').click(); true")
            await page.wait_for_load()
            assert "wrong admin token: nothing was changed" in await page.text("[role=alert]")
            assert (await status_json(bridge))["dead_letters_total"] == 1
            # the refusal's own status is the only thing the browser reports
            assert all("401" in error for error in page.console_errors())
