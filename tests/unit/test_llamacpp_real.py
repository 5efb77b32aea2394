"""llama.cpp as the real server behaves (pages in tests/data, captured by bench/real): its load and speed
read right, its per-read gauges not depended on, its slots read from /props and used where it has no KV."""

from __future__ import annotations

import pathlib

import pytest

from controller.config.schema import ModeConfig, PoolConfig, WeightsConfig
from controller.engines import capacity, specs
from controller.engines.capacity import observe
from controller.engines.scrape import props_url
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult, SpeedCounters
from controller.policy import planner, scoring, weights

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def real(name: str) -> str:
    return (DATA / f"llamacpp_real_{name}.txt").read_text()


# --- the page ------------------------------------------------------------------------------------------

def test_the_real_busy_page_reads_as_four_running_and_two_deferred():
    s = specs.extract(real("busy"), "llamacpp")
    assert (s.waiting, s.running, s.kv_usage) == (2, 4, None)
    assert specs.detect(real("busy")) == "llamacpp"
    c = s.counters
    assert (c.prompt_tokens, c.prompt_seconds, c.generation_tokens, c.generation_seconds) == (1200, 1.65424, 0, 0)


def test_a_second_scraper_that_reset_the_gauges_changes_nothing_learned():
    """Two reads of the same moment: one right after another scraper reset the per-read gauges (0). The
    controller learns from the compute time counters, so both give the same estimate."""
    busy, reread, after = (specs.extract(real(n), "llamacpp") for n in ("busy", "busy_reread", "after"))
    assert busy.counters.slot_prompt_rate == pytest.approx(725.409) and reread.counters.slot_prompt_rate == 0
    first = observe(observe(None, busy, 0.0), after, 10.0)
    second = observe(observe(None, reread, 0.0), after, 10.0)
    assert first == second
    # 600 prompt tokens in 0.77874 s of prompt compute; 1,200 generated tokens in 31.4116 slot-seconds
    assert first.prefill == pytest.approx(600 / (2.43298 - 1.65424))
    assert first.decode == pytest.approx(1200 / 31.4116)
    assert first.timed and first.mix == pytest.approx(1800 / 1200)


@pytest.mark.parametrize(("before", "after", "decode", "prefill"), [
    # enough of both: compute rates
    (dict(prompt_tokens=0, prompt_seconds=0.0, generation_tokens=0, generation_seconds=0.0),
     dict(prompt_tokens=1000, prompt_seconds=0.5, generation_tokens=400, generation_seconds=8.0), 50.0, 2000.0),
    # too few prompt tokens (under MIN_PROMPT_TOKENS): prefill window stays open
    (dict(prompt_tokens=0, prompt_seconds=0.0, generation_tokens=0, generation_seconds=0.0),
     dict(prompt_tokens=100, prompt_seconds=0.05, generation_tokens=400, generation_seconds=8.0), 50.0, None),
    # requests still running: llama.cpp adds generation time when a request finishes; no decode window yet
    (dict(prompt_tokens=0, prompt_seconds=0.0, generation_tokens=0, generation_seconds=0.0),
     dict(prompt_tokens=1000, prompt_seconds=0.5, generation_tokens=0, generation_seconds=0.0), None, 2000.0),
    # the gauges are ignored when the counters exist, even when they alone have values
    (dict(prompt_tokens=0, prompt_seconds=0.0, generation_tokens=0, generation_seconds=0.0, slot_gen_rate=999.0),
     dict(prompt_tokens=0, prompt_seconds=0.0, generation_tokens=0, generation_seconds=0.0, slot_gen_rate=999.0), None, None),
])
def test_compute_time_counters_table(before, after, decode, prefill):
    s0 = Sample(waiting=0, running=4, counters=SpeedCounters(**before))
    s1 = Sample(waiting=0, running=4, counters=SpeedCounters(**after))
    est = observe(observe(None, s0, 0.0), s1, 1.0)
    assert est.decode == (pytest.approx(decode) if decode else None)
    assert est.prefill == (pytest.approx(prefill) if prefill else None)


def timed(prefill: float, decode: float, mix: float = 4.0) -> capacity.SpeedEstimate:
    return capacity.SpeedEstimate(at=0.0, counters=SpeedCounters(), prefill=prefill, decode=decode, windows=3,
                                  timed=True, mix=mix)


@pytest.mark.parametrize(("estimates", "expect"), [
    # same decode, prefill 2x: with 4 prompt tokens per generated one, 1/(4/1000+1/50) vs 1/(4/2000+1/50)
    ({"a": timed(1000, 50), "b": timed(2000, 50)}, {"a": 1 / (4 / 1000 + 1 / 50), "b": 1 / (4 / 2000 + 1 / 50)}),
    # the pool's mix is the median of the members'
    ({"a": timed(1000, 50, mix=2), "b": timed(1000, 25, mix=6), "c": timed(500, 50, mix=4)},
     {"a": 1 / (4 / 1000 + 1 / 50), "b": 1 / (4 / 1000 + 1 / 25), "c": 1 / (4 / 500 + 1 / 50)}),
])
def test_compute_timed_members_are_compared_by_request_time(estimates, expect):
    got = capacity.service_rates(estimates)
    assert got == pytest.approx(expect)


def test_a_pool_mixing_timed_and_ttft_engines_keeps_the_geometric_blend():
    est = {"a": timed(1000, 50), "b": capacity.SpeedEstimate(at=0.0, counters=SpeedCounters(), prefill=500.0, decode=50.0,
                                                              windows=3)}
    assert capacity.service_rates(est) == pytest.approx({"a": 1000.0, "b": 500.0})  # prefill only (PREFILL_WEIGHT 1)


# --- slots --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("running", "waiting", "slots", "full"), [
    (4, 2, 4, 1.0),  # every slot busy and two deferred
    (2, 0, 8, 0.25),
    (0, 0, 4, 0.0),
    (3, 0, None, 3 / 4),  # slots unknown: running/(running+waiting+1)
])
def test_fullness_is_running_over_slots(running, waiting, slots, full):
    assert scoring.fullness(Sample(waiting=waiting, running=running, slots=slots)) == pytest.approx(full)


def test_pressure_uses_the_slots_where_there_is_no_kv():
    mode = ModeConfig(name="balance", w_a=0.5, w_b=0.5)
    half = Sample(waiting=0, running=2, slots=4)
    assert scoring.pressure(half, mode) == pytest.approx(0.5 * 0.5)
    with_kv = Sample(waiting=0, running=2, slots=4, kv_usage=0.1)
    assert scoring.pressure(with_kv, mode) == pytest.approx(0.5 * 0.1)


def test_props_url_sits_beside_the_metrics_path():
    assert props_url("http://127.0.0.1:8080/metrics") == "http://127.0.0.1:8080/props"
    assert props_url("https://h:1/llama/a/metrics") == "https://h:1/llama/a/props"












# --- connection limits from slots ----------------------------------------------------------------------

@pytest.mark.parametrize(("slots", "kvmax", "max_connections", "expect"), [
    (4, None, 0, 4),  # the slots, no headroom: past them the engine only defers
    (4, 40.0, 0, 4),  # slots win over KV capacity
    (8, None, 6, 6),  # capped by max_connections
    (None, 40.0, 0, None),  # not a slot engine: slot_limit leaves it
])
def test_slot_limit_table(slots, kvmax, max_connections, expect):
    s = Sample(waiting=0, running=1, kv_max_concurrency=kvmax, slots=slots)
    assert weights.slot_limit(s, WeightsConfig(max_connections=max_connections)) == expect


def test_capacity_limit_prefers_slots_to_kv_headroom():
    w = WeightsConfig(drive="connection_limit", limit_headroom=1.5)
    assert weights.capacity_limit(Sample(waiting=0, slots=4, kv_max_concurrency=40.0), w) == 4
    assert weights.capacity_limit(Sample(waiting=0, kv_max_concurrency=40.0), w) == 60


@pytest.mark.parametrize(("queues", "drive", "expect"), [
    (True, "ratio", 4),  # the pool queues at limits: the slots become the limit, with the ratio
    (False, "ratio", 0),  # it does not: a limit would reject requests, so none is written
    (False, "both", 4),  # asked for explicitly
])
def test_the_planner_limits_slot_engines_on_a_pool_that_queues(queues, drive, expect):
    members = tuple(Member(f"127.0.0.1:{p}", "Common", "127.0.0.1", p, ratio=100) for p in (1, 2))
    state = PoolState(PoolRef("llm"), "ratio-least-connections-member", members, queue_on_connection_limit=queues)
    cfg = PoolConfig(PoolRef("llm"), "llamacpp", mode=ModeConfig("balance", 0.5, 0.5), weights=WeightsConfig(drive=drive))
    scrapes = {m.key: ScrapeResult(m.key, 10.0, Sample(waiting=1, running=4, slots=4)) for m in members}
    plan, _ = planner.plan_pool(state, scrapes, cfg, {}, 10.0, 1_790_000_000.0)
    assert {p.connection_limit for p in plan.members} == {expect}
