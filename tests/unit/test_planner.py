from dataclasses import replace

import pytest

from controller.config.schema import ModeConfig, PoolConfig, WeightsConfig
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult
from controller.policy import planner

REF = PoolRef("llm")
NOW, WALL = 1000.0, 1_790_000_000.0


def member(name, ratio=100, limit=0, session="monitor-enabled", state="up", description=""):
    addr, port = name.split(":")
    return Member(name, "Common", addr, int(port), ratio, limit, session, state, description)


def pool(*members, mode="ratio-least-connections-member"):
    return PoolState(REF, mode, tuple(members))


def ok(name, waiting, kv=None, running=None, kvmax=None):
    return ScrapeResult(name, NOW, Sample(waiting, running, kv, kvmax))


def bad(name, error="timeout"):
    return ScrapeResult(name, NOW, error=error, detail="after 3s")


def cfg(**w):
    return PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=WeightsConfig(**w))


def plan(state, results, c=None, memory=None, now=NOW):
    scrapes = {r.member: r for r in results}
    return planner.plan_pool(state, scrapes, c or cfg(), memory or {}, now, WALL)


def by_key(p):
    return {mp.member.key: mp for mp in p.members}


def test_ratios_ordered_by_load():
    state = pool(member("10.0.0.1:80", 1), member("10.0.0.2:80", 1), member("10.0.0.3:80", 1))
    p, _ = plan(state, [ok("10.0.0.1:80", 0, 0.1), ok("10.0.0.2:80", 5, 0.5), ok("10.0.0.3:80", 10, 0.9)])
    r = {k: mp.ratio for k, mp in by_key(p).items()}
    assert r["10.0.0.1:80"] > r["10.0.0.2:80"] > r["10.0.0.3:80"] >= 10
    assert all(mp.action == "write" for mp in p.members)


def test_unchanged_load_writes_nothing_on_second_tick():
    state = pool(member("10.0.0.1:80", 1), member("10.0.0.2:80", 1))
    results = [ok("10.0.0.1:80", 0, 0.2), ok("10.0.0.2:80", 6, 0.7)]
    first, memory = plan(state, results, cfg(max_step=1.0))
    landed = pool(*[member(mp.member.key, mp.ratio) for mp in first.members])
    second, _ = plan(landed, results, cfg(max_step=1.0), memory, NOW + 3)
    assert first.writes and not second.writes


def test_failed_scrape_keeps_ratio_until_stale_then_neutral():
    state = pool(member("a:1", 100), member("b:1", 40), member("c:1", 77))
    results = [ok("a:1", 0, 0.1), ok("b:1", 10, 0.9), bad("c:1")]
    p, memory = plan(state, results, cfg(stale_after=30))
    c = by_key(p)["c:1"]
    assert (c.action, c.ratio, c.changes) == ("unknown-hold", 77, {})
    assert "timeout" in c.reason
    later, _ = plan(state, results, cfg(stale_after=30), memory, NOW + 31)
    c = by_key(later)["c:1"]
    targets = sorted([by_key(later)["a:1"].ratio, by_key(later)["b:1"].ratio])
    assert c.action == "unknown-neutral"
    assert targets[0] <= c.ratio <= targets[1]


def test_no_fresh_member_writes_nothing():
    state = pool(member("a:1", 5), member("b:1", 90))
    p, _ = plan(state, [bad("a:1"), bad("b:1", "refused")])
    assert not p.writes
    assert "nothing written" in p.note
    assert {mp.action for mp in p.members} == {"unknown-hold"}


def test_inactive_members_are_skipped_and_not_normalised():
    state = pool(member("a:1", 100), member("b:1", 100, session="user-disabled"), member("c:1", 100, state="down"))
    p, _ = plan(state, [ok("a:1", 0, 0.5), ok("b:1", 50, 0.9), ok("c:1", 50, 0.9)])
    m = by_key(p)
    assert m["b:1"].action == m["c:1"].action == "skip-inactive"
    assert not m["b:1"].changes and not m["c:1"].changes
    assert m["a:1"].ratio == 100  # alone among active members: best by definition


def test_dead_band_holds_small_changes():
    state = pool(member("a:1", 100), member("b:1", 52))
    p, _ = plan(state, [ok("a:1", 0, 0.0), ok("b:1", 10, 0.0)])  # b target 50: within 10% of 52
    assert by_key(p)["b:1"].action == "dead-band" and not p.writes


def test_max_step_bounds_one_tick():
    state = pool(member("a:1", 100), member("b:1", 100))
    p, _ = plan(state, [ok("a:1", 0, 0.0), ok("b:1", 10, 1.0)], cfg(max_step=0.25))
    assert by_key(p)["b:1"].ratio == 75


def test_smoothing_uses_observed_memory():
    state = pool(member("a:1", 100), member("b:1", 100))
    _, memory = plan(state, [ok("a:1", 0, 0.0), ok("b:1", 0, 0.0)], cfg(smoothing=0.5))
    p, _ = plan(state, [ok("a:1", 0, 0.0), ok("b:1", 10, 1.0)], cfg(smoothing=0.5, max_step=1.0), memory, NOW + 3)
    b = by_key(p)["b:1"]
    assert b.score == pytest.approx(0.5)  # half of the jump from 1.0 to 0.0
    assert b.ratio == 50


@pytest.mark.parametrize(
    "drive, queue, expect_ratio_change, expect_limit",
    [("ratio", True, True, 0), ("connection_limit", False, False, 108), ("both", False, True, 108),
     # auto (the default): ratios, and limits only where LTM queues what a limit holds back
     ("auto", False, True, 0), ("auto", True, True, 108)],
)
def test_drive_modes(drive, queue, expect_ratio_change, expect_limit):
    """b's engine queues 40 behind the 100 it runs: its limit becomes running + limit_queue (8), so LTM
    holds the rest (never kv_cache_max_concurrency, 42, which would cut what it runs by more than half)."""
    state = replace(pool(member("a:1", 100), member("b:1", 100)), queue_on_connection_limit=queue)
    p, _ = plan(state, [ok("a:1", 0, 0.0, running=100, kvmax=42.1), ok("b:1", 40, 1.0, running=100, kvmax=42.1)],
                cfg(drive=drive))
    b = by_key(p)["b:1"]
    assert (b.ratio != 100) == expect_ratio_change
    assert b.connection_limit == expect_limit
    assert "connectionLimit" in b.changes if expect_limit else "connectionLimit" not in b.changes


def test_gui_note_written_only_with_a_change_and_never_over_foreign_text():
    foreign, ours = "owned by the DBA team", "f5-llm-ratio: old"
    state = pool(member("a:1", 100), member("b:1", 100, description=foreign), member("c:1", 100, description=ours))
    p, _ = plan(state, [ok("a:1", 0, 0.0), ok("b:1", 10, 1.0), ok("c:1", 10, 1.0)])
    m = by_key(p)
    assert "description" not in m["a:1"].changes  # unchanged ratio: no note on its own
    assert "description" not in m["b:1"].changes and "ratio" in m["b:1"].changes
    assert m["c:1"].changes["description"].startswith("f5-llm-ratio: score 0.00 q=10 kv=100% 2026-")


def test_departed_members_are_forgotten():
    state = pool(member("a:1"), member("b:1"))
    _, memory = plan(state, [ok("a:1", 0), ok("b:1", 1)])
    _, memory = plan(pool(member("a:1")), [ok("a:1", 0)], memory=memory)
    assert set(memory) == {"a:1"}


def _burst_state(queue=True):
    members = [member(f"m{i}:1", 100, limit=20) for i in range(4)]
    return replace(pool(*members), queue_on_connection_limit=queue)


def _burst_scrapes(queueing):
    return [ok(f"m{i}:1", 40 if i < queueing else 0, 0.9, running=20 if i < queueing else 12) for i in range(4)]


def test_limits_are_lifted_in_a_pool_wide_burst_and_say_why():
    """Half the engines queue 40 behind the 20 they run: LTM's FIFO queue would make every request wait
    its turn, so the limits are lifted and each engine queues its own share (least connections)."""
    p, _ = plan(_burst_state(), _burst_scrapes(2), cfg(drive="auto"))
    for mp in p.members:
        assert mp.connection_limit == 0 and mp.changes["connectionLimit"] == 0
        assert "lifted: pool-wide burst" in mp.reason


def test_one_queueing_engine_gets_a_limit_from_its_queue():
    p, _ = plan(_burst_state(), _burst_scrapes(1), cfg(drive="auto"))
    m = by_key(p)
    assert m["m0:1"].connection_limit == 20 + 8  # running + limit_queue
    assert all(m[f"m{i}:1"].connection_limit == 20 for i in (1, 2, 3))  # not queueing: left alone


def test_the_opt_in_goodput_mode_keeps_its_limits_in_a_burst():
    """With queueTimeLimit managed, LTM's queue resets what waits too long: that is the point, so the
    limits stay driven by each engine's queue."""
    p, _ = plan(_burst_state(), _burst_scrapes(2), cfg(drive="auto", queue_time_limit="slo"))
    m = by_key(p)
    assert m["m0:1"].connection_limit == 28 and m["m2:1"].connection_limit == 20


def test_a_balance_pool_in_a_burst_says_so_in_the_reason():
    c = PoolConfig(REF, "vllm", mode=ModeConfig("balance", 0.5, 0.5), weights=WeightsConfig(drive="ratio"))
    p, _ = plan(pool(*[member(f"m{i}:1", 100) for i in range(4)]), _burst_scrapes(2), c)
    assert all("pool-wide burst: ratios relax toward equal" in mp.reason for mp in p.members)
