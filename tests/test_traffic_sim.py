"""Smoke tests of the traffic benchmark's simulator core (bench/traffic.py): small and fast."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import traffic as T  # noqa: E402

from controller.sim import trace as tr  # noqa: E402

TINY = T.Scenario("tiny-hetero", "tiny", "hetero4", "sample", (0.7,), goal="hetero")


@pytest.fixture(autouse=True)
def tiny_scenario(monkeypatch):
    monkeypatch.setitem(T.SCENARIOS, TINY.key, TINY)


def run(contender, seed=T.SEED, duration=90.0, load=0.7):
    return T.Sim(TINY, load, T.CONTENDERS[contender], duration=duration, seed=seed).run().summary()


def test_every_request_is_accounted_for():
    r = run("lc")
    assert r["n"] > 500
    sim = T.Sim(TINY, 0.7, T.CONTENDERS["lc"], duration=90.0)
    res = sim.run()
    assert len(res.ttft) + res.rejected == res.n
    assert not any(sim.outstanding) and not sim.ltm_queue


def test_oracle_beats_round_robin_on_a_heterogeneous_pool():
    rr, oracle = run("rr", load=0.85), run("oracle", load=0.85)
    assert oracle["p99"] < rr["p99"]
    assert oracle["mean"] < rr["mean"]


def test_same_seed_same_result_for_random_and_controlled_contenders():
    for c in ("sideband", "balance-rlc"):
        a, b = run(c, duration=60.0), run(c, duration=60.0)
        for k in ("p50", "p99", "queue_mean", "writes_per_min"):
            assert a[k] == b[k]


def test_controller_writes_ratios_and_they_take_effect():
    sim = T.Sim(TINY, 0.85, T.CONTENDERS["balance-rlc"], duration=90.0)
    res = sim.run()
    assert res.writes > 0
    assert all(1 <= v.ratio <= 100 for v in sim.views)
    assert len({v.ratio for v in sim.views}) > 1  # unequal engines end up with unequal ratios


def test_connection_limits_queue_in_ltm():
    sim = T.Sim(TINY, 0.85, T.CONTENDERS["connlimit"], duration=60.0)
    res = sim.run()
    assert all(v.connection_limit > 0 for v in sim.views)
    assert len(res.ttft) == res.n


def test_bursts_keep_the_mean_rate():
    base = [tr.TraceRequest(i * 0.1, 10, 10) for i in range(6000)]
    warped = T._warp(base, 300.0, 30.0, 2.5)
    assert len(warped) == len(base)
    assert warped[-1].t == pytest.approx(base[-1].t, rel=0.02)
    in_burst = sum(1 for r in warped if r.t % 300.0 < 30.0)
    assert in_burst / len(warped) == pytest.approx(2.5 * 30 / (2.5 * 30 + 270), rel=0.05)
