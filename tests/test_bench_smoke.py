"""The benchmarks in ``bench/`` run, in their tiniest sizes, so their code cannot rot. Timings are not
asserted (docs/benchmarks.md has the figures); the results' structure and correctness are."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bench import BENCHMARKS, load
from bench.__main__ import main
from bench.common import TINY

REQUIRED = {"benchmark", "ratio", "target", "target_met", "sizes", "bridge", "baseline"}


async def test_intake_runs_the_full_path_and_the_baseline() -> None:
    result = await load("intake").run(TINY)
    assert set(result) >= REQUIRED
    assert result["errors"] == 0
    for side in ("bridge", "baseline"):
        assert result[side]["requests"] == TINY.intake_requests
        assert result[side]["per_second"] > 0
        assert result[side]["p99_ms"] >= result[side]["p50_ms"] > 0
    # the bridge committed every PATCH (plus the seeding PUTs) in fewer transactions: group commit
    assert result["group_commit"]["writes"] >= TINY.intake_requests
    assert result["ratio"] > 0
    # where the CPU went (Linux): the load client's share, and the event loop that served the bridge
    cpu = result["bridge"]["cpu_ms_per_request"]
    assert cpu["children"] > 0
    if sys.platform == "linux":
        assert cpu["threads"]["MainThread"] > 0


@pytest.mark.skipif(
    load("wrk").wrk_path() is None and os.environ.get("CI") != "true",
    reason="wrk is not installed (apt-get install -y wrk; CI installs it)",
)
async def test_wrk_drives_the_bare_handler_and_the_bridge() -> None:
    result = await load("wrk").run(TINY)
    assert set(result) >= REQUIRED
    # every PATCH answered 200 with status_code 1000: each was a real, accepted change
    assert result["errors"] == 0
    for side in ("bridge", "baseline"):
        assert result[side]["per_second"] > 0
        assert result[side]["p99_ms"] >= result[side]["p50_ms"] > 0
        cpu = result[side]["cpu_ms_per_request"]
        assert cpu["wrk"] > 0
        if sys.platform == "linux":
            assert cpu["server"] > 0
    assert result["bridge"]["ratio"] > 0
    assert result["bridge"]["p99_ratio"] > 0
    # the bare handler with a durable commit per request: what durability alone costs
    assert result["sides"]["durable"]["per_second"] > 0
    assert result["sides"]["durable"]["ratio"] > 0


async def test_storm_reaches_hubject_coalesced_and_times_the_probes() -> None:
    result = await load("storm").run(TINY)
    assert {"benchmark", "ratio", "target", "target_met", "hubject_requests"} <= set(result)
    assert result["changes"]["http_errors"] == 0
    assert result["changes"]["total"] >= TINY.storm_changes - TINY.storm_changes // 50
    # coalescing: far fewer Hubject requests than changes, and every probe change reached Hubject
    assert 1 <= result["hubject_requests"] < result["changes"]["total"] / 10
    assert result["probe_changes_never_seen_at_hubject"] == 0
    assert result["delay_samples"] >= 1


async def test_resync_pushes_every_stored_evse() -> None:
    result = await load("resync").run(TINY)
    assert set(result) >= REQUIRED
    assert result["bridge"]["ok"]
    assert result["bridge"]["records"] == TINY.resync_evses
    assert result["bridge"]["peak_rss_mb"] > 0
    assert all(run["ok"] for run in result["baseline"]["runs"])


async def test_coldstart_reaches_ready() -> None:
    result = await load("coldstart").run(TINY)
    assert set(result) >= REQUIRED
    for side in ("bridge", "baseline"):
        assert 0 < result[side]["build_to_ready_s"] < result[side]["spawn_to_ready_s"]
        assert result[side]["idle_rss_mb"] > 0


async def test_data_fullload_pushes_every_stored_record_streamed() -> None:
    result = await load("data_fullload").run(TINY)
    assert set(result) >= REQUIRED
    assert result["bridge"]["ok"], result["bridge"]
    assert result["bridge"]["records"] == TINY.data_fullload_evses
    assert result["bridge"]["peak_rss_mb"] > 0
    assert all(run["ok"] for run in result["baseline"]["runs"])


async def test_data_churn_coalesces_structural_changes_within_the_bound() -> None:
    result = await load("data_churn").run(TINY)
    assert set(result) >= REQUIRED
    churn = result["bridge"]
    assert churn["changed_evses"] >= 1
    assert 1 <= churn["data_requests"] <= result["baseline"]["bound"]
    assert churn["data_requests"] < churn["changes"]  # coalesced: far fewer requests than changes
    assert churn["answered_603"] == 0
    assert result["target_met"]


@pytest.mark.skipif(
    load("wrk").wrk_path() is None and os.environ.get("CI") != "true",
    reason="wrk is not installed (apt-get install -y wrk; CI installs it)",
)
async def test_pg_intake_compares_both_engines_and_three_replicas(pg_cluster: object) -> None:
    """Needs PostgreSQL (``pg_cluster``: skipped without it, a failure in CI); the benchmark starts its own
    throwaway server unless ``OICP_BRIDGE_TEST_PG_URL`` names one."""
    result = await load("pg_intake").run(TINY)
    assert set(result) >= REQUIRED | {"three_replicas", "three_vs_one", "storm"}
    assert result["errors"] == 0
    for side in ("bridge", "baseline", "three_replicas"):
        assert result[side]["per_second"] > 0
        assert result[side]["cpu_ms_per_request"]["bridge"] > 0
    assert result["ratio"] > 0
    assert result["three_vs_one"] > 0
    storm = result["storm"]["postgresql"]
    assert storm["probe_changes_never_seen_at_hubject"] == 0
    assert 1 <= storm["hubject_requests"] < storm["changes"]["total"] / 10  # coalesced on PostgreSQL too


def test_command_line_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resync", "--tiny", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "resync.json").read_text())
    assert written["benchmark"] == "resync"
    assert written["size"] == "tiny"
    assert written["machine"]["cores"] >= 1
    assert "resync:" in capsys.readouterr().out


def test_every_benchmark_is_registered() -> None:
    for name in BENCHMARKS:
        module = load(name)
        assert callable(module.run)
        assert callable(module.summary)
