"""controller.engines.capacity: service rates learned from engine counters (table tests and the real pages)."""

from __future__ import annotations

import math

import pytest

from controller.config.schema import ModeConfig, PoolConfig
from controller.engines import capacity, specs
from controller.engines.capacity import IMPUTED, KV_CAPACITY, MEASURED, SpeedEstimate, neutral, observe
from controller.loop.render import neutral_line, pool_table
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult, SpeedCounters
from controller.policy import planner
from controller.telemetry.status import pool_view


def sample(running=4.0, kv_max=None, **counters) -> Sample:
    return Sample(waiting=0.0, running=running, kv_usage=0.2, kv_max_concurrency=kv_max,
                  counters=SpeedCounters(**counters) if counters else None)


def feed(steps, est=None):
    """steps: (time, Sample) pairs folded in order."""
    for t, s in steps:
        est = observe(est, s, t)
    return est


# --- one member ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("steps", "decode", "prefill", "windows"), [
    # 4 running requests, 400 generated tokens/s -> 100 tokens/s per request; no TTFT: no prefill
    ([(0, sample(generation_tokens=0)), (1, sample(generation_tokens=400))], 100.0, None, 1),
    # the ITL histogram wins over the counter: 800 tokens in 4 s of inter-token time -> 200/s
    ([(0, sample(generation_tokens=0, itl_sum=0.0, itl_count=0)),
      (1, sample(generation_tokens=400, itl_sum=4.0, itl_count=800))], 200.0, None, 1),
    # prefill: 30,000 prompt tokens over 15 s of TTFT (40 first tokens) -> 2000 prompt tokens per TTFT-second
    ([(0, sample(prompt_tokens=0, generation_tokens=0, ttft_sum=0.0, ttft_count=0)),
      (2, sample(prompt_tokens=30000, generation_tokens=800, ttft_sum=15.0, ttft_count=40))], 100.0, 2000.0, 1),
    # idle window (no tokens): nothing learned
    ([(0, sample(generation_tokens=10)), (1, sample(running=0.0, generation_tokens=10))], None, None, 0),
    # llama.cpp gauges stand in when the counters say nothing
    ([(0, sample(slot_prompt_rate=500.0, slot_gen_rate=30.0)),
      (1, sample(slot_prompt_rate=520.0, slot_gen_rate=32.0))], 32.0, 520.0, 1),
    # SGLang's gen_throughput is for the whole engine: per request, divide by running
    ([(0, sample(running=8.0, gen_throughput=400.0)), (1, sample(running=8.0, gen_throughput=400.0))], 50.0, None, 1),
])
def test_observe_table(steps, decode, prefill, windows):
    est = feed(steps)
    assert est.windows == windows
    assert est.decode == (pytest.approx(decode) if decode else None)
    assert est.prefill == (pytest.approx(prefill) if prefill else None)


def test_a_quiet_window_grows_until_it_holds_enough_first_tokens():
    zero = dict(generation_tokens=0, itl_sum=0.0, itl_count=0)
    third = capacity.MIN_FIRST_TOKENS / 3
    est = feed([(0, sample(prompt_tokens=0, ttft_sum=0.0, ttft_count=0, **zero)),
                (1, sample(prompt_tokens=3000, ttft_sum=1.0, ttft_count=third, **zero)),  # too few first tokens
                (2, sample(prompt_tokens=6000, ttft_sum=2.0, ttft_count=2 * third, **zero))])  # still too few
    assert est.windows == 0 and est.at == 0
    est = observe(est, sample(prompt_tokens=9000, ttft_sum=4.0, ttft_count=3 * third, **zero), 3)  # enough since t=0
    assert est.windows == 1 and est.prefill == pytest.approx(9000 / 4.0)
    assert est.ttft == pytest.approx(4.0 / (3 * third))


def test_prefill_window_survives_decode_windows():
    """A member with a few requests a second closes a decode window every tick; its first tokens must
    still add up across those ticks (a shared baseline threw them away: the slow members' prefill rate
    was measured only on bursts)."""
    n = capacity.MIN_FIRST_TOKENS
    steps = [(t, sample(generation_tokens=400.0 * t, prompt_tokens=1000.0 * t, ttft_sum=0.5 * t, ttft_count=n / 4 * t))
             for t in range(0, 5)]
    est = feed(steps)
    assert est.windows == 4  # four decode windows ...
    assert est.prefill == pytest.approx(1000.0 / 0.5)  # ... and the prefill window closed once, at t=4
    assert est.ttft == pytest.approx(0.5 / (n / 4))
    assert est.prefill_base is not None and est.prefill_base.ttft_count == n


def test_ttft_is_a_decayed_mean_of_window_means():
    """Each window weighs the seconds it covers x e^(-age/TTFT_DECAY_S): one second later the first window's
    second still counts e^(-0.2) against the second window's. The prefill rate keeps DECAY_S."""
    n = capacity.MIN_FIRST_TOKENS
    est = feed([(0, sample(prompt_tokens=0, ttft_sum=0.0, ttft_count=0)),
                (1, sample(prompt_tokens=100, ttft_sum=0.1 * n, ttft_count=n)),    # 0.1 s each
                (2, sample(prompt_tokens=200, ttft_sum=0.6 * n, ttft_count=2 * n))])  # then 0.5 s each
    kept = math.exp(-1.0 / capacity.TTFT_DECAY_S)
    assert est.ttft == pytest.approx((kept * 0.1 + 0.5) / (kept + 1.0))
    rate = math.exp(-1.0 / capacity.DECAY_S)
    assert est.prefill == pytest.approx((rate * 100 / (0.1 * n) + 100 / (0.5 * n)) / (rate + 1.0))


def test_after_a_burst_the_ttft_estimate_is_within_2x_of_the_quiet_figure_in_under_20_s():
    """A member whose first tokens took 6 s through a 20-s burst, then 0.2 s: the estimate comes within 2x of
    0.2 s in under 20 s (with the speeds' 10-s time constant it took 3.4 x 10 s = 34 s)."""
    n, steps, total, count = capacity.MIN_FIRST_TOKENS, [], 0.0, 0.0
    for t in range(0, 80):
        per = 6.0 if t <= 20 else 0.2
        total, count = total + per * n, count + n
        steps.append((t, sample(prompt_tokens=100.0 * t, ttft_sum=total, ttft_count=count)))
    est, within = None, None
    for t, s in steps:
        est = capacity.observe(est, s, float(t))
        if t > 20 and within is None and est is not None and est.ttft is not None and est.ttft < 0.4:
            within = t - 20
    assert within is not None and within < 20, within


@pytest.mark.parametrize(("old_span", "span", "weight"), [
    (0.0, 1.0, 1.0),  # nothing before: the window is the estimate
    (10.0, 1.0, 1.0 / (1.0 + 10.0 * math.exp(-0.1))),  # a busy member's one-second window: about a tenth
    (10.0, 10.0, 10.0 / (10.0 + 10.0 * math.exp(-1.0))),  # a quiet member's ten-second window: most of it
    (10.0, 60.0, 60.0 / (60.0 + 10.0 * math.exp(-6.0))),  # a minute later the old hardly counts
    (10.0, 0.0, capacity.ALPHA),  # no time: the fixed weight
])
def test_decayed_weight(old_span, span, weight):
    assert capacity.decayed_weight(old_span, span)[0] == pytest.approx(weight)


def test_a_quiet_member_follows_its_ttft_within_tens_of_seconds_after_a_burst():
    """A burst (2 s per first token) then a trickle of one request every 2 s at 0.2 s: the estimate is
    within 20% of 0.2 s some 40 s after the burst (a per-window EWMA of 0.2 needed minutes)."""
    steps, prompt, total, count, t = [], 0.0, 0.0, 0.0, 0
    for t in range(0, 10):  # the burst: 64 first tokens a second at 2 s each
        steps.append((t, sample(prompt_tokens=prompt, ttft_sum=total, ttft_count=count)))
        prompt, total, count = prompt + 64000, total + 128.0, count + 64
    for t in range(10, 60):  # then quiet: one first token every 2 s
        steps.append((t, sample(prompt_tokens=prompt, ttft_sum=total, ttft_count=count)))
        if t % 2:
            prompt, total, count = prompt + 1000, total + 0.2, count + 1
    est = feed(steps[:10])
    assert est.ttft == pytest.approx(2.0)
    est = feed(steps[10:], est)
    assert est.ttft == pytest.approx(0.2, rel=0.2)


def test_no_counters_no_estimate_and_first_sample_is_only_a_baseline():
    assert observe(None, sample(), 0.0) is None
    est = observe(None, sample(generation_tokens=100), 0.0)
    assert est is not None and est.decode is None and not est.ready


def test_counter_reset_keeps_the_estimate_and_restarts_the_baseline():
    est = feed([(0, sample(generation_tokens=0)), (1, sample(generation_tokens=400)), (2, sample(generation_tokens=800))])
    before = est.decode
    est = observe(est, sample(generation_tokens=40), 3)  # the engine restarted: 800 -> 40
    assert est.resets == 1 and est.decode == before and est.windows == 2
    est = observe(est, sample(generation_tokens=440), 4)  # the next window counts from 40, not from 800
    assert est.decode == pytest.approx(100.0)


def test_idle_member_keeps_its_last_estimate():
    est = feed([(0, sample(generation_tokens=0)), (1, sample(generation_tokens=400)), (2, sample(generation_tokens=800))])
    for t in range(3, 30):
        est = observe(est, sample(running=0.0, generation_tokens=800), t)
    assert est.decode == pytest.approx(100.0) and est.ready


def test_decode_windows_weigh_their_seconds_decayed_by_age():
    est = feed([(0, sample(generation_tokens=0)), (1, sample(generation_tokens=400)), (2, sample(generation_tokens=1200))])
    old = math.exp(-1.0 / capacity.DECAY_S)
    assert est.decode == pytest.approx((old * 100 + 200) / (old + 1))


# --- the pool's neutral ----------------------------------------------------------------------------

def ready(decode=None, prefill=None) -> SpeedEstimate:
    return SpeedEstimate(at=0.0, counters=SpeedCounters(), decode=decode, prefill=prefill, windows=5)


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_measured_rates_blend_prefill_and_decode(w):
    est = {"a": ready(decode=100, prefill=1000), "b": ready(decode=170, prefill=3000)}
    rates = capacity.service_rates(est, prefill_weight=w)
    assert rates["b"] / rates["a"] == pytest.approx(3.0**w * 1.7 ** (1 - w))
    n = neutral(["a", "b"], est, {})
    assert n.source == MEASURED and n.sources == {"a": MEASURED, "b": MEASURED}


def test_new_member_gets_the_pool_median_and_is_marked_imputed():
    est = {"a": ready(decode=100), "b": ready(decode=200), "c": ready(decode=300)}
    est["new"] = SpeedEstimate(at=0.0, counters=SpeedCounters(), decode=999.0, windows=1)  # not ready yet
    n = neutral(["a", "b", "c", "new"], est, {})
    assert n.values["new"] == pytest.approx(n.values["b"])
    assert n.sources["new"] == IMPUTED


def test_components_not_every_member_has_are_dropped():
    # b has no TTFT histogram: compare on decode alone, not prefill-for-some and decode-for-others
    est = {"a": ready(decode=100, prefill=5000), "b": ready(decode=200)}
    n = neutral(["a", "b"], est, {})
    assert n.values["b"] / n.values["a"] == pytest.approx(2.0)


@pytest.mark.parametrize(("kv", "source", "values"), [
    ({"a": 40.0, "b": 80.0}, KV_CAPACITY, {"a": 40.0, "b": 80.0}),
    ({"a": 40.0, "b": None}, capacity.EQUAL, {"a": 1.0, "b": 1.0}),
])
def test_fallbacks_without_counters(kv, source, values):
    samples = {k: sample(kv_max=v) for k, v in kv.items()}
    n = neutral(["a", "b"], {}, samples)
    assert n.source == source and n.values == values


# --- the real pages (../shared/fixtures/engines) -----------------------------------------------------

def test_vllm_dp_page_sums_counters_over_ranks(engine_page):
    s = specs.extract(engine_page("vllm_0_11_dp2.txt"), "vllm")
    c = s.counters
    assert c.generation_tokens == 27453 + 90211
    assert c.requests == 1 + 131 + 40 + 388  # every finished_reason, both ranks
    assert (c.ttft_sum, c.ttft_count) == (pytest.approx(5.2 + 301.7), 140 + 428)
    assert c.prompt_tokens is None  # this capture has no prompt counter


def test_vllm_dp_page_twice_gives_a_per_request_decode_rate(engine_page):
    text = engine_page("vllm_0_11_dp2.txt")
    first = specs.extract(text, "vllm")
    later = text.replace("27453.0", "28453.0").replace("90211.0", "92211.0")
    second = specs.extract(later, "vllm")
    est = feed([(0.0, first), (5.0, second)])
    # 3,000 tokens in 5 s over 8 + 31 running requests
    assert est.decode == pytest.approx(3000 / 5 / 39)


@pytest.mark.parametrize(("page", "engine", "expect"), [
    ("llamacpp.txt", "llamacpp", {"prompt_tokens": 1983, "generation_tokens": 4206, "slot_prompt_rate": 522.8,
                                  "slot_gen_rate": None}),  # predicted_tokens_seconds is `nan` on the capture
    ("sglang.txt", "sglang", {"gen_throughput": pytest.approx(86.508, rel=1e-3), "prompt_tokens": None}),
])
def test_other_engines_pages(engine_page, page, engine, expect):
    c = specs.extract(engine_page(page), engine).counters
    for k, v in expect.items():
        assert getattr(c, k) == v


@pytest.mark.parametrize(("page", "engine"), [("vllm_0_8_legacy.txt", "vllm"), ("triton_trtllm.txt", "triton"),
                                              ("tgi.txt", "tgi")])
def test_pages_without_speed_signals_fall_back(engine_page, page, engine):
    s = specs.extract(engine_page(page), engine)
    assert s.counters is None
    assert observe(None, s, 0.0) is None


# --- wired into the planner ---------------------------------------------------------------------------

def _pool(names):
    members = tuple(Member(n, "Common", f"10.0.0.{i + 1}", 8000, ratio=50) for i, n in enumerate(names))
    return PoolState(PoolRef("p"), "ratio-least-connections-member", members)


def test_planner_uses_measured_speed_and_says_so():
    names = ["10.0.0.1:8000", "10.0.0.2:8000"]
    pool = _pool(names)
    cfg = PoolConfig(PoolRef("p"), "vllm", mode=ModeConfig("balance"))
    memory: dict = {}
    plan = None
    for t in range(6):
        # identical load figures; the second member generates twice as fast per running request
        scrapes = {n: ScrapeResult(n, float(t), sample=sample(kv_max=40.0, generation_tokens=400.0 * t * (i + 1)))
                   for i, n in enumerate(names)}
        plan, memory = planner.plan_pool(pool, scrapes, cfg, memory, float(t), 0.0)
    assert plan.neutral == MEASURED
    by = {p.member.name: p for p in plan.members}
    assert by[names[1]].speed == pytest.approx(1.0) and by[names[0]].speed == pytest.approx(0.5)
    assert by[names[1]].speed_source == MEASURED
    assert by[names[1]].ratio > by[names[0]].ratio  # the loop leaks toward the faster member
    assert "measured service rates" in neutral_line(plan)


def test_planner_without_counters_falls_back_to_kv_capacity():
    names = ["10.0.0.1:8000", "10.0.0.2:8000"]
    cfg = PoolConfig(PoolRef("p"), "vllm", mode=ModeConfig("balance"))
    scrapes = {n: ScrapeResult(n, 0.0, sample=sample(kv_max=40.0 * (i + 1))) for i, n in enumerate(names)}
    plan, _ = planner.plan_pool(_pool(names), scrapes, cfg, {}, 0.0, 0.0)
    assert plan.neutral == KV_CAPACITY
    assert {p.speed_source for p in plan.members} == {KV_CAPACITY}


def test_planner_passes_measured_ttft_to_the_policy_and_the_plan():
    names = ["10.0.0.1:8000", "10.0.0.2:8000"]
    cfg = PoolConfig(PoolRef("p"), "vllm", mode=ModeConfig("balance"))
    n = capacity.MIN_FIRST_TOKENS
    memory: dict = {}
    plan = None
    for t in range(6):
        # the same load and decode speed; the second member's first tokens take three times as long
        scrapes = {name: ScrapeResult(name, float(t), sample=sample(
            generation_tokens=400.0 * t, prompt_tokens=1000.0 * t, ttft_sum=0.1 * (3 * i + 1) * n * t, ttft_count=n * t))
            for i, name in enumerate(names)}
        plan, memory = planner.plan_pool(_pool(names), scrapes, cfg, memory, float(t), 0.0)
    by = {p.member.name: p for p in plan.members}
    assert by[names[0]].ttft == pytest.approx(0.1) and by[names[1]].ttft == pytest.approx(0.4)
    assert by[names[0]].ratio > by[names[1]].ratio
    assert " ttft=0.40s " in by[names[1]].description  # the admin sees what the policy compared
    table = pool_table(plan)
    assert table.splitlines()[0].split()[-3:] == ["ttft", "action", "reason"]
    assert "0.40s" in next(ln for ln in table.splitlines() if ln.startswith(names[1]))
    view = pool_view(plan, "vllm", "balance", dry_run=True)
    speeds = {m["name"]: m["speed"] for m in view["members"]}
    assert speeds[names[1]]["ttft_seconds"] == pytest.approx(0.4) and speeds[names[1]]["source"] == MEASURED


@pytest.mark.parametrize(("est", "expect"), [
    ({"a": SpeedEstimate(at=0.0, counters=SpeedCounters(), prefill=1.0, ttft=0.2, windows=5)}, {"a": 0.2}),
    ({"a": SpeedEstimate(at=0.0, counters=SpeedCounters(), prefill=1.0, ttft=0.2, windows=1)}, {}),  # not ready
    ({"a": SpeedEstimate(at=0.0, counters=SpeedCounters(), decode=1.0, windows=5)}, {}),  # no TTFT measured
    ({"b": SpeedEstimate(at=0.0, counters=SpeedCounters(), prefill=1.0, ttft=0.2, windows=5)}, {}),  # not asked for
])
def test_ttfts_only_of_ready_estimates_that_measured_one(est, expect):
    assert capacity.ttfts(["a"], est) == expect
