from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, ModeConfig, PoolConfig, SchedulerConfig, WeightsConfig
from controller.errors import BigIPUnreachable
from controller.loop.reconcile import Reconciler
from controller.model import Member, PoolRef, PoolState, Sample
from tests.fakes import FakeBigIP, FakeScraper, fake_target_for

REF = PoolRef("llm")


def state(*ratios):
    members = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, r) for i, r in enumerate(ratios, 1))
    return PoolState(REF, "ratio-least-connections-member", members)


def make(*ratios, dry_run=False, per_minute=600, pool_fetch=10.0, **w):
    clock = FakeClock()
    cfg = AppConfig(
        f5=F5Config("bigip.example", max_writes_per_minute=per_minute),
        pools=(PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=WeightsConfig(**w)),),
        scheduler=SchedulerConfig(metrics_fetch_interval_ms=3000, pool_fetch_interval=pool_fetch),
    )
    bigip, scraper = FakeBigIP(state(*ratios)), FakeScraper(clock)
    rec = Reconciler(cfg, bigip, scraper, clock=clock, dry_run=dry_run, target_for=fake_target_for)
    return rec, bigip, scraper, clock


def load(scraper, *samples):
    scraper.samples = {f"10.0.0.{i}:8000": s for i, s in enumerate(samples, 1)}


def ratios(bigip):
    return [m.ratio for m in bigip.pools[REF.full_path].members]


def test_ratios_land_then_steady_state_writes_nothing():
    rec, bigip, scraper, clock = make(1, 1, 1)
    load(scraper, Sample(0, kv_usage=0.1), Sample(4, kv_usage=0.4), Sample(8, kv_usage=0.9))
    report = rec.tick()
    assert report.applied == 3 and report.ok
    assert ratios(bigip) == [60, 58, 10]  # from BIG-IP's default 1: stepped from the floor, max_step 50
    clock.advance(3)
    assert rec.tick().applied == 1  # the rest of the way to 100
    r = ratios(bigip)
    assert r[0] > r[1] > r[2] >= 10 and r[0] == 100
    writes = len(bigip.writes)
    for _ in range(5):
        clock.advance(3)
        assert rec.tick().applied == 0
    assert len(bigip.writes) == writes


def test_dry_run_never_writes_but_plans_every_member():
    rec, bigip, scraper, _ = make(1, 1, dry_run=True)
    load(scraper, Sample(0, kv_usage=0.1), Sample(9, kv_usage=0.9))
    report = rec.tick()
    assert bigip.writes == [] and report.applied == 0
    assert len(report.plans[0].members) == 2
    assert len(report.plans[0].writes) == 2


def test_write_rereads_pool_when_membership_is_cached():
    rec, bigip, scraper, clock = make(100, 100)
    load(scraper, Sample(0, kv_usage=0.0), Sample(0, kv_usage=0.0))
    rec.tick()
    assert bigip.reads == 1
    clock.advance(3)  # cache still fresh (pool_fetch_interval 10 s)
    assert rec.tick().applied == 0 and bigip.reads == 1  # nothing to write: no read at all
    load(scraper, Sample(0, kv_usage=0.0), Sample(10, kv_usage=1.0))
    clock.advance(3)
    report = rec.tick()
    assert report.applied == 1 and bigip.reads == 2  # a write is planned against a fresh read


def test_plan_against_fresh_state_not_memory_of_writes():
    """Someone resets a ratio by hand in the GUI: the next tick sees it and corrects it."""
    rec, bigip, scraper, clock = make(1, 1, pool_fetch=0)
    load(scraper, Sample(0, kv_usage=0.0), Sample(10, kv_usage=1.0))
    rec.tick()
    target = ratios(bigip)
    bigip.pools[REF.full_path] = state(1, 1)
    clock.advance(3)
    rec.tick()
    assert ratios(bigip) == target


def test_bigip_down_writes_nothing_and_reports():
    rec, bigip, scraper, _ = make(1, 1)
    bigip.read_error = BigIPUnreachable("connection refused")
    load(scraper, Sample(0), Sample(1))
    report = rec.tick()
    assert not report.ok and report.plans == () and bigip.writes == []
    assert scraper.calls == 0  # nobody to scrape without membership


def test_a_pool_without_any_fresh_metrics_is_blind_and_untouched():
    rec, bigip, scraper, _ = make(100, 40)
    load(scraper, "timeout", "refused")
    plan = rec.tick().plans[0]
    assert plan.blind and bigip.writes == []
    load(scraper, Sample(0, kv_usage=0.1), "refused")
    assert not rec.tick().plans[0].blind


def test_failed_scrape_member_keeps_ratio():
    rec, bigip, scraper, _ = make(100, 100, 37)
    load(scraper, Sample(0, kv_usage=0.0), Sample(10, kv_usage=1.0), "timeout")
    rec.tick()
    assert ratios(bigip)[2] == 37
    assert all(key != "10.0.0.3:8000" for _, key, _ in bigip.writes)


def test_member_vanished_between_read_and_write_is_not_fatal():
    rec, bigip, scraper, _ = make(1, 1)
    bigip.vanished = {"10.0.0.2:8000"}
    load(scraper, Sample(0, kv_usage=0.0), Sample(10, kv_usage=1.0))
    report = rec.tick()
    assert report.applied == 1 and report.failed == 1
    assert report.pool_writes == ((REF.full_path, 1, 1),)  # per pool, for telemetry
    assert REF.full_path not in rec.cache  # re-read membership next tick


def test_write_budget_defers_smallest_changes():
    rec, bigip, scraper, _ = make(1, 1, 1, per_minute=2)
    load(scraper, Sample(0, kv_usage=0.0), Sample(5, kv_usage=0.5), Sample(10, kv_usage=1.0))
    report = rec.tick()
    assert report.applied == 2
    assert len(bigip.writes) == 2


def test_fault_logged_once_not_every_tick():
    events = []

    class Log:
        def warning(self, event, **kw):
            events.append(("warning", event))

        info = warning

    rec, bigip, scraper, clock = make(100, 100)
    rec.faults.log = rec.log = Log()
    load(scraper, Sample(0), "timeout")
    for _ in range(4):
        rec.tick()
        clock.advance(3)
    assert events.count(("warning", "scrape_failed")) == 1
    load(scraper, Sample(0), Sample(0))
    rec.tick()
    assert ("warning", "scrape_recovered") in events


def test_every_tick_runs_inside_one_bigip_budget():
    """The tick budget (f5.tick_budget) is started and ended by the reconciler through the BigIP protocol."""
    rec, bigip, scraper, clock = make(1, 1)
    load(scraper, Sample(0, kv_usage=0.1), Sample(4, kv_usage=0.4))
    for n in (1, 2):
        rec.tick()
        clock.advance(3)
        assert bigip.ticks_begun == bigip.ticks_ended == n
    bigip.read_error = BigIPUnreachable("cannot connect")
    rec.tick()  # a failing tick still gets, and releases, its budget
    assert bigip.ticks_begun == bigip.ticks_ended == 3
