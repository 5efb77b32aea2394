"""Engine fault matrix (issue #6): the real Reconciler, BigIPClient and Scraper against the HTTPS BIG-IP
emulator and loopback engine servers, one fault at a time.

For every fault: the tick returns (the daemon keeps running); the faulty member is not written from bad
data (its ratio stays where it was); the fault is logged once, not once per tick; once the fault clears
the very next tick reads the member again and writes what its real load calls for.

`tests/fault_rig.py`'s `Rig` wires the real edges together in-process
with a FakeClock for the controller's notion of time, so ticks are instant unless a fault costs time.
"""

from __future__ import annotations

import time

import pytest

from controller.config.schema import WeightsConfig
from controller.engines import specs
from tests.fault_rig import PageServer, Rig, vllm_page

INF = vllm_page("+Inf", 0, 0.1)
NEGATIVE = vllm_page(-3, 0, 0.1)
KV_OVER = vllm_page(0, 0, 7.5)
# 50,000 waiting series (one per made-up label set; 2.8 MB, under the 8 MB page cap): past the series cap
MANY_SERIES = vllm_page(0, 0, 0.1, extra="".join(f'vllm:num_requests_waiting{{engine="{i}",model_name="m"}} 1\n'
                                                 for i in range(1, 50_000)))

MATRIX = {
    "refused": (("fault", "refuse"), "refused", {}),
    "timeout": (("fault", "timeout"), "timeout", {}),
    "trickle": (("fault", "trickle"), "timeout", {"trickle_bytes": 16, "trickle_interval": 0.1}),
    "huge-10MB": (("fault", "huge"), "too-large", {"scrape_timeout": 3.0, "tick_deadline": 3.5}),
    "garbage": (("fault", "garbage"), "not-prometheus", {}),
    "html-200": (("fault", "html200"), "not-prometheus", {}),
    "http-500": (("fault", "http500"), "http-500", {}),
    "nan": (("fault", "nan"), "bad-value", {}),
    "inf": (("text", INF), "bad-value", {}),
    "negative": (("text", NEGATIVE), "bad-value", {}),
    "kv-over-1": (("text", KV_OVER), "bad-value", {}),
    "missing": (("fault", "missing"), "missing-metric", {}),
    "50k-series": (("text", MANY_SERIES), "too-many-series", {}),
}


def _set(rig: Rig, server: PageServer, how) -> None:
    kind, value = how
    if kind == "fault":
        server.fault = value
    else:
        server.text = value
    if value == "refuse":
        # An engine that dies takes its connections with it; the simulated one only stops listening,
        # so drop the scraper's idle keep-alive connections to make the next scrape connect afresh.
        rig.rec.scraper._session.close()


def _clear(server: PageServer) -> None:
    server.fault = None
    server.text = None


@pytest.mark.parametrize("fault", list(MATRIX))
def test_engine_fault_holds_member_logs_once_and_recovers_in_one_tick(rig_factory, fault):
    how, reason, kw = MATRIX[fault]
    rig = rig_factory(**kw)
    rig.settle()
    top = rig.ratios()[0]
    assert top == rig.cfg.pools[0].weights.scale  # the idle member is at the top before the fault
    victim = rig.members[0]
    writes_before = len(rig.patches(victim))

    _set(rig, rig.servers[0], how)
    rig.servers[0].load = (12, 8, 1.0)  # what it would say if it could: so a leak of it would show as a write
    rig.servers[1].load = (0, 0, 0.0)  # the others keep being planned and written
    reports = []
    for _ in range(3):
        started = time.monotonic()
        reports.append(rig.tick())
        took = time.monotonic() - started
        assert took < rig.tick_deadline + 1.5, f"tick took {took:.2f}s: the scrape deadline did not hold"

    for report in reports:  # the daemon keeps running: each tick returned a report for the pool
        assert len(report.plans) == 1
        plan = {p.member.key: p for p in report.plans[0].members}[victim]
        assert plan.action == "unknown-hold" and plan.ratio == top
        assert reason in plan.reason
    assert len(rig.patches(victim)) == writes_before, "a member with bad data was written"
    assert rig.ratios()[0] == top
    assert any(w.member == rig.members[1] for w in rig.patches()), "healthy members must still be written"
    failed = rig.log.named("scrape_failed", member=victim)
    assert len(failed) == 1 and failed[0]["reason"] == reason, failed  # once per fault, not per tick

    _clear(rig.servers[0])
    report = rig.tick()  # the first tick after the fault clears
    plan = {p.member.key: p for p in report.plans[0].members}[victim]
    assert plan.sample is not None and plan.sample.waiting == 12
    assert rig.ratios()[0] < top, "recovery must come within one tick of the fault clearing"
    assert len(rig.log.named("scrape_recovered", member=victim)) == 1


def test_trickle_is_cut_at_the_total_budget_not_per_read(rig_factory):
    """A server that sends 16 bytes every 0.1 s never trips a per-read socket timeout; the total one holds."""
    rig = rig_factory(trickle_bytes=16, trickle_interval=0.1, scrape_timeout=0.4, tick_deadline=2.0)
    rig.servers[0].fault = "trickle"
    started = time.monotonic()
    report = rig.tick()
    took = time.monotonic() - started
    result = {p.member.key: p for p in report.plans[0].members}[rig.members[0]]
    assert "timeout" in result.reason and "page incomplete" in result.reason
    assert took < 1.7, f"scrape of a trickling page took {took:.2f}s with a 0.4 s timeout (2 s tick deadline)"


def test_duplicate_series_count_once(rig_factory):
    """The same series twice on one page (a buggy exporter, a proxy concatenating pages) is one series:
    the queue is not doubled. Identical label sets: the last line wins."""
    rig = rig_factory()
    rig.settle()
    before = rig.ratios()
    dup = vllm_page(0, 0, 0.1, extra='vllm:num_requests_waiting{engine="0",model_name="m"} 0\n'
                                      'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1\n')
    rig.servers[0].text = dup
    report = rig.tick()
    plan = {p.member.key: p for p in report.plans[0].members}[rig.members[0]]
    assert plan.sample is not None and plan.sample.waiting == 0 and plan.sample.ranks == 1
    assert rig.ratios() == before and report.applied == 0
    assert specs.extract(dup, "vllm").waiting == 0


def test_every_member_failing_writes_nothing_and_recovers(rig_factory):
    rig = rig_factory()
    rig.settle()
    before, writes = rig.ratios(), len(rig.patches())
    for s in rig.servers:
        s.fault = "garbage"
    for _ in range(3):
        report = rig.tick()
        assert report.plans[0].note.startswith("no member has fresh metrics")
    assert rig.ratios() == before and len(rig.patches()) == writes
    assert len(rig.log.named("scrape_failed")) == 3  # once per member
    for s in rig.servers:
        s.fault = None
    rig.servers[2].load = (0, 0, 0.0)
    rig.tick()
    assert rig.ratios()[2] > before[2]


def test_member_stale_past_stale_after_goes_to_neutral_not_floor(rig_factory):
    """A member silent longer than stale_after returns to the pool's median, in max_step moves."""
    rig = rig_factory(weights=WeightsConfig(stale_after=5.0))
    rig.settle()
    top = rig.ratios()[0]
    _set(rig, rig.servers[0], ("fault", "refuse"))
    for _ in range(8):
        rig.tick()
    r = rig.ratios()
    others = sorted(r[1:])
    assert others[0] <= r[0] <= top and r[0] > rig.cfg.pools[0].weights.floor
    assert len(rig.log.named("scrape_failed", member=rig.members[0])) == 1
