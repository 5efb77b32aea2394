"""The shipped Prometheus alert rules through promtool (`check rules` and `test rules`), when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

RULES = REPO / "docs" / "prometheus-alerts.yml"


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


LABELS = 'instance="c:9109",job="f5-llm-ratio"'


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
