"""The shipped Prometheus alert rules: every expression uses exported metrics; promtool agrees when installed."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import yaml

from controller.clock import FakeClock
from controller.config.schema import TelemetryConfig
from controller.model import Action, Member, MemberPlan, PoolPlan, PoolRef, PoolState, Sample, ScrapeResult, TickReport
from controller.telemetry import Telemetry
from tests.conftest import REPO

RULES = REPO / "docs" / "prometheus-alerts.yml"
PROMETHEUS_OWN = {"up"}


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




