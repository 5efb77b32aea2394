"""Telemetry: /metrics, /healthz, /status over real HTTP on 127.0.0.1, fed hand-built TickReports."""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from controller import logs
from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, MetricsConfig, PoolConfig, SchedulerConfig, TelemetryConfig
from controller.errors import ConfigError
from controller.ltm.client import BigIPClient
from controller.model import (
    Action,
    Kind,
    Member,
    MemberPlan,
    Outcome,
    PoolPlan,
    PoolRef,
    PoolState,
    Reason,
    Sample,
    ScrapeResult,
    TickReport,
    TokenCounters,
)
from controller.telemetry import Telemetry, attach, scrape_label, token_counters, writes_per_pool
from tests.conftest import REPO, shared_path

TICK = 2.0
REF = PoolRef("llm-pool-1")
REF_B = PoolRef("llm-pool-2", "Tenant", "app")
# The sideband scheduler's /pools/status field names (seed 000, "Get Single Pool Status").
SEED_POOL_KEYS = {"name", "partition", "engine_type", "member_count", "members"}
SEED_MEMBER_KEYS = {"ip", "port", "score", "metrics"}
SEED_METRIC_KEYS = {"waiting_queue", "cache_usage"}


# -- building reports by hand ------------------------------------------------------------------

def member(i: int, ratio: int = 1, **kw) -> Member:
    return Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, ratio, **kw)


def fresh(m: Member, score: float, planned: int, waiting=0.0, running=None, kv=None) -> MemberPlan:
    action = Action.WRITE if planned != m.ratio else Action.HOLD
    sample = Sample(waiting, running=running, kv_usage=kv, engine="vllm")
    return MemberPlan(member=m, sample=sample, score=score, ratio=planned, connection_limit=m.connection_limit,
                      action=action, reason=f"score {score:.2f}")


def unknown(m: Member, why: str = "timeout: read timed out", slug: str = "timeout") -> MemberPlan:
    return MemberPlan(member=m, sample=None, score=None, ratio=m.ratio, connection_limit=m.connection_limit,
                      action=Action.UNKNOWN_HOLD, reason=f"{why}; holding ratio (2s without metrics)", scrape_error=slug)


def inactive(m: Member) -> MemberPlan:
    return MemberPlan(member=m, sample=None, score=None, ratio=m.ratio, connection_limit=m.connection_limit,
                      action=Action.SKIP_INACTIVE, reason="user-disabled/up on BIG-IP")


def pool(*plans: MemberPlan, ref: PoolRef = REF, mode: str = "ratio-member") -> PoolPlan:
    return PoolPlan(PoolState(ref, mode, tuple(p.member for p in plans)), plans)


def report(*plans: PoolPlan, outcomes=(), dry_run=False, took=0.25) -> TickReport:
    return TickReport(started=100.0, finished=100.0 + took, plans=plans, outcomes=tuple(outcomes), dry_run=dry_run)


def read_failed(detail: str, ref: PoolRef = REF) -> Outcome:
    return Outcome(kind=Kind.POOL, reason=Reason.READ_FAILED, pool=ref.full_path, detail=detail)


def wrote(i: int, ref: PoolRef = REF) -> Outcome:
    return Outcome(kind=Kind.MEMBER, reason=Reason.APPLIED, pool=ref.full_path, member=member(i).key)


def write_failed(i: int, detail: str, ref: PoolRef = REF) -> Outcome:
    return Outcome(kind=Kind.MEMBER, reason=Reason.WRITE_FAILED, pool=ref.full_path, member=member(i).key, detail=detail)


def bigip_with(**counts: int) -> SimpleNamespace:
    """A BIG-IP client as telemetry sees it: only its token counters."""
    return SimpleNamespace(token_counters=lambda: TokenCounters(**counts), observe_requests=lambda hook: None)


def three_members() -> PoolPlan:
    return pool(
        fresh(member(1, ratio=50), 0.9, 100, waiting=1, running=3, kv=0.2),
        fresh(member(2, ratio=50), 0.5, 50, waiting=6, running=8, kv=0.7),
        unknown(member(3, ratio=50)),
    )


def fake_response(status: int = 200, method: str = "PATCH", seconds: float = 0.04):
    """What a requests response hook receives, as far as telemetry reads it."""
    return SimpleNamespace(status_code=status, request=SimpleNamespace(method=method), elapsed=timedelta(seconds=seconds))


# -- fixtures and HTTP helpers -----------------------------------------------------------------

@pytest.fixture
def tel(clock):
    t = Telemetry(TelemetryConfig(host="127.0.0.1", port=0), clock=clock, tick_seconds=TICK, engine_types={REF.full_path: "vllm"})
    t.poll_interval = 0.01  # keep teardown fast
    t.start()
    yield t
    t.stop()


def get(t: Telemetry, path: str, **kw) -> requests.Response:
    host, port = t.address
    return requests.get(f"http://{host}:{port}{path}", timeout=5, **kw)


def samples(t: Telemetry) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value}, parsed the way Prometheus would."""
    r = get(t, "/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(smp: dict, name: str, **labels) -> float | None:
    return smp.get((name, frozenset(labels.items())))


def members_in(smp: dict) -> set[str]:
    return {dict(labels).get("member") for (_, labels) in smp} - {None}


# -- /metrics ----------------------------------------------------------------------------------

def test_metrics_carry_member_values(tel):
    tel.observe(report(three_members(), outcomes=(wrote(1),)))
    smp = samples(tel)
    m1, m3 = {"pool": REF.full_path, "member": "10.0.0.1:8000"}, {"pool": REF.full_path, "member": "10.0.0.3:8000"}
    assert value(smp, "f5lr_member_ratio_weight", **m1) == 50
    assert value(smp, "f5lr_member_planned_ratio_weight", **m1) == 100
    assert value(smp, "f5lr_member_score_ratio", **m1) == pytest.approx(0.9)
    assert value(smp, "f5lr_member_policy_weight", **m1) == pytest.approx(0.9)
    assert value(smp, "f5lr_member_waiting_requests", **m1) == 1
    assert value(smp, "f5lr_member_running_requests", **m1) == 3
    assert value(smp, "f5lr_member_kv_usage_ratio", **m1) == pytest.approx(0.2)
    assert value(smp, "f5lr_member_connection_limit", **m1) == 0
    assert value(smp, "f5lr_member_planned_connection_limit", **m1) == 0
    assert value(smp, "f5lr_member_share_ratio", **m1) == pytest.approx(1 / 3)
    assert value(smp, "f5lr_member_up", **m1) == 1
    # unknown load: up 0, and no made-up score or queue
    assert value(smp, "f5lr_member_up", **m3) == 0
    assert value(smp, "f5lr_member_score_ratio", **m3) is None
    assert value(smp, "f5lr_member_waiting_requests", **m3) is None
    assert value(smp, "f5lr_scrape_errors_total", reason="timeout", **m3) == 1
    assert value(smp, "f5lr_ticks_total", result="ok") == 1
    assert value(smp, "f5lr_ticks_total", result="error") == 0
    assert value(smp, "f5lr_tick_duration_seconds_count") == 1
    assert value(smp, "f5lr_tick_duration_seconds_sum") == pytest.approx(0.25)
    assert value(smp, "f5lr_bigip_writes_total", pool=REF.full_path, result="applied") == 1
    assert value(smp, "f5lr_last_success_timestamp_seconds") == FakeClock().wall()
    assert value(smp, "f5lr_pool_up", pool=REF.full_path) == 1


def test_counters_accumulate_across_ticks(tel, clock):
    for _ in range(3):
        tel.observe(report(three_members()))
        clock.advance(TICK)
    tel.observe(report(three_members(), outcomes=(write_failed(1, "HTTP 400"),)))
    smp = samples(tel)
    assert value(smp, "f5lr_scrape_errors_total", pool=REF.full_path, member="10.0.0.3:8000", reason="timeout") == 4
    assert value(smp, "f5lr_ticks_total", result="ok") == 3
    assert value(smp, "f5lr_ticks_total", result="error") == 1
    assert value(smp, "f5lr_bigip_writes_total", pool=REF.full_path, result="failed") == 1
    assert value(smp, "f5lr_last_success_timestamp_seconds") == FakeClock().wall() + 2 * TICK  # the error tick does not count


def test_member_labels_disappear_after_member_leaves(tel):
    tel.observe(report(three_members()))
    assert members_in(samples(tel)) == {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
    tel.observe(report(pool(fresh(member(1), 0.9, 1), fresh(member(2), 0.4, 1))))
    smp = samples(tel)
    assert members_in(smp) == {"10.0.0.1:8000", "10.0.0.2:8000"}  # gauges and scrape error counters alike


def test_unread_pool_drops_gauges_but_keeps_error_counters(tel):
    tel.observe(report(three_members()))
    tel.observe(report(outcomes=(read_failed("HTTP 503: mcpd not ready"),)))
    smp = samples(tel)
    assert value(smp, "f5lr_pool_up", pool=REF.full_path) == 0
    assert value(smp, "f5lr_member_ratio_weight", pool=REF.full_path, member="10.0.0.1:8000") is None  # unknown, not stale
    assert value(smp, "f5lr_scrape_errors_total", pool=REF.full_path, member="10.0.0.3:8000", reason="timeout") == 1


def test_pool_removed_from_config_loses_every_series(tel):
    tel.observe(report(three_members(), pool(fresh(member(7), 0.5, 1), ref=REF_B)))
    tel.set_pools({REF_B.full_path: "sglang"})
    smp = samples(tel)
    assert not any(dict(labels).get("pool") == REF.full_path for (_, labels) in smp)
    assert value(smp, "f5lr_member_ratio_weight", pool=REF_B.full_path, member="10.0.0.7:8000") == 1
    assert [p["full_path"] for p in get(tel, "/status").json()["pools"]] == [REF_B.full_path]


def test_openmetrics_when_asked(tel):
    tel.observe(report(three_members()))
    r = get(tel, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_token_counters_stay_monotonic_across_a_reload(tel):
    rec = SimpleNamespace(bigip=bigip_with(logins=2, extensions=2, deletions=1))
    tel.set_token_source(lambda: token_counters(rec))
    smp = samples(tel)
    assert value(smp, "f5lr_bigip_token_logins_total") == 2
    assert value(smp, "f5lr_bigip_token_deletions_total") == 1
    rec.bigip = bigip_with(logins=1, extensions=1, deletions=0)  # SIGHUP: new client
    assert value(samples(tel), "f5lr_bigip_token_logins_total") == 3


def test_token_counters_come_from_the_clients_typed_accessor():
    assert token_counters(SimpleNamespace(bigip=bigip_with(logins=4))) == {"logins": 4, "extensions": 0, "deletions": 0}
    client = BigIPClient(F5Config("bigip.example"))
    client.tokens.logins, client.tokens.deletions = 2, 1
    assert token_counters(SimpleNamespace(bigip=client)) == {"logins": 2, "extensions": 0, "deletions": 1}


def test_broken_token_source_does_not_break_metrics(tel):
    tel.set_token_source(lambda: 1 / 0)
    assert "f5lr_ticks_total" in get(tel, "/metrics").text


def test_two_instances_do_not_clash(clock):
    a = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=TICK)
    b = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=TICK)
    a.observe(report(three_members()))
    assert b"f5lr_member_ratio_weight{" in a.metrics()[0] and b"f5lr_member_ratio_weight{" not in b.metrics()[0]


# -- derived values ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "error, slug",
    [
        ("timeout", "timeout"),
        ("missing-metric", "missing-metric"),
        (None, "not-scraped"),
        ("http-503", "http-503"),
        ("Ünïcode garbage: x", "other"),
        ("x" * 80, "other"),
        ("", "other"),
    ],
)
def test_scrape_label_is_a_bounded_slug(error, slug):
    assert scrape_label(error) == slug


def test_writes_per_pool_reports_the_reconcilers_counts_and_zero_for_unwritten_pools():
    a = pool(fresh(member(1), 0.9, 80), fresh(member(2), 0.1, 10))
    b = pool(fresh(member(3), 0.9, 80), ref=REF_B)
    rep = report(a, b, outcomes=(wrote(1), write_failed(2, "HTTP 400: bad ratio"), wrote(3, REF_B)))
    assert writes_per_pool(rep) == {REF.full_path: (1, 1), REF_B.full_path: (1, 0)}
    # write budget: a prefix of the writes went out, the rest waits
    one = report(a, b, outcomes=(wrote(1),))
    assert writes_per_pool(one) == {REF.full_path: (1, 0), REF_B.full_path: (0, 0)}
    assert writes_per_pool(report(a, b, dry_run=True)) == {REF.full_path: (0, 0), REF_B.full_path: (0, 0)}


def test_observe_never_raises(tel):
    tel.observe(object())  # type: ignore[arg-type]
    assert value(samples(tel), "f5lr_telemetry_observe_errors_total") == 1


# -- /healthz ----------------------------------------------------------------------------------

def test_healthz_before_first_tick(tel):
    r = get(tel, "/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy" and r.json()["reason"] == "no successful tick yet"


def test_healthz_is_liveness_failing_ticks_keep_it_200_a_stuck_loop_turns_it_503(tel, clock):
    tel.observe(report(three_members()))
    assert get(tel, "/healthz").status_code == 200
    assert get(tel, "/healthz").json()["status"] == "healthy"
    clock.advance(3 * TICK - 0.1)
    tel.observe(report(outcomes=(read_failed("connection refused"),)))  # a failed tick still completed
    clock.advance(3 * TICK - 0.1)
    assert get(tel, "/healthz").status_code == 200
    clock.advance(0.2)  # no tick completed for 3 intervals: the loop is stuck
    r = get(tel, "/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy" and "no tick completed for" in r.json()["reason"]
    assert r.json()["last_tick_errors"] == ["/Common/llm-pool-1: connection refused"]
    tel.observe(report(three_members()))
    assert get(tel, "/health").status_code == 200  # the sideband scheduler's path works too


def test_health_is_the_sidebands_liveness_200_while_the_process_runs(tel, clock):
    # the sideband's /health (api/server.py at f254c3e) answers 200 while it runs: its Kubernetes liveness probe
    body = {"status": "healthy", "message": "Scheduler running normally"}
    assert get(tel, "/healthz").status_code == 503  # no successful tick yet
    r = get(tel, "/health")
    assert (r.status_code, r.json()) == (200, body)
    tel.observe(report(outcomes=(read_failed("connection refused"),)))
    clock.advance(10 * TICK)
    assert get(tel, "/healthz").status_code == 503 and get(tel, "/health").status_code == 200


def test_a_backoff_keeps_liveness_but_not_readiness(tel, clock):
    tel.set_pools({REF.full_path: "vllm"})
    tel.observe(report(three_members(), outcomes=(Outcome(kind=Kind.POOL, reason=Reason.READ, pool=REF.full_path),)))
    assert tel.readiness()[0] == 200 and tel.readiness()[1]["pools"][0]["result"] == "ok"
    for _ in range(5):  # the daemon backs off from a BIG-IP that fails every read: no tick, but alive
        clock.advance(TICK)
        tel.alive()
    assert tel.health()[0] == 200
    code, body = tel.readiness()
    assert code == 503 and "no tick for" in body["not_ready"][0]["reason"]
    assert get(tel, "/readyz").status_code == 503


def test_a_tick_that_breaks_does_not_count_as_completed(tel, clock):
    tel.observe(report(three_members()))
    broken = Outcome(kind=Kind.TICK, reason=Reason.INTERNAL_ERROR, detail="internal error: KeyError: 'x'")
    for _ in range(4):
        clock.advance(TICK)
        tel.observe(report(outcomes=(broken,)))
    assert get(tel, "/healthz").status_code == 503


# -- /status -----------------------------------------------------------------------------------

def test_status_matches_seed_fields_and_shares_sum_to_one(tel):
    disabled = member(4, ratio=100, session="user-disabled")
    tel.observe(report(pool(*three_members().members, inactive(disabled)), dry_run=True))
    doc = get(tel, "/status").json()
    assert doc["dry_run"] is True and doc["last_tick"]["ok"] is True
    (p,) = doc["pools"]
    assert SEED_POOL_KEYS <= p.keys()
    assert p["name"] == "llm-pool-1" and p["partition"] == "Common" and p["full_path"] == "/Common/llm-pool-1"
    assert p["engine_type"] == "vllm" and p["load_balancing_mode"] == "ratio-member" and p["member_count"] == 4
    for m in p["members"]:
        assert SEED_MEMBER_KEYS <= m.keys() and SEED_METRIC_KEYS <= m["metrics"].keys()
    by_name = {m["name"]: m for m in p["members"]}
    m1 = by_name["10.0.0.1:8000"]
    assert (m1["ip"], m1["port"], m1["score"]) == ("10.0.0.1", 8000, 0.9)
    assert m1["metrics"] == {"waiting_queue": 1.0, "cache_usage": 0.2, "running_req": 3.0}
    assert (m1["ratio"], m1["planned_ratio"], m1["action"]) == (50, 100, "write")
    assert by_name["10.0.0.3:8000"]["score"] is None and by_name["10.0.0.3:8000"]["metrics"]["waiting_queue"] is None
    active = [m for m in p["members"] if m["active"]]
    assert sum(m["share"] for m in active) == pytest.approx(1.0, abs=1e-5)
    assert sum(m["planned_share"] for m in active) == pytest.approx(1.0, abs=1e-5)
    assert m1["planned_share"] == pytest.approx(100 / 200)
    assert by_name["10.0.0.4:8000"]["share"] == 0  # disabled: no new traffic whatever its ratio


def test_status_pool_that_ignores_ratio_splits_evenly(tel):
    tel.observe(report(pool(fresh(member(1), 0.9, 100), fresh(member(2), 0.1, 10), mode="round-robin")))
    members = get(tel, "/status").json()["pools"][0]["members"]
    assert [m["planned_share"] for m in members] == [0.5, 0.5]


def test_status_lists_configured_pool_that_could_not_be_read(tel):
    tel.observe(report(outcomes=(read_failed("HTTP 503: mcpd not ready"),)))
    (p,) = get(tel, "/status").json()["pools"]
    assert p["name"] == "llm-pool-1" and p["member_count"] == 0 and "mcpd not ready" in p["error"]


def test_status_before_first_tick(tel):
    assert get(tel, "/status").json()["last_tick"] is None


def test_field_names_match_the_seed_document():
    """Keep SEED_* honest against the scheduler's README when the shared seeds are present."""
    seeds = sorted(shared_path("seeds").glob("000_*.txt"))
    if not seeds:
        pytest.skip("shared seeds not found")
    text = seeds[0].read_text()
    block = re.search(r"GET\*\* `/pools/\{pool_name\}/\{partition\}/status`.*?```json\n(.*?)```", text, re.S)
    assert block, "seed layout changed"
    doc = json.loads(block.group(1))
    assert set(doc) == SEED_POOL_KEYS
    assert set(doc["members"][0]) == SEED_MEMBER_KEYS
    assert set(doc["members"][0]["metrics"]) == SEED_METRIC_KEYS


def _keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | set().union(*(_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_keys(v) for v in obj)) if obj else set()
    return set()


def test_status_never_shows_secrets(tel, monkeypatch):
    secret = "hunter2-Pa55w0rd"
    cfg = AppConfig(  # configured, but nowhere telemetry can see it ...
        f5=F5Config("bigip.example", password=secret),
        pools=(PoolConfig(REF, "vllm", metrics=MetricsConfig(password=secret, api_key=secret)),),
    )
    monkeypatch.setattr(logs.REDACTOR, "secrets", ())
    logs.REDACTOR.update(cfg.secrets())
    # ... except if an error text quoted it, or a URL carried credentials
    leaky = unknown(member(3), why=f"connect: http://ops:{secret}@10.0.0.3:8000/metrics refused")
    tel.observe(report(pool(fresh(member(1), 0.9, 1), leaky), outcomes=(write_failed(3, f"auth {secret}"),)))
    body = get(tel, "/status").text + get(tel, "/healthz").text + get(tel, "/metrics").text
    assert secret not in body
    assert not {k for k in _keys(get(tel, "/status").json()) if re.search(r"password|token|secret|api_key|auth", k, re.I)}


# -- HTTP robustness ---------------------------------------------------------------------------

def test_unknown_path_is_404(tel):
    r = get(tel, "/nope")
    assert r.status_code == 404 and r.json()["error"] == "not found"


def test_head_healthz_has_status_but_no_body(tel):
    host, port = tel.address
    r = requests.head(f"http://{host}:{port}/healthz", timeout=5)
    assert r.status_code == 503 and r.content == b""


def test_handler_exception_is_500_and_server_survives(tel, monkeypatch):
    monkeypatch.setattr(tel, "status", lambda: 1 / 0)
    assert get(tel, "/status").status_code == 500
    assert get(tel, "/metrics").status_code == 200


def test_port_in_use_is_a_config_error(clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ConfigError, match="telemetry"):
            Telemetry(TelemetryConfig(port=busy), clock=clock, tick_seconds=TICK).start()


# -- wiring ------------------------------------------------------------------------------------

def test_attach_follows_the_daemon(clock):
    cfg = AppConfig(f5=F5Config("bigip.example"), pools=(PoolConfig(REF, "sglang"),), scheduler=SchedulerConfig(5000))
    bigip = bigip_with(logins=1)
    d = SimpleNamespace(cfg=cfg, rec=SimpleNamespace(bigip=bigip, last_scrapes={}), on_tick=[], on_reload=[],
                        on_wait=[], observe_requests=bigip.observe_requests)
    t = attach(Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=1.0), d)
    for hook in d.on_tick:
        hook(report(three_members()))
    assert t.tick_seconds == 5.0
    assert t.status()["pools"][0]["engine_type"] == "sglang"
    assert b"f5lr_bigip_token_logins_total 1.0" in t.metrics()[0]


# -- the Grafana dashboard ---------------------------------------------------------------------

def test_dashboard_is_importable_and_queries_only_real_metrics(clock):
    dash = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    assert dash["schemaVersion"] >= 36 and dash["title"] and dash["uid"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["pool"]["type"] == "query"
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    exprs = [tgt["expr"] for p in panels for tgt in p.get("targets", [])]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    # every metric the dashboard queries is one telemetry exports
    t = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=TICK)
    t.set_token_source(lambda: {"logins": 1, "extensions": 1, "deletions": 0})
    t.observe(report(three_members()), {REF.full_path: {
        "10.0.0.1:8000": ScrapeResult("10.0.0.1:8000", 1.0, Sample(0.0), duration=0.01),
        "10.0.0.3:8000": ScrapeResult("10.0.0.3:8000", 1.0, error="timeout", duration=3.0)}})
    t.instruments.bigip_response_hook(fake_response())
    exported = {line.split("{")[0].split(" ")[0] for line in t.metrics()[0].decode().splitlines() if not line.startswith("#")}
    annotations = [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    assert annotations, "ratio changes are annotated"
    used = set(re.findall(r"\bf5lr_[a-z_]+", " ".join(exprs + annotations + [variables["pool"]["query"]["query"]])))
    assert used and used <= exported, used - exported


def test_listen_backlog_is_128_not_5(tel):
    """Issue 12: the telemetry server listened with socketserver's default backlog of 5, so a burst of
    scrapers and browsers got SYNs dropped. The kernel's own view of the listening socket is checked
    (ss shows a listener's backlog as Send-Q), capped by net.core.somaxconn as the kernel caps it."""
    import shutil
    import subprocess

    from controller.telemetry import httpserve

    assert httpserve.Server.__init__.__kwdefaults__["backlog"] == 128
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed: cannot read the kernel's listen backlog")
    _, port = tel.address
    out = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert rows, f"no listener on port {port} in: {out!r}"
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
    except OSError:
        somaxconn = 4096
    assert int(rows[0][2]) == min(128, somaxconn), rows
