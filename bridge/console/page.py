"""The console page: what an on-call engineer reads in ten seconds, then the details.

Server-rendered HTML with inline CSS, inline SVG charts and one small inline script (nonce'd, allowed by
the page's Content-Security-Policy) that shows times in the reader's own time zone and reloads the page
while no form is being filled in. Nothing is loaded from anywhere else.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.console.charts import line_chart
from bridge.console.history import History
from bridge.feeds import FeedKind, FeedReport
from bridge.leadership import SOLE_HOLDER
from bridge.status import (
    DataView,
    DeadLetter,
    LaneReport,
    OperatorRow,
    Overall,
    Snapshot,
    describe_duration,
    iso,
)

RELOAD_SECONDS = 15
STATE_TEXT = {Overall.OK: "OK", Overall.DEGRADED: "DEGRADED", Overall.NOT_READY: "NOT READY"}

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#f6f7f9}
header,main{max-width:72rem;margin:0 auto;padding:0 1rem}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:baseline;padding-top:.75rem}
header h1{font-size:1.25rem;margin:0}
.muted{color:#5a5f66;font-size:.9em}
.state{border-radius:.5rem;padding:.75rem 1rem;margin:.75rem 0;color:#fff;font-size:1.05rem}
.state b{font-size:1.2rem;margin-right:.5rem}
.state.ok{background:#1a7f37}.state.degraded{background:#9a6700}.state.not_ready{background:#cf222e}
.notice{background:#ddf4ff;border:1px solid #54aeff;border-radius:.5rem;padding:.5rem 1rem}
.notice.error{background:#ffebe9;border-color:#ff8182}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.75rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:.5rem;padding:.75rem 1rem}
.card h3{margin:0 0 .5rem;font-size:1rem;display:flex;justify-content:space-between;gap:.5rem}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .75rem;margin:0}
.card dt{color:#5a5f66}.card dd{margin:0;overflow-wrap:anywhere}
.pill{border-radius:1rem;padding:0 .5rem;font-size:.8rem;font-weight:600;color:#fff;white-space:nowrap}
.pill.good{background:#1a7f37}.pill.warn{background:#9a6700}.pill.bad{background:#cf222e}
.scroll{overflow-x:auto;background:#fff;border:1px solid #d0d7de;border-radius:.5rem}
table{border-collapse:collapse;width:100%}
th,td{padding:.35rem .6rem;text-align:left;border-bottom:1px solid #eaeef2;vertical-align:top}
th{font-weight:600;background:#f6f8fa;white-space:nowrap}
td.reason{min-width:16rem;overflow-wrap:anywhere}
.chart{width:100%;height:auto;background:#fff;border:1px solid #d0d7de;border-radius:.5rem}
.chart text{font-size:9px;fill:#5a5f66}.chart .axis{stroke:#afb8c1;stroke-width:1}
.legend{font-size:.85em;margin-top:.25rem}.key{margin-right:.75rem;white-space:nowrap}
.key i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem;border-radius:2px}
form{background:#fff;border:1px solid #d0d7de;border-radius:.5rem;padding:.75rem 1rem;display:flex;
flex-wrap:wrap;gap:.5rem;align-items:end}
label{display:flex;flex-direction:column;font-size:.9em;color:#5a5f66}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #afb8c1;border-radius:.35rem}
button{background:#0969da;color:#fff;border-color:#0969da;cursor:pointer}
@media (max-width:40rem){table.stack tr:first-child{display:none}
table.stack tr{display:block;border-bottom:1px solid #d0d7de;padding:.35rem 0}
table.stack td{display:grid;grid-template-columns:8.5rem 1fr;gap:.5rem;border:0;padding:.15rem .6rem}
table.stack td::before{content:attr(data-label);color:#5a5f66}td.reason{min-width:0}}
.actions{display:grid;grid-template-columns:repeat(auto-fill,minmax(20rem,1fr));gap:.75rem}
"""

SCRIPT = """
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.title = t.textContent; t.textContent = d.toLocaleString(); }
}
setTimeout(function reload() {
  const busy = [...document.querySelectorAll("form input")].some(i => i.type !== "hidden" && i.value)
    || (document.activeElement && document.activeElement.closest("form"));
  if (busy) { setTimeout(reload, RELOAD_MS); } else { location.replace("/status"); }
}, RELOAD_MS);
""".replace("RELOAD_MS", str(RELOAD_SECONDS * 1000))


@dataclass(frozen=True)
class PageContext:
    csrf: str  # this process's CSRF token, echoed by the forms
    nonce: str  # this response's script nonce (Content-Security-Policy)
    token_configured: bool  # without [admin] token the buttons cannot work: say so
    notice: str | None = None
    notice_is_error: bool = False


def esc(value: object) -> str:
    return html.escape("—" if value is None else str(value))


def _stamp(epoch: float) -> str:
    stamp = iso(epoch) or ""
    return f'<time datetime="{stamp}">{stamp.replace("T", " ").replace("+00:00", " UTC")}</time>'


def when(epoch: float | None, now: float) -> str:
    """``3 min ago (<time>2026-12-01 20:50:57 UTC</time>)``; the script turns the time into local time."""
    if epoch is None:
        return "never"
    age = now - epoch
    relative = f"{describe_duration(age)} ago" if age >= 0 else f"in {describe_duration(-age)}"
    return f'{relative} <span class="muted">({_stamp(epoch)})</span>'


def render_page(snap: Snapshot, history: History, context: PageContext) -> str:
    state = snap.overall
    notice = ""
    if context.notice:
        kind = " error" if context.notice_is_error else ""
        notice = f'<p class="notice{kind}" role="status">{esc(context.notice)}</p>'
    body = "".join(
        [
            f'<div class="state {state.value}" role="status" id="overall"><b>{STATE_TEXT[state]}</b>'
            f"{esc(snap.reason)}</div>",
            notice,
            _operators(snap),
            _charts(snap, history),
            _feeds(snap),
            _leaders(snap),
            _dead_letters(snap),
            _actions(snap, context),
            _counts(snap),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{STATE_TEXT[state]} · oicp-bridge</title>
<style>{STYLE}</style></head>
<body><header><h1>oicp-bridge</h1>
<span class="muted">version {esc(snap.version)} · up {describe_duration(snap.now - snap.started_at)} ·
as of {_stamp(snap.now)}</span></header>
<main>{body}</main>
<script nonce="{context.nonce}">{SCRIPT}</script></body></html>
"""


def _operators(snap: Snapshot) -> str:
    store = snap.store
    ids = sorted({*snap.lanes, *(store.operators if store else {})})
    cards = "".join(
        _operator_card(
            op,
            store.operators.get(op) if store else None,
            snap.lanes.get(op),
            snap.now,
            store.evse_data.get(op) if store else None,
        )
        for op in ids
    )
    return f'<h2>Operators</h2><div class="cards">{cards or "<p>No operator configured.</p>"}</div>'


def _data_items(data: DataView, now: float) -> list[tuple[str, str]]:
    """The EVSE data lines of an operator card (push_evse_data = true)."""
    pending = data.counts.get("pending", 0) + data.counts.get("in_flight", 0)
    dead = sum(data.dead_by_code.values())
    codes = ", ".join(f"{esc(code)}: {n}" for code, n in sorted(data.dead_by_code.items()))
    items = [
        ("EVSE data pending", f"{pending} record{'' if pending == 1 else 's'}"),
        ("Statuses held for data", str(data.held_statuses)),
        ("EVSE data dead", f"{dead}" + (f" ({codes})" if codes else "")),
        (
            "EVSE data full load",
            when(data.last_fullload_at, now)
            + (f" ({data.last_fullload_count} records)" if data.last_fullload_count is not None else ""),
        ),
    ]
    if data.fullload_refusal:
        items.append(("EVSE data full load refused", esc(data.fullload_refusal)))
    if data.not_pushable:
        items.append(("EVSEs without data", "<br>".join(esc(line) for line in data.not_pushable)))
    return items


def _operator_card(
    op: str, row: OperatorRow | None, lane: LaneReport | None, now: float, data: DataView | None = None
) -> str:
    failing = lane is not None and lane.failures > 0
    backlog = row.unacknowledged if row else 0
    if failing:
        pill = '<span class="pill bad">failing</span>'
    elif backlog:
        pill = (
            '<span class="pill warn">pushing</span>'
            if lane and lane.busy
            else '<span class="pill good">ok</span>'
        )
    else:
        pill = '<span class="pill good">up to date</span>'
    items: list[tuple[str, str]] = []
    if row is None:
        items.append(("Store", "cannot be read"))
    else:
        since = row.oldest_unacknowledged_since
        items += [
            (
                "Waiting for Hubject",
                f"{backlog} record{'' if backlog == 1 else 's'}"
                + (
                    f" ({row.counts.get('in_flight', 0)} being pushed)" if row.counts.get("in_flight") else ""
                ),
            ),
            ("Oldest wait", "nothing waits" if since is None else describe_duration(now - since)),
            ("Last success", when(row.last_success_at, now)),
        ]
        if row.last_error_at is not None:
            recovered = row.last_success_at is not None and row.last_success_at >= row.last_error_at
            status = "recovered since" if recovered else "not recovered"
            items.append(
                ("Last failure", f"{when(row.last_error_at, now)} — {status}<br>{esc(row.last_error)}")
            )
        else:
            items.append(("Last failure", "none recorded"))
        if failing and row.failing_since is not None:
            items.append(("Failing for", describe_duration(now - row.failing_since)))
        if failing and lane is not None:
            items.append(("Next attempt", f"in {describe_duration(lane.next_attempt_in)}"))
        items += [
            ("Delivered", str(row.counts.get("delivered", 0))),
            ("Dead / parked", f"{row.counts.get('dead', 0)} / {row.counts.get('parked', 0)}"),
            (
                "Last full load",
                when(row.last_fullload_at, now)
                + (f" ({row.last_fullload_count} records)" if row.last_fullload_count is not None else ""),
            ),
        ]
    if data is not None:
        items += _data_items(data, now)
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section class="card" data-operator="{esc(op)}"><h3>{esc(op)} {pill}</h3><dl>{dl}</dl></section>'


def _charts(snap: Snapshot, history: History) -> str:
    end = snap.now
    start = end - max(3600.0, min(history.keep, end - (history.samples[0].at if history.samples else end)))
    charts = [
        line_chart("Records waiting for Hubject", history.series("backlog"), start, end),
        line_chart("Oldest wait (seconds)", history.series("oldest_age"), start, end, "s"),
        line_chart(
            "Push duration (seconds, mean per sample)", history.series("push_latency"), start, end, "s"
        ),
    ]
    titles = ("Waiting for Hubject", "Oldest wait", "Push duration")
    cells = "".join(
        f'<div><div class="muted">{t}</div>{c}</div>' for t, c in zip(titles, charts, strict=True)
    )
    return (
        f"<h2>Last {round((end - start) / 60)} minutes</h2>"
        f'<div class="cards" id="charts">{cells}</div>'
        f'<p class="muted">One sample every {history.interval:g} s, kept in memory since the bridge '
        "started.</p>"
    )


def _feed_state(report: FeedReport) -> str:
    if report.stale:
        return '<span class="pill bad">stale</span>'
    if report.failing:
        return '<span class="pill warn">failing</span>'
    return '<span class="pill good">alive</span>'


def _last_error(report: FeedReport, now: float) -> str:
    state = report.state
    if state.last_error_at is None:
        return "none"
    return f"{when(state.last_error_at, now)}: {esc(state.last_error)}"


def _feeds(snap: Snapshot) -> str:
    if not snap.feeds:
        return "<h2>OCPI feeds</h2><p>No polled source and no pushing party configured.</p>"
    rows = [
        [
            esc(f.state.name),
            "polled by the bridge" if f.state.kind is FeedKind.POLL else "pushes to the bridge",
            _feed_state(f),
            when(f.state.last_success_at, snap.now),
            when(f.state.last_change_at, snap.now),
            _last_error(f, snap.now),
            str(f.state.requests),
            str(f.state.errors),
            str(f.state.rejected_auth) if f.state.kind is FeedKind.PUSH else "—",
        ]
        for f in snap.feeds
    ]
    threshold = (
        f"stale after {describe_duration(snap.stale_after)} without a sign of life"
        if snap.stale_after > 0
        else "staleness check off ([ocpi] stale_after = 0)"
    )
    return (
        f'<h2>OCPI feeds</h2><p class="muted">A feed is {threshold}; a sign of life is a complete poll or an '
        "accepted push.</p>"
        + _table("feeds", FEED_COLUMNS, rows, reason_column=5)
        + (
            f'<p class="muted">{snap.rejected_unknown} rejected tokens on URLs naming no known party.</p>'
            if snap.rejected_unknown
            else ""
        )
    )


def _leaders(snap: Snapshot) -> str:
    """Several replicas (PostgreSQL): which replica leads which operator and source; nothing on SQLite,
    where this process leads everything."""
    if not snap.leaders or snap.replica in ("", SOLE_HOLDER):
        return ""
    rows = [
        [
            esc(leader.name.partition(":")[0]),
            esc(leader.name.partition(":")[2]),
            esc(leader.holder) if leader.holder else "nobody (a takeover is due)",
            "this replica" if leader.mine else "",
            str(leader.token),
            f"{leader.expires_in:.1f} s" if leader.holder else "—",
        ]
        for leader in snap.leaders
    ]
    return (
        f'<h2>Replicas</h2><p class="muted">This page is replica {esc(snap.replica)}. One replica at a time '
        "pushes for each operator and polls each source (its lease).</p>"
        + _table("leaders", LEADER_COLUMNS, rows, reason_column=2)
    )


LEADER_COLUMNS = ("Kind", "Name", "Led by", "", "Term", "Lease left")
FEED_COLUMNS = (
    "Feed",
    "Kind",
    "State",
    "Last sign of life",
    "Last change",
    "Last error",
    "Requests",
    "Errors",
    "Rejected tokens",
)
DEAD_LETTER_COLUMNS = (
    "Operator",
    "EvseID",
    "State",
    "Hubject code",
    "Hubject Process-ID",
    "Refused",
    "Status changed",
    "Reason",
)


def _table(table_id: str, columns: tuple[str, ...], rows: list[list[str]], *, reason_column: int) -> str:
    """A table that becomes one card per row on a narrow screen (each cell labelled with its column)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    reason = ' class="reason"'
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-label="{esc(column)}"{reason if i == reason_column else ""}><div>{cell}</div></td>'
            for i, (column, cell) in enumerate(zip(columns, row, strict=True))
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table class="stack" id="{table_id}"><tr>{head}</tr>{body}</table></div>'


def _dead_letters(snap: Snapshot) -> str:
    store = snap.store
    letters: Iterable[DeadLetter] = store.dead_letters if store else []
    rows = [
        [
            esc(d.operator_id),
            esc(d.evse_id),
            "dead" if d.state == "dead" else "parked (waits for EVSE data)",
            esc(d.code),
            esc(d.process_id or "not in the answer"),
            when(d.refused_at, snap.now) if d.refused_at is not None else "not recorded",
            when(d.changed_at, snap.now),
            esc(d.reason),
        ]
        for d in letters
    ]
    total = store.dead_total if store else 0
    if not rows:
        return (
            '<h2>Dead letters and parked records</h2><p id="dead-letters">None: Hubject took every '
            "record.</p>"
        )
    more = (
        f" (the first {len(list(store.dead_letters))} shown)"
        if store and total > len(store.dead_letters)
        else ""
    )
    return (
        f"<h2>Dead letters and parked records: {total}{more}</h2>"
        '<p class="muted">Refused: when Hubject refused the record; status changed: when the CPO made the '
        "change that was refused.</p>" + _table("dead-letters", DEAD_LETTER_COLUMNS, rows, reason_column=7)
    )


def _operator_select(snap: Snapshot) -> str:
    options = "".join(f'<option value="{esc(op)}">{esc(op)}</option>' for op in sorted(snap.lanes))
    return (
        '<label>Operator<select name="operator"><option value="">all operators</option>'
        f"{options}</select></label>"
    )


def _actions(snap: Snapshot, context: PageContext) -> str:
    if not context.token_configured:
        return (
            "<h2>Actions</h2><p>Retrying dead letters and requesting a resync need "
            "<code>[admin] token</code> "
            "in the configuration.</p>"
        )
    common = (
        f'<input type="hidden" name="csrf" value="{esc(context.csrf)}">'
        + _operator_select(snap)
        + '<label>Admin token<input type="password" name="token" autocomplete="current-password" '
        "required></label>"
    )
    return (
        '<h2>Actions</h2><div class="actions">'
        f'<form method="post" action="/status/retry-dead-letters" id="retry-form">{common}'
        '<button type="submit">Retry dead letters</button></form>'
        f'<form method="post" action="/status/resync" id="resync-form">{common}'
        '<button type="submit">Request a resync (fullLoad)</button></form></div>'
    )


def _counts(snap: Snapshot) -> str:
    store = snap.store
    if store is None:
        return ""
    by_status = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in store.by_oicp_status.items())
    skipped = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in store.not_pushed.items())
    return (
        '<h2>Records by Hubject status</h2><div class="scroll"><table>'
        "<tr><th>Status</th><th>Records</th></tr>"
        f"{by_status or '<tr><td colspan=2>none yet</td></tr>'}</table></div>"
        '<h2>Not pushed</h2><div class="scroll"><table><tr><th>Why</th><th>Observations</th></tr>'
        f"{skipped or '<tr><td colspan=2>none</td></tr>'}</table></div>"
    )
