"""The shipped alert rules and Grafana dashboard: promtool checks and unit-tests the rules, and every
metric they use exists in a real scrape of a running bridge."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from oicp.simulator import HubjectSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.conftest import TLSMaterial
from tests.console.conftest import CPO_TOKEN, config, running, scrape, serve, small_fleet

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "oicp-bridge.json"
KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"  # its PrometheusRule
METRIC = re.compile(r"\b(?:oicp_bridge|process|python)_[a-z0-9_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is not None:
        return found
    message = "promtool is missing (Debian package prometheus; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(*args: str) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    if KUBERNETES.exists():
        for document in yaml.safe_load_all(KUBERNETES.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "PrometheusRule":
                exprs += [r["expr"] for g in document["spec"]["groups"] for r in g["rules"] if "expr" in r]
    return exprs


def test_promtool_checks_the_alert_rules() -> None:
    assert "SUCCESS: 6 rules found" in run("check", "rules", str(ALERTS))


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    assert "SUCCESS" in run("test", "rules", str(ALERTS_TEST))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool has no query checker; a recording rule per panel query makes it parse them
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(dashboard_exprs())],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    assert "SUCCESS" in run("check", "rules", str(path))


async def test_every_metric_the_rules_and_the_dashboard_use_exists_in_a_real_scrape(
    tmp_path: Path, tls: TLSMaterial
) -> None:
    from bridge.ocpi.cpo_sim.sender import CpoSender
    from bridge.ocpi.versions import OcpiVersion

    used = {name for expr in [*alert_exprs(), *dashboard_exprs()] for name in METRIC.findall(expr)}
    assert len(used) >= 20  # the regular expression found them
    sender = CpoSender(small_fleet(), versions=(OcpiVersion.V2_2_1,), tokens=[CPO_TOKEN])
    async with serve_simulator(HubjectSimulator()) as hubject, serve(sender.app()) as (sender_url, _):
        sender.base_url = sender_url
        source = {"versions_url": f"{sender_url}/ocpi/versions", "token": CPO_TOKEN, "poll_interval": 30}
        receiver = {
            "listen": "127.0.0.1:0",
            "tokens": [{"token": CPO_TOKEN, "country_code": "DE", "party_id": "OBD"}],
        }
        hubject_section = {
            "url": hubject.url,
            "client_cert": str(tls.client_cert),
            "client_key": str(tls.client_key),
        }
        cfg = config(
            tmp_path, hubject, hubject=hubject_section, ocpi={"receiver": receiver, "sources": [source]}
        )
        async with running(cfg) as bridge:
            labels = (("feed", str(source["versions_url"])), ("kind", "poll"))
            feed = ("oicp_bridge_feed_requests_total", labels)

            async def polled() -> bool:
                # let the first poll finish: a poll still running when the bridge stops leaks its HTTP
                # session (the pollers are closed before their tasks end; reported to the lead)
                return (await scrape(bridge)).get(feed, 0.0) >= 1

            await wait_for(polled, within=10)
            scraped = {name for name, _ in await scrape(bridge)}
    missing = sorted(used - scraped)
    assert missing == []
