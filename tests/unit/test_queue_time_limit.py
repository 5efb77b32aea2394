"""The opt-in goodput mode (`weights.queue_time_limit: slo`): the controller keeps the pool's queueTimeLimit
at queue_time_share x slo_s where the pool queues at its connection limits, so LTM resets a request that
waited longer. Config parsing and its errors, the plan, and the reconciler's write (once, within the budget,
never in a dry run, never while paused or held, never when the mode is off)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.clock import FakeClock
from controller.config import yamlfile
from controller.config.schema import AppConfig, F5Config, ModeConfig, PoolConfig, SchedulerConfig, WeightsConfig
from controller.errors import ConfigError, PermanentBigIPError
from controller.loop import preflight
from controller.loop.reconcile import Reconciler
from controller.loop.render import plan_table
from controller.ltm import paths
from controller.model import HOLD_MARKER, PAUSE_MARKER, Kind, Member, PoolRef, PoolState, Reason, Sample, ScrapeResult
from controller.policy import planner
from tests.fakes import FakeBigIP, FakeScraper, fake_target_for

REF = PoolRef("llm")
ENV = {"F5_PASSWORD": "pw"}


def doc(weights: dict | None = None, pool_weights: dict | None = None) -> dict:
    pool = {"name": "llm", "engine_type": "vllm"}
    if pool_weights is not None:
        pool["weights"] = pool_weights
    out: dict = {"f5": {"host": "bigip.example"}, "pools": [pool]}
    if weights is not None:
        out["weights"] = weights
    return out


# -- config --------------------------------------------------------------------------------------


def test_off_by_default_and_never_planned():
    w = yamlfile.parse(doc(), ENV).pools[0].weights
    assert w.queue_time_limit == "off" and w.queue_time_limit_ms is None
    assert w.slo_s == 2.0 and w.queue_time_share == 0.5


@pytest.mark.parametrize(("top", "pool", "ms"), [
    ({"queue_time_limit": "slo"}, None, 1000),  # 0.5 x 2 s
    ({"queue_time_limit": "slo", "slo_s": 3}, None, 1500),
    ({"queue_time_limit": "slo", "queue_time_share": 1.0}, None, 2000),  # the SLO itself
    ({"slo_s": 4}, {"queue_time_limit": "slo"}, 2000),  # the defaults section's slo_s, the pool's switch
    ({"queue_time_limit": "slo"}, {"queue_time_limit": "off"}, None),  # a pool opts out
    ({"queue_time_limit": "slo"}, {"queue_time_limit": False}, None),  # YAML 1.1 reads a bare off as false
    ({"queue_time_limit": "SLO"}, None, 1000),
])
def test_queue_time_limit_from_defaults_and_per_pool(top, pool, ms):
    w = yamlfile.parse(doc(top, pool), ENV).pools[0].weights
    assert w.queue_time_limit_ms == ms


def test_a_bare_yaml_off_reads_as_off(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("f5: {host: bigip.example}\nweights: {queue_time_limit: off}\npools: [{name: llm, engine_type: vllm}]\n")
    assert yamlfile.load(str(path), ENV).pools[0].weights.queue_time_limit == "off"


def test_every_bad_key_is_named_in_one_error():
    bad = doc({"queue_time_limit": "always", "slo_s": 0}, {"queue_time_share": 1.5, "queue_time_limit": True})
    with pytest.raises(ConfigError) as caught:
        yamlfile.parse(bad, ENV)
    text = str(caught.value)
    for key in ("weights.queue_time_limit: 'always' is not one of off, slo", "weights.slo_s: must be",
                "pools[0].weights.queue_time_share: must be", "pools[0].weights.queue_time_limit: expected slo or off"):
        assert key in text, text


def test_a_queue_time_limit_under_a_millisecond_is_refused_naming_slo_s():
    with pytest.raises(ConfigError, match=r"weights\.slo_s: queue_time_share x slo_s .* = 0 ms"):
        yamlfile.parse(doc({"queue_time_limit": "slo", "slo_s": 0.0004}), ENV)


def test_slo_with_drive_ratio_is_accepted_with_a_note():
    cfg = yamlfile.parse(doc({"queue_time_limit": "slo", "drive": "ratio"}), ENV)
    assert cfg.pools[0].weights.queue_time_limit_ms == 1000
    assert any("weights.queue_time_limit" in n and "drive: ratio" in n for n in cfg.notes), cfg.notes


# -- the plan ------------------------------------------------------------------------------------

SLO = WeightsConfig(queue_time_limit="slo")
MEMBERS = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, 100) for i in (1, 2))


def pool(queue: bool = True, wait: int = 0, description: str = "") -> PoolState:
    return PoolState(REF, "ratio-least-connections-member", MEMBERS, queue_on_connection_limit=queue,
                     queue_time_limit_ms=wait, description=description)


def plan(state: PoolState, w: WeightsConfig = SLO, fresh: bool = True):
    scrapes = {m.key: ScrapeResult(m.key, 0.0, sample=Sample(0, running=1, kv_usage=0.1)) for m in MEMBERS} if fresh else {}
    return planner.plan_pool(state, scrapes, PoolConfig(REF, "vllm", weights=w), {}, 0.0, 0.0)[0]


def test_planned_where_the_pool_queues_and_it_differs():
    p = plan(pool(wait=0))
    assert p.queue_time_limit_ms == 1000 and p.pool_changes == {"queueTimeLimit": 1000}
    assert "queueTimeLimit 0 -> 1000 ms" in p.queue_note and "reset" in p.queue_note


def test_nothing_to_write_when_bigip_already_holds_it():
    p = plan(pool(wait=1000))
    assert p.queue_time_limit_ms == 1000 and p.pool_changes == {}
    assert "as set" in p.queue_note


def test_also_planned_when_no_member_has_fresh_metrics():
    assert plan(pool(), fresh=False).pool_changes == {"queueTimeLimit": 1000}


@pytest.mark.parametrize(("state", "says"), [
    (pool(queue=False), "queueOnConnectionLimit is disabled"),
    (pool(description=f"gpu pool; {PAUSE_MARKER}"), "paused"),
    (pool(wait=3000, description=HOLD_MARKER), "held"),
])
def test_not_written_where_the_pool_does_not_queue_or_an_admin_says_so(state, says):
    p = plan(state)
    assert p.queue_time_limit_ms is None and p.pool_changes == {}
    assert says in p.queue_note and "not written" in p.queue_note


def test_off_never_touches_queue_time_limit_whatever_bigip_holds():
    p = plan(pool(wait=7000), WeightsConfig())
    assert p.queue_time_limit_ms is None and p.pool_changes == {} and p.queue_note == ""


def test_check_says_what_the_mode_does_and_warns_where_it_cannot():
    class _BigIP:
        def __init__(self, state):
            self.state = state

        def read_pool(self, ref):
            return self.state

    row, _ = preflight.check_pool(_BigIP(pool()), PoolConfig(REF, "vllm", weights=SLO))
    assert row.status == "ok" and "queueTimeLimit 0 -> 1000 ms" in row.detail, row.detail
    row, _ = preflight.check_pool(_BigIP(pool(queue=False)), PoolConfig(REF, "vllm", weights=SLO))
    assert row.status == "warn" and row.code == "queue-time-limit-unused", row
    assert "queue-on-connection-limit enabled" in row.detail


def test_pool_fields_are_checked_before_sending():
    assert paths.check_pool_fields({"queueTimeLimit": 1000}) == ""
    assert "unknown pool field" in paths.check_pool_fields({"members": []})
    assert "not an integer" in paths.check_pool_fields({"queueTimeLimit": -1})
    assert "not an integer" in paths.check_pool_fields({"queueTimeLimit": "1000"})


# -- the reconciler ------------------------------------------------------------------------------


def make(state: PoolState, w: WeightsConfig = SLO, *, dry_run: bool = False, per_minute: int = 600):
    clock = FakeClock()
    cfg = AppConfig(f5=F5Config("bigip.example", max_writes_per_minute=per_minute),
                    pools=(PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=w),),
                    scheduler=SchedulerConfig(metrics_fetch_interval_ms=1000, pool_fetch_interval=0.0))
    bigip, scraper = FakeBigIP(state), FakeScraper(clock)
    scraper.samples = {m.key: Sample(0, running=1, kv_usage=0.1) for m in MEMBERS}  # equal: ratios stay
    return Reconciler(cfg, bigip, scraper, clock=clock, dry_run=dry_run, target_for=fake_target_for), bigip, clock


def test_written_once_then_left_alone():
    rec, bigip, clock = make(pool())
    report = rec.tick()
    assert getattr(bigip, "pool_writes", []) == [(REF.full_path, {"queueTimeLimit": 1000})]
    assert [(o.kind, o.reason) for o in report.outcomes if o.kind is Kind.SETTING] == [(Kind.SETTING, Reason.APPLIED)]
    assert report.ok
    for _ in range(3):
        clock.advance(1)
        rec.tick()
    assert len(bigip.pool_writes) == 1
    bigip.pools[REF.full_path] = replace(bigip.pools[REF.full_path], queue_time_limit_ms=0)  # an admin resets it
    clock.advance(1)
    rec.tick()
    assert bigip.pool_writes[-1] == (REF.full_path, {"queueTimeLimit": 1000}) and len(bigip.pool_writes) == 2


def test_dry_run_plans_it_and_writes_nothing():
    rec, bigip, _ = make(pool(), dry_run=True)
    report = rec.tick()
    assert not getattr(bigip, "pool_writes", [])
    text = plan_table(report)
    assert "queue: queueTimeLimit 0 -> 1000 ms" in text and "and queueTimeLimit on 1 pool(s)" in text, text


@pytest.mark.parametrize("state", [pool(queue=False), pool(description=PAUSE_MARKER), pool(description=HOLD_MARKER)])
def test_no_write_where_the_pool_does_not_queue_or_an_admin_holds_it(state):
    rec, bigip, _ = make(state)
    rec.tick()
    assert not getattr(bigip, "pool_writes", [])


def test_off_never_writes_the_pool():
    rec, bigip, _ = make(pool(wait=5000), WeightsConfig())
    rec.tick()
    assert not getattr(bigip, "pool_writes", []) and bigip.pools[REF.full_path].queue_time_limit_ms == 5000


def test_the_write_counts_within_the_budget():
    rec, bigip, clock = make(pool(), per_minute=1)
    rec.budget.take(["an earlier write"])  # the minute's one write is spent
    rec.tick()
    assert not getattr(bigip, "pool_writes", [])
    clock.advance(61)
    rec.tick()
    assert bigip.pool_writes == [(REF.full_path, {"queueTimeLimit": 1000})]
    assert rec.budget.available() == 0


def test_a_refused_write_fails_the_pool_and_is_retried_next_tick():
    rec, bigip, clock = make(pool())
    bigip.pool_error = PermanentBigIPError("01070822:3: Access Denied", status=400)
    report = rec.tick()
    assert report.pool_result(REF.full_path) == "error"
    assert "queueTimeLimit not written" in report.pool_problem(REF.full_path)
    bigip.pool_error = None
    clock.advance(1)
    assert rec.tick().pool_result(REF.full_path) == "ok"
    assert bigip.pool_writes == [(REF.full_path, {"queueTimeLimit": 1000})]
