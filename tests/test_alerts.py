"""The shipped Prometheus alert rules: every expression uses exported metrics; promtool agrees when installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from types import SimpleNamespace

import pytest
import yaml

from controller.clock import FakeClock
from controller.config import TelemetryConfig
from controller.model import Action, Member, MemberPlan, PoolPlan, PoolRef, PoolState, Sample, ScrapeResult, TickReport
from controller.telemetry import Telemetry
from tests.conftest import REPO

RULES = REPO / "docs" / "prometheus-alerts.yml"
PROMETHEUS_OWN = {"up"}
LABELS = 'instance="c:9109",job="f5-llm-ratio"'


def exported_names() -> set[str]:
    """Every sample name a controller exports once each kind of series has a value."""
    t = Telemetry(TelemetryConfig(port=0), clock=FakeClock(), tick_seconds=1.0)
    t.set_token_source(lambda: {"logins": 1, "extensions": 0, "deletions": 0})
    t.instruments.failover.source = lambda: SimpleNamespace(failovers=1, hosts=("a", "b"), active_host="a")
    m = Member("10.0.0.1:8000", "Common", "10.0.0.1", 8000, 10)
    plan = MemberPlan(member=m, sample=Sample(1.0, running=2.0, kv_usage=0.5), score=0.5, ratio=10, connection_limit=0,
                      action=Action.HOLD)
    ref = PoolRef("p")
    t.observe(TickReport(started=0, finished=0.1, plans=(PoolPlan(PoolState(ref, "ratio-member", (m,)), (plan,)),)),
              {ref.full_path: {m.key: ScrapeResult(m.key, 0.0, error="timeout", duration=1.0)}})
    t.instruments.bigip_request("GET", 200, timedelta(seconds=0.1).total_seconds())
    t.instruments.reloaded(False)
    text = t.metrics()[0].decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_every_expression_uses_exported_metrics_and_names_are_unique():
    exported = exported_names()
    alerts = rules()
    assert len({r["alert"] for r in alerts}) == len(alerts) >= 8
    for r in alerts:
        names = set(re.findall(r"\b((?:f5lr|process)_[a-z_]+)\b", r["expr"]))
        assert names or set(re.findall(r"\b[a-z_]+\b", r["expr"])) & PROMETHEUS_OWN, r["alert"]
        assert names <= exported, (r["alert"], names - exported)
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    covered = {r["alert"] for r in alerts}
    assert {"F5LRBlind", "F5LRStale", "F5LRWriteFailures", "F5LRTokenTrouble", "F5LRNoActiveUnit"} <= covered
    assert {"F5LRPoolNotReady", "F5LRPoolPaused", "F5LRPoolSaturated"} <= covered


def _alert(name: str, labels: dict, values: dict) -> dict:
    """What promtool must see firing: the series' labels plus the rule's, the annotations filled in."""
    rule = next(r for r in rules() if r["alert"] == name)

    def fill(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        return text.replace("{{ $value }}", values.get("value", ""))
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()}}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    base = {"instance": "c:9109", "job": "f5-llm-ratio"}
    pool = {**base, "pool": "/Common/p"}
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f"f5lr_last_tick_timestamp_seconds{{{LABELS}}}", "values": "0x15"},
                {"series": f'f5lr_pool_ready{{{LABELS},pool="/Common/p"}}', "values": "0x15"},
                {"series": f'f5lr_pool_paused{{{LABELS},pool="/Common/p"}}', "values": "0x15"},
                {"series": f'f5lr_pool_ready{{{LABELS},pool="/Common/q"}}', "values": "0x15"},
                {"series": f'f5lr_pool_paused{{{LABELS},pool="/Common/q"}}', "values": "1x15"},
                {"series": f'f5lr_pool_ready{{{LABELS},pool="/Common/r"}}', "values": "1x15"},
                {"series": f'f5lr_pool_paused{{{LABELS},pool="/Common/r"}}', "values": "0x15"},
                {"series": f'f5lr_pool_kv_usage_ratio{{{LABELS},pool="/Common/p"}}', "values": "0.95x15"},
                {"series": f'f5lr_pool_kv_usage_ratio{{{LABELS},pool="/Common/q"}}', "values": "0.5x15"},
                {"series": f'f5lr_pool_waiting_requests{{{LABELS},pool="/Common/q"}}', "values": "1x15"},
                {"series": f"process_start_time_seconds{{{LABELS}}}", "values": "0x15"},
                {"series": f'f5lr_pool_blind{{{LABELS},pool="/Common/p"}}', "values": "1x15"},
                {"series": f'f5lr_pool_blind{{{LABELS},pool="/Common/q"}}', "values": "0x15"},
                {"series": f"f5lr_bigip_active_unit_known{{{LABELS}}}", "values": "1 1 1 0x12"},
                {"series": f'f5lr_config_reloads_total{{{LABELS},result="rejected"}}', "values": "0 0 0 1x12"},
            ],
            "alert_rule_test": [
                {"eval_time": "6m", "alertname": "F5LRStale", "exp_alerts": [_alert("F5LRStale", base, {})]},
                {"eval_time": "1m", "alertname": "F5LRStale", "exp_alerts": []},  # just started: not stale yet
                {"eval_time": "6m", "alertname": "F5LRBlind", "exp_alerts": [_alert("F5LRBlind", pool, {})]},
                # one pool not ready: that pool alone (a paused pool and a ready one do not fire)
                {"eval_time": "6m", "alertname": "F5LRPoolNotReady", "exp_alerts": [_alert("F5LRPoolNotReady", pool, {})]},
                {"eval_time": "3m", "alertname": "F5LRPoolNotReady", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "F5LRPoolSaturated",
                 "exp_alerts": [_alert("F5LRPoolSaturated", pool, {})]},
                {"eval_time": "6m", "alertname": "F5LRPoolSaturated", "exp_alerts": []},
                {"eval_time": "2m", "alertname": "F5LRNoActiveUnit", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "F5LRNoActiveUnit", "exp_alerts": [_alert("F5LRNoActiveUnit", base, {})]},
                {"eval_time": "6m", "alertname": "F5LRConfigReloadRejected",
                 "exp_alerts": [_alert("F5LRConfigReloadRejected", {**base, "result": "rejected"}, {})]},
                {"eval_time": "6m", "alertname": "F5LRTokenTrouble", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
