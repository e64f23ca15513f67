"""The page and /status.json rendered from a snapshot: whatever text the store, Hubject or a CPO put in
(errors, reasons, feed names), it reaches the page escaped, and JSON carries what the page shows."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.console.history import History
from bridge.console.page import PageContext, render_page
from bridge.feeds import FeedHealth
from bridge.leadership import SOLE_HOLDER, Leader
from bridge.status import (
    DeadLetter,
    LaneReport,
    OperatorRow,
    Snapshot,
    StoreView,
    assess,
    snapshot_json,
)

NOW = 1_800_000_000.0


def snapshot(text: str, *, failing: bool) -> Snapshot:
    counts = {"pending": 2, "in_flight": 1, "delivered": 5, "dead": 1, "parked": 0}
    row = OperatorRow(counts, NOW - 30, NOW - 42, NOW - 600, text, NOW - 20, NOW - 25 if failing else None)
    letter = DeadLetter(
        "DE*ABC", "DE*ABC*E1", "dead", "604", f"{text} (Hubject Process-ID p-1)", text, NOW - 900, NOW - 60
    )
    store = StoreView({"DE*ABC": row}, {}, [letter], 1, {"Available": 5}, {"AVAILABLE": 5}, {text: 1})
    lanes = {"DE*ABC": LaneReport("DE*ABC", False, 3 if failing else 0, text, 4.0, NOW - 600, None)}
    feeds = FeedHealth(stale_after=60, parties=[text or "DE/ABC"], clock=lambda: NOW - 3600)
    feeds.push_failed(text or "DE/ABC", text)
    reports = feeds.report(NOW, stored_polls={})
    problems, warnings = assess(store, None, lanes, reports)
    return Snapshot(NOW, NOW - 7200, "1.2.3", store, None, lanes, reports, 60, problems, warnings)


def history() -> History:
    h = History(interval=10)
    for i in range(30):
        h.add(NOW - 300 + i * 10, {"DE*ABC": i}, {"DE*ABC": float(i)}, (i * 0.2, float(i)))
    return h


@settings(max_examples=60)
@given(text=st.text(min_size=1, max_size=60), failing=st.booleans())
def test_text_from_outside_is_always_escaped(text: str, failing: bool) -> None:
    hostile = f'<i id="evil">{text}</i><script>x</script>'
    page = render_page(snapshot(hostile, failing=failing), history(), PageContext("c", "n", True))
    assert '<i id="evil">' not in page
    assert page.count("<script") == 1  # only the page's own, nonce'd script
    assert page.count("<form") == 2


def test_json_carries_what_the_page_shows() -> None:
    snap = snapshot("Hubject answered HTTP 503", failing=True)
    body = snapshot_json(snap, history().as_json())
    page = render_page(snap, history(), PageContext("c", "n", True))
    assert body["state"] == "not_ready"
    assert body["reason"] in page.replace("&#x27;", "'")
    assert "NOT READY" in page
    op = body["operators"]["DE*ABC"]
    assert op["unacknowledged"] == 3
    assert op["oldest_unacknowledged_age_s"] == 42
    assert op["failing"] is True
    assert op["next_attempt_in_s"] == 4.0
    (letter,) = body["dead_letters"]
    assert letter["process_id"] == "p-1"
    assert letter["refused_at"] is not None
    assert body["feeds"][0]["stale"] is True
    assert len(body["history"]) == 30
    assert body["version"] == "1.2.3"
    assert body["uptime_s"] == 7200
    assert "42 s" in page  # the oldest wait, as a person reads it
    assert "p-1" in page


def _leaders_table(page: str) -> list[list[str]]:
    """The cells of the page's ``leaders`` table, row by row (its header row left out)."""
    found = re.search(r'<table class="stack" id="leaders">(.*?)</table>', page)
    assert found is not None, "no Replicas table on the page"
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1))[1:]
    return [re.findall(r"<div>(.*?)</div>", row) for row in rows]


def test_replicas_table_shows_who_leads_each_operator_and_source() -> None:
    """On PostgreSQL with several replicas, the page says which replica leads each lease, which of them is
    this one, and a lease nobody holds (a takeover is due); a holder's name, written by another replica,
    arrives escaped. On SQLite (one process leads everything) there is no such table."""
    leaders = [
        Leader("operator:DE*ABC", "host-a:101:x1", 7, 4.04, True),
        Leader("source:cpo-1", "<b>host-b</b>:202:y2", 3, 9.0, False),
        Leader("operator:DE*XYZ", "", 2, float("inf"), False),
    ]
    snap = dataclasses.replace(snapshot("fine", failing=False), replica="host-a:101:x1", leaders=leaders)
    page = render_page(snap, history(), PageContext("c", "n", True))
    assert "This page is replica host-a:101:x1." in page
    assert _leaders_table(page) == [
        ["operator", "DE*ABC", "host-a:101:x1", "this replica", "7", "4.0 s"],
        ["source", "cpo-1", "&lt;b&gt;host-b&lt;/b&gt;:202:y2", "", "3", "9.0 s"],
        ["operator", "DE*XYZ", "nobody (a takeover is due)", "", "2", "—"],
    ]
    alone = dataclasses.replace(snap, replica=SOLE_HOLDER)
    assert 'id="leaders"' not in render_page(alone, history(), PageContext("c", "n", True))
