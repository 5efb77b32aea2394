"""Invariants of the pure core as hypothesis properties (issue #6, part 3), plus the floor-share cap."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, ModeConfig, PoolConfig, SchedulerConfig, WeightsConfig
from controller.loop.reconcile import Reconciler
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult
from controller.policy import planner
from tests.fakes import FakeBigIP, FakeScraper, fake_target_for

REF = PoolRef("llm")
NOW, WALL = 10_000.0, 1_790_000_000.0
SETTINGS = settings(max_examples=min(300, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow])

ERRORS = ("timeout", "refused", "not-prometheus", "bad-value", "missing-metric", "http-500", "too-large")


@st.composite
def weights(draw) -> WeightsConfig:
    scale = draw(st.integers(2, 300))
    return WeightsConfig(
        drive=draw(st.sampled_from(["ratio", "ratio", "both", "connection_limit"])),
        scale=scale,
        floor=draw(st.integers(1, scale)),
        dead_band=draw(st.sampled_from([0.0, 0.05, 0.1, 0.3])),
        max_step=draw(st.sampled_from([0.05, 0.25, 0.5, 1.0])),
        smoothing=draw(st.sampled_from([0.0, 0.5])),
        stale_after=draw(st.sampled_from([5.0, 30.0])),
        max_floor_share=draw(st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0])),
        max_connections=draw(st.sampled_from([None, 4, 64])),
    )


sample = st.builds(
    Sample,
    waiting=st.floats(0, 500, allow_nan=False),
    running=st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),
    kv_usage=st.one_of(st.none(), st.floats(0, 1)),
    kv_max_concurrency=st.one_of(st.none(), st.floats(1, 1000)),
)


@st.composite
def situation(draw):
    """A pool as read from BIG-IP, this tick's scrapes, the observation memory and the config."""
    w = draw(weights())
    n = draw(st.integers(1, 8))
    members, scrapes, memory = [], {}, {}
    for i in range(n):
        name = f"10.0.0.{i + 1}:8000"
        ratio = draw(st.one_of(st.integers(1, 400), st.sampled_from([w.floor, w.scale, 1])))
        session = draw(st.sampled_from(["monitor-enabled"] * 5 + ["user-disabled"]))
        state = draw(st.sampled_from(["up"] * 5 + ["down"]))
        description = draw(st.sampled_from(["", "", "f5-llm-ratio: old", "owned by the DBA team"]))
        members.append(Member(name, "Common", f"10.0.0.{i + 1}", 8000, ratio, draw(st.integers(0, 100)),
                              session, state, description))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "error", "absent"]))
        if outcome == "ok":
            scrapes[name] = ScrapeResult(name, NOW, sample=draw(sample))
        elif outcome == "error":
            scrapes[name] = ScrapeResult(name, NOW, error=draw(st.sampled_from(ERRORS)), detail="x")
        seen = draw(st.sampled_from(["new", "recent", "stale"]))
        if seen != "new":
            last = NOW - (1.0 if seen == "recent" else 10 * w.stale_after)
            memory[name] = planner.Observation(first_seen=last - 100, last_fresh=last,
                                               smoothed=draw(st.one_of(st.none(), st.floats(0, 1))))
    cfg = PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=w)
    return PoolState(REF, "ratio-least-connections-member", tuple(members)), scrapes, memory, cfg


def plan(state, scrapes, memory, cfg, instance=""):
    return planner.plan_pool(state, scrapes, cfg, memory, NOW, WALL, instance)


@SETTINGS
@given(situation())
def test_every_ratio_written_is_an_integer_within_floor_and_scale(s):
    state, scrapes, memory, cfg = s
    w = cfg.weights
    p, _ = plan(*s)
    for mp in p.members:
        if "ratio" in mp.changes:
            assert isinstance(mp.ratio, int) and not isinstance(mp.ratio, bool)
            assert w.floor <= mp.ratio <= w.scale, mp
        if w.floor <= mp.member.ratio <= w.scale:
            assert w.floor <= mp.ratio <= w.scale
        if "connectionLimit" in mp.changes:  # never 0 by accident: only a deliberate lift in a pool-wide burst
            lifted = w.drive == "auto" and "lifted: pool-wide burst" in mp.reason
            assert isinstance(mp.connection_limit, int) and (mp.connection_limit >= 1 or lifted)


@SETTINGS
@given(situation())
def test_no_more_than_max_floor_share_is_sent_to_the_floor(s):
    state, scrapes, memory, cfg = s
    w = cfg.weights
    assume(w.drive in ("ratio", "both") and w.floor < w.scale)
    p, _ = plan(*s)
    active = [mp for mp in p.members if mp.member.active]
    allowed = planner.floor_allowance(len(active), w)
    already = sum(1 for mp in active if mp.member.ratio == w.floor)
    at_floor = sum(1 for mp in active if mp.ratio == w.floor)
    assert at_floor <= max(allowed, already), [(mp.member.ratio, mp.ratio, mp.action) for mp in active]
    for mp in p.members:
        if mp.action in ("floor-cap", "floor-hold"):
            assert "max_floor_share" in mp.reason


@SETTINGS
@given(situation())
def test_unknown_data_never_moves_a_member_before_stale_after(s):
    state, scrapes, memory, cfg = s
    p, _ = plan(*s)
    for mp in p.members:
        fresh = mp.member.key in scrapes and scrapes[mp.member.key].ok
        obs = memory.get(mp.member.key)
        recent = obs is None or (NOW - obs.last_fresh) < cfg.weights.stale_after
        if mp.member.active and not fresh and recent:
            assert mp.ratio == mp.member.ratio and not mp.changes, mp
        if not mp.member.active:
            assert not mp.changes


@SETTINGS
@given(situation())
def test_one_tick_moves_a_ratio_at_most_max_step(s):
    """So one bad (or wildly different) scrape cannot swing a member between floor and top. A ratio outside
    [floor, scale] (BIG-IP's default 1) steps from the nearest bound, not straight to its target."""
    state, scrapes, memory, cfg = s
    w = cfg.weights
    step = max(1, round(w.max_step * w.scale))
    p, _ = plan(*s)
    for mp in p.members:
        if mp.ratio != mp.member.ratio:
            start = min(w.scale, max(w.floor, mp.member.ratio))
            assert abs(mp.ratio - start) <= step, mp


@SETTINGS
@given(situation(), st.randoms(use_true_random=False))
def test_the_plan_is_deterministic(s, rnd):
    state, scrapes, memory, cfg = s
    first, mem1 = plan(*s)
    again, mem2 = plan(*s)
    assert first == again and mem1 == mem2
    shuffled = list(scrapes.items())
    rnd.shuffle(shuffled)
    third, _ = plan(state, dict(shuffled), dict(reversed(list(memory.items()))), cfg)
    assert third == first


@settings(max_examples=min(60, settings.default.max_examples), deadline=None)
@given(st.lists(st.lists(st.one_of(sample, st.sampled_from(ERRORS)), min_size=3, max_size=3), min_size=1, max_size=6),
       st.lists(st.integers(1, 200), min_size=3, max_size=3))
def test_dry_run_never_writes(ticks, ratios):
    clock = FakeClock()
    members = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, r) for i, r in enumerate(ratios, 1))
    bigip = FakeBigIP(PoolState(REF, "ratio-member", members))
    scraper = FakeScraper(clock)
    cfg = AppConfig(F5Config("bigip.example"), (PoolConfig(REF, "vllm"),), SchedulerConfig(pool_fetch_interval=0))
    rec = Reconciler(cfg, bigip, scraper, clock=clock, dry_run=True, target_for=fake_target_for)
    for tick in ticks:
        scraper.samples = {f"10.0.0.{i}:8000": v for i, v in enumerate(tick, 1)}
        report = rec.tick()
        clock.advance(1)
        assert report.applied == 0 and report.dry_run
    assert bigip.writes == []


# ---------------------------------------------------------------------------------------- examples


def _pool(*ratios):
    return PoolState(REF, "ratio-member", tuple(Member(f"m{i}:1", "Common", f"10.0.0.{i}", 1, r)
                                               for i, r in enumerate(ratios)))


def test_floor_cap_holds_the_excess_and_says_why():
    """Four members at 100; three report the same full queue. Half may go to the floor: one of the three
    (ties broken by name) is held above it, and its reason says so."""
    cfg = PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=WeightsConfig(max_step=1.0))
    state = _pool(100, 100, 100, 100)
    scrapes = {"m0:1": ScrapeResult("m0:1", NOW, Sample(0, kv_usage=0.0))}
    scrapes.update({k: ScrapeResult(k, NOW, Sample(50, kv_usage=1.0)) for k in ("m1:1", "m2:1", "m3:1")})
    p, _ = planner.plan_pool(state, scrapes, cfg, {}, NOW, WALL)
    by = {mp.member.key: mp for mp in p.members}
    assert [by[k].ratio for k in ("m0:1", "m1:1", "m2:1", "m3:1")] == [100, 100, 10, 10]
    assert by["m1:1"].action == "floor-hold" and not by["m1:1"].changes
    assert "3 of 4 active members would be at floor 10, max_floor_share 0.5 allows 2" in by["m1:1"].reason


def test_unknown_members_going_neutral_at_floor_are_held_first():
    """Most of the pool is stale and the only fresh members disagree: neutral is not allowed to send the
    stale majority to the floor."""
    w = WeightsConfig(max_step=1.0, stale_after=5.0)
    cfg = PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=w)
    state = _pool(100, 100, 100, 100, 100)
    scrapes = {"m0:1": ScrapeResult("m0:1", NOW, Sample(0, kv_usage=0.0)),
               "m1:1": ScrapeResult("m1:1", NOW, Sample(90, kv_usage=1.0)),
               "m2:1": ScrapeResult("m2:1", NOW, Sample(90, kv_usage=1.0))}
    old = {f"m{i}:1": planner.Observation(first_seen=0, last_fresh=NOW - 60) for i in range(5)}
    p, _ = planner.plan_pool(state, scrapes, cfg, old, NOW, WALL)
    at_floor = [mp for mp in p.members if mp.ratio == w.floor]
    assert len(at_floor) <= planner.floor_allowance(5, w) == 2
    assert all(mp.member.key in ("m1:1", "m2:1") for mp in at_floor)


def test_random_pools_respect_the_cap_when_many_members_are_slow():
    rnd = random.Random(7)
    w = WeightsConfig(max_step=1.0, max_floor_share=0.25)
    cfg = PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=w)
    state = _pool(*[100] * 8)
    scrapes = {f"m{i}:1": ScrapeResult(f"m{i}:1", NOW, Sample(rnd.choice([0, 80]), kv_usage=rnd.random()))
               for i in range(8)}
    p, _ = planner.plan_pool(state, scrapes, cfg, {}, NOW, WALL)
    assert sum(1 for mp in p.members if mp.ratio == w.floor) <= 2
