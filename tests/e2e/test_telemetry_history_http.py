"""The hour of history over real HTTP on 127.0.0.1: /history.json, the page's files, and the new metrics
(tests/unit/test_telemetry_history.py has the ring buffer)."""

from __future__ import annotations

import math
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from controller.config.schema import TelemetryConfig
from controller.model import Action, Kind, Member, MemberPlan, Outcome, PoolPlan, PoolRef, PoolState, Reason, Sample, TickReport
from controller.telemetry import Telemetry, attach, page

REF = PoolRef("llm-pool-1")


def tick(ratios: dict[int, tuple[int, int]], waiting: float = 1.0, dry_run: bool = False) -> TickReport:
    """{member number: (ratio now, planned ratio)} -> a report of one pool."""
    plans = []
    for i, (now, planned) in ratios.items():
        m = Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, now)
        action = Action.WRITE if planned != now else Action.HOLD
        plans.append(MemberPlan(member=m, sample=Sample(waiting * i, running=2.0 * i, kv_usage=0.1 * i), score=0.5,
                                ratio=planned, connection_limit=0, action=action,
                                reason=f"pressure {i}" if action is Action.WRITE else ""))
    pool = PoolPlan(PoolState(REF, "ratio-least-connections-member", tuple(p.member for p in plans)), tuple(plans))
    outcomes = [Outcome(kind=Kind.POOL, reason=Reason.READ, pool=REF.full_path)]
    if not dry_run:
        outcomes += [Outcome(kind=Kind.MEMBER, reason=Reason.APPLIED, pool=REF.full_path, member=p.member.key)
                     for p in plans if p.action is Action.WRITE]
    return TickReport(started=0.0, finished=0.1, plans=(pool,), outcomes=tuple(outcomes), dry_run=dry_run)


@pytest.fixture
def tel(clock):
    t = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=1.0, engine_types={REF.full_path: "vllm"})
    t.poll_interval = 0.01
    t.start()
    yield t
    t.stop()


def get(t: Telemetry, path: str) -> requests.Response:
    host, port = t.address
    return requests.get(f"http://{host}:{port}{path}", timeout=5)


def test_history_json_follows_ratio_changes_with_reasons(tel, clock):
    tel.observe(tick({1: (50, 50), 2: (50, 50)}))
    clock.advance(1)
    tel.observe(tick({1: (50, 100), 2: (50, 50)}, waiting=3))
    clock.advance(1)
    tel.observe(tick({1: (100, 100), 2: (50, 50)}))
    doc = get(tel, "/history.json").json()
    (p,) = doc["pools"]
    m1 = p["members"]["10.0.0.1:8000"]
    assert m1["ratio"] == [50, 100, 100] and p["members"]["10.0.0.2:8000"]["ratio"] == [50, 50, 50]
    assert m1["waiting"] == [1.0, 3.0, 1.0] and m1["kv"] == [0.1, 0.1, 0.1]
    assert m1["share"][1] == pytest.approx(100 / 150, abs=1e-4)
    (change,) = doc["changes"]
    assert (change["member"], change["ratio_from"], change["ratio_to"], change["reason"]) == ("10.0.0.1:8000", 50, 100, "pressure 1")
    assert change["waiting"] == 3.0 and change["at_epoch"] == p["t"][1] and change["outcome"] == "applied"
    newer = get(tel, f"/history.json?since={p['t'][1]}").json()
    assert newer["pools"][0]["t"] == p["t"][2:] and newer["changes"] == []
    assert get(tel, "/history.json?since=yesterday").status_code == 400


def test_dry_run_history_shows_what_bigip_holds_and_marks_changes_as_planned(tel):
    tel.observe(tick({1: (50, 100)}, dry_run=True))
    doc = get(tel, "/history.json").json()
    assert doc["pools"][0]["members"]["10.0.0.1:8000"]["ratio"] == [50]
    assert doc["changes"][0]["dry_run"] is True and doc["changes"][0]["outcome"] == "planned"


def test_page_and_assets_ship_in_the_package_and_need_nothing_else(tel):
    r = get(tel, "/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    for ref in ("static/app.js", "static/app.css"):
        assert ref in r.text
        assert get(tel, "/" + ref).status_code == 200
    assert "http" not in r.text.replace("http-equiv", "")  # no CDN, no external URL
    assert "history.json" in get(tel, "/static/app.js").text
    assert get(tel, "/history.json?pool=/Common/nope").json()["pools"] == []
    assert page.total_bytes() < 20_000


def families(t: Telemetry) -> dict:
    return {f.name: f for f in text_string_to_metric_families(get(t, "/metrics").text)}


def test_process_metrics_and_units(tel):
    tel.observe(tick({1: (50, 50)}))
    fams = families(tel)
    assert "process_cpu_seconds" in fams or "process_start_time_seconds" in fams  # Linux has both
    for name, fam in fams.items():
        if name.startswith("f5lr_member_") and name.endswith("_ratio"):
            assert all(0.0 <= s.value <= 1.0 for s in fam.samples), name
        assert fam.documentation, f"{name} has no HELP"
    assert "f5lr_seconds_since_last_success" not in fams  # the timestamp says it; time() - it in PromQL


def test_reloads_are_counted_and_the_latency_hook_goes_through_the_bigip_seam(tel):
    hooks: list = []
    bigip = SimpleNamespace(observe_requests=lambda hook: hooks.append(hook) if hook not in hooks else None)
    daemon = SimpleNamespace(cfg=SimpleNamespace(pools=(), scheduler=SimpleNamespace(tick_seconds=1.0)),
                             rec=SimpleNamespace(bigip=bigip, last_scrapes={}), on_tick=[], on_reload=[], on_wait=[],
                             observe_requests=bigip.observe_requests)
    attach(tel, daemon)
    assert len(hooks) == 1
    daemon.on_reload[0](True)
    daemon.on_reload[0](False)
    daemon.on_reload[0](False)
    hooks[0]("PATCH", 200, timedelta(milliseconds=40).total_seconds())
    text = get(tel, "/metrics").text
    assert 'f5lr_config_reloads_total{result="rejected"} 2.0' in text
    assert 'f5lr_config_reloads_total{result="applied"} 1.0' in text
    assert 'f5lr_bigip_request_duration_seconds_count{code="2xx",method="PATCH"} 1.0' in text
    attach(tel, daemon)
    assert len(hooks) == 1  # hooked once per client (the real clients: tests/e2e/test_failover.py)


def test_nan_never_reaches_json(tel):
    m = Member("10.0.0.1:8000", "Common", "10.0.0.1", 8000, 10)
    p = MemberPlan(member=m, sample=Sample(math.nan, running=math.inf, kv_usage=0.5), score=math.nan, ratio=10,
                   connection_limit=0, action=Action.HOLD)
    tel.observe(TickReport(started=0.0, finished=0.1, plans=(PoolPlan(PoolState(REF, "ratio-member", (m,)), (p,)),)))
    assert get(tel, "/history.json").status_code == 200 and get(tel, "/status").status_code == 200


def test_a_blind_tick_is_counted_as_blind(tel):
    m = Member("10.0.0.1:8000", "Common", "10.0.0.1", 8000, 10)
    p = MemberPlan(member=m, sample=None, score=None, ratio=10, connection_limit=0, action=Action.UNKNOWN_HOLD,
                   scrape_error="timeout")
    blind = Outcome(kind=Kind.POOL, reason=Reason.BLIND, pool=REF.full_path, detail="blind")
    tel.observe(TickReport(started=0.0, finished=0.1, plans=(PoolPlan(PoolState(REF, "ratio-member", (m,)), (p,)),),
                           outcomes=(blind,)))
    text = get(tel, "/metrics").text
    assert 'f5lr_ticks_total{result="blind"} 1.0' in text and 'f5lr_ticks_total{result="error"} 0.0' in text
