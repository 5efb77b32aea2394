import math

import pytest

from controller.config.schema import ModeConfig
from controller.model import Sample
from controller.policy import scoring

S1 = ModeConfig("s1", w_a=0.5, w_b=0.5)
S1_SEED = ModeConfig("s1", w_a=0.8, w_b=0.2)


@pytest.mark.parametrize(
    "samples, mode, expected",
    [
        # Waiting 0..10 normalised; kv straight in.
        ({"a": Sample(0, kv_usage=0.2), "b": Sample(10, kv_usage=0.6)}, S1, {"a": 0.9, "b": 0.2}),
        ({"a": Sample(0, kv_usage=0.2), "b": Sample(10, kv_usage=0.6)}, S1_SEED, {"a": 0.96, "b": 0.08}),
        # Equal queues: nobody is worse on the queue term.
        ({"a": Sample(5, kv_usage=0.5), "b": Sample(5, kv_usage=0.5)}, S1, {"a": 0.75, "b": 0.75}),
        # Middle member normalised to 0.5.
        ({"a": Sample(0, kv_usage=0), "b": Sample(4, kv_usage=0), "c": Sample(8, kv_usage=0)}, S1, {"a": 1.0, "b": 0.75, "c": 0.5}),
        # No KV metric: scored on queue alone (queue term takes both weights).
        ({"a": Sample(0), "b": Sample(9)}, S1_SEED, {"a": 1.0, "b": 0.0}),
        ({"a": Sample(2)}, S1, {"a": 1.0}),
        ({}, S1, {}),
    ],
)
def test_s1_table(samples, mode, expected):
    got = scoring.score(samples, mode)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k])


def test_min_max_equal_values_are_zero():
    assert scoring.min_max({"a": 3.0, "b": 3.0}) == {"a": 0.0, "b": 0.0}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown scoring mode"):
        scoring.score({"a": Sample(1)}, ModeConfig("nope"))


# --- closed-loop policies (balance, queue-balance) and the open-loop kv-capacity ---------------------

BAL = ModeConfig("balance", w_a=0.5, w_b=0.5)


def _ctx(**current):
    return scoring.Context(current=current, scale=100)


@pytest.mark.parametrize(
    "samples, current, expect",
    [
        # Equal pressure: ratios kept as read from BIG-IP.
        ({"a": Sample(0, running=4, kv_usage=0.2), "b": Sample(0, running=4, kv_usage=0.2)}, {"a": 100, "b": 40}, {"a": 100, "b": 40}),
        # A queue on a: a loses share, b gains; multiplicative around the current ratios.
        ({"a": Sample(10, running=9, kv_usage=0.5), "b": Sample(0, running=9, kv_usage=0.5)}, {"a": 100, "b": 100},
         {"a": 100 * 2.718281828 ** -0.5, "b": 100 * 2.718281828 ** 0.5}),
        # BIG-IP's default ratio 1 (not ours) counts as neutral: the median of the set ones, else scale.
        ({"a": Sample(0, running=1, kv_usage=0.1), "b": Sample(0, running=1, kv_usage=0.1)}, {"a": 1, "b": 1}, {"a": 100, "b": 100}),
        ({"a": Sample(0, running=1, kv_usage=0.1), "b": Sample(0, running=1, kv_usage=0.1)}, {"a": 50, "b": 1}, {"a": 50, "b": 50}),
    ],
)
def test_balance_v1_table(samples, current, expect):
    got = scoring.score(samples, ModeConfig("balance-v1", w_a=0.5, w_b=0.5), _ctx(**current))
    assert got == pytest.approx(expect, rel=1e-6)


def test_balance_pressure_uses_kv_and_queue_share():
    assert scoring.pressure(Sample(0, running=3, kv_usage=0.4), BAL) == pytest.approx(0.2)
    assert scoring.pressure(Sample(4, running=3, kv_usage=1.0), BAL) == pytest.approx(1.0)
    # no KV metric: occupancy running/(running+waiting+1) stands in
    assert scoring.pressure(Sample(0, running=3), BAL) == pytest.approx(0.5 * 0.75)


def test_queue_balance_ignores_kv():
    s = {"a": Sample(0, running=4, kv_usage=0.9), "b": Sample(0, running=4, kv_usage=0.1)}
    same_kv = {"a": Sample(0, running=4, kv_usage=0.5), "b": Sample(0, running=4, kv_usage=0.5)}
    got = scoring.score(s, ModeConfig("queue-balance"), _ctx(a=80, b=60))
    assert got == pytest.approx(scoring.score(same_kv, ModeConfig("queue-balance"), _ctx(a=80, b=60)))
    assert got["a"] / got["b"] < 80 / 60  # only the leak toward equal ratios acts


def test_kv_capacity_is_proportional_to_kv_concurrency():
    s = {"a": Sample(0, kv_max_concurrency=10.5), "b": Sample(0, kv_max_concurrency=24.4), "c": Sample(0, running=8, kv_usage=0.5)}
    assert scoring.score(s, ModeConfig("kv-capacity")) == pytest.approx({"a": 10.5, "b": 24.4, "c": 16.0})


def test_new_policies_are_registered_and_empty_is_empty():
    for name in ("balance", "balance-v1", "balance-v2", "queue-balance", "kv-capacity"):
        assert name in scoring.POLICIES
        assert scoring.score({}, ModeConfig(name)) == {}


# --- the default `balance`: log pressure, dead zone, per-tick clip, leak toward equal ratios -----------

E = 2.718281828459045
LEAK, DZ, CLIP, GAIN = scoring.BALANCE_LEAK, scoring.BALANCE_DEAD_ZONE, scoring.BALANCE_MAX_MOVE, scoring.BALANCE_GAIN


def _q(s):
    return math.log1p(scoring.pressure(s, BAL, scoring.BALANCE_KV_POWER))


@pytest.mark.parametrize(
    "samples, current, expect",
    [
        # Equal pressure and equal ratios: nothing moves.
        ({"a": Sample(0, running=4, kv_usage=0.2), "b": Sample(0, running=4, kv_usage=0.2)}, {"a": 100, "b": 100},
         {"a": 100, "b": 100}),
        # Equal pressure, unequal ratios: only the leak acts, 10% of the way (in logs) to the geometric mean.
        ({"a": Sample(0, running=4, kv_usage=0.2), "b": Sample(0, running=4, kv_usage=0.2)}, {"a": 100, "b": 25},
         {"a": 100 * (50 / 100) ** LEAK, "b": 25 * (50 / 25) ** LEAK}),
        # A pressure difference inside the dead zone (log1p(0.2) vs log1p(0.16): 0.033 apart, each 0.017 from
        # the mean) is ignored.
        ({"a": Sample(0, running=4, kv_usage=0.4), "b": Sample(0, running=4, kv_usage=0.32)}, {"a": 100, "b": 100},
         {"a": 100, "b": 100}),
        # A large queue on a: the move is clipped at ±BALANCE_MAX_MOVE (~10% per tick), whatever the gap.
        ({"a": Sample(40, running=4, kv_usage=1.0), "b": Sample(0, running=4, kv_usage=0.1)}, {"a": 100, "b": 100},
         {"a": 100 * E ** -CLIP, "b": 100 * E ** CLIP}),
        # BIG-IP's default ratio 1 (not ours) still counts as neutral.
        ({"a": Sample(0, running=1, kv_usage=0.1), "b": Sample(0, running=1, kv_usage=0.1)}, {"a": 1, "b": 1},
         {"a": 100, "b": 100}),
    ],
)
def test_balance_table(samples, current, expect):
    got = scoring.score(samples, BAL, _ctx(**current))
    assert got == pytest.approx(expect, rel=1e-6)


def test_balance_small_gap_outside_dead_zone_is_gain_times_excess():
    s = {"a": Sample(0, running=4, kv_usage=0.75), "b": Sample(0, running=4, kv_usage=0.5)}
    gap = (_q(s["a"]) - _q(s["b"])) / 2  # each member's distance from the mean
    assert DZ < gap and GAIN * (gap - DZ) < CLIP
    got = scoring.score(s, BAL, _ctx(a=100, b=100))
    assert got == pytest.approx({"a": 100 * E ** (-GAIN * (gap - DZ)), "b": 100 * E ** (GAIN * (gap - DZ))})


def test_balance_persistent_gap_holds_ratios_apart_and_noise_decays():
    """Iterate the policy alone (no planner): a persistent pressure gap settles at a fixed spread set by
    clip/leak; alternating noise of the same size leaves the ratios near equal."""
    hot, cold = Sample(20, running=4, kv_usage=0.9), Sample(0, running=4, kv_usage=0.2)
    cur = {"a": 100.0, "b": 100.0}
    for _ in range(200):
        cur = scoring.balance_step({"a": hot, "b": cold}, BAL, scoring.Context(current=cur, scale=10**6))
    spread = math.log(cur["b"] / cur["a"])
    assert spread == pytest.approx(2 * CLIP / LEAK, rel=1e-3)  # fixed point of leak vs clipped push (no KV figure: equal neutral)
    cur = {"a": 100.0, "b": 100.0}
    for i in range(201):
        pair = {"a": hot, "b": cold} if i % 2 else {"a": cold, "b": hot}
        cur = scoring.balance_step(pair, BAL, scoring.Context(current=cur, scale=10**6))
    assert abs(math.log(cur["b"] / cur["a"])) <= 2 * CLIP + 1e-9


def test_balance_steps_are_pure_and_registered():
    s = {"a": Sample(3, running=4, kv_usage=0.6), "b": Sample(0, running=4, kv_usage=0.2)}
    ctx = _ctx(a=70, b=90)
    assert scoring.score(s, BAL, ctx) == scoring.score(s, BAL, ctx)
    assert scoring.POLICIES["balance"] is scoring.balance
    assert scoring.score({"a": s["a"]}, BAL, _ctx(a=70)) == pytest.approx({"a": 70})  # one member: kept


def test_balance_leaks_toward_kv_capacity_prior():
    """Equal pressure: each ratio moves LEAK of the way (in logs) toward ratios proportional to KV capacity,
    at the pool's current geometric mean; without the figure on every member, toward equal ratios."""
    s = {"a": Sample(0, running=2, kv_usage=0.2, kv_max_concurrency=10.0),
         "b": Sample(0, running=2, kv_usage=0.2, kv_max_concurrency=40.0)}
    got = scoring.score(s, BAL, _ctx(a=100, b=100))
    assert got == pytest.approx({"a": 100 * 0.5 ** LEAK, "b": 100 * 2.0 ** LEAK})  # neutral 50 / 200
    s["a"] = Sample(0, running=2, kv_usage=0.2)
    assert scoring.score(s, BAL, _ctx(a=100, b=100)) == pytest.approx({"a": 100, "b": 100})
    # equal capacities (a homogeneous pool): the prior changes nothing
    same = {k: Sample(0, running=2, kv_usage=0.2, kv_max_concurrency=24.0) for k in "ab"}
    assert scoring.score(same, BAL, _ctx(a=100, b=25)) == pytest.approx({"a": 100 * 0.5 ** LEAK, "b": 25 * 2.0 ** LEAK})


# --- large pools: the queue term weighs BALANCE_LARGE_POOL_QUEUE_BOOST times more ---------------------

HOT = Sample(4, running=4, kv_usage=0.2)


def _pool(n, hot=HOT):
    """n members at running 4, KV 0.2 and no queue, except m0 (`hot`)."""
    s = {f"m{i}": Sample(0, running=4, kv_usage=0.2) for i in range(n)}
    s["m0"] = hot
    return s


def _expected_other(n, w_a, w_b):
    """The ratio (from 50) of a member without a queue, by the formula, for pressure weights w_a, w_b."""
    kv = 0.2 ** scoring.BALANCE_KV_POWER
    p_hot = (w_a * 4 / 5 + w_b * kv) / (w_a + w_b)
    p_cold = (w_b * kv) / (w_a + w_b)
    q_hot, q_cold = math.log1p(p_hot), math.log1p(p_cold)
    mean = (q_hot + (n - 1) * q_cold) / n
    return 50 * math.exp(-max(-CLIP, min(CLIP, GAIN * scoring.shrink(q_cold - mean, DZ))))


@pytest.mark.parametrize(
    "n, name, w_a, w_b",
    [
        (7, "balance", 0.5, 0.5),     # below BALANCE_LARGE_POOL: configured weights
        (8, "balance", 1.5, 0.5),     # 8+ members: w_a x 3 (0.75 / 0.25 after normalising)
    ],
)
def test_balance_large_pool_queue_boost_table(n, name, w_a, w_b):
    got = scoring.score(_pool(n), ModeConfig(name, w_a=0.5, w_b=0.5), _ctx(**{f"m{i}": 50 for i in range(n)}))
    assert got["m1"] == pytest.approx(_expected_other(n, w_a, w_b), rel=1e-9)
    assert got["m0"] == pytest.approx(50 * E ** -CLIP)  # the queued member: clipped cut either way


def test_balance_equals_v2_below_large_pool_and_differs_from_it_above():
    assert scoring.BALANCE_LARGE_POOL == 8 and scoring.BALANCE_LARGE_POOL_QUEUE_BOOST == 3.0
    for n in range(1, 8):
        s, ctx = _pool(n), _ctx(**{f"m{i}": 40 + i for i in range(n)})
        assert scoring.score(s, BAL, ctx) == scoring.balance_step(s, BAL, ctx, large_pool_queue_boost=1.0)
        assert scoring.score(s, ModeConfig("balance-kv"), ctx) == scoring.score(s, ModeConfig("balance-v2"), ctx)
    s, ctx = _pool(8), _ctx(**{f"m{i}": 50 for i in range(8)})
    assert scoring.score(s, BAL, ctx)["m1"] != pytest.approx(scoring.balance_step(s, BAL, ctx, large_pool_queue_boost=1.0)["m1"])
    # a KV-only mode (w_a = 0) has no queue term to boost; queue-balance (w_b = 0) is unchanged by scaling
    kv_only = ModeConfig("balance", w_a=0.0, w_b=1.0)
    assert scoring.score(s, kv_only, ctx) == scoring.balance_step(s, kv_only, ctx, large_pool_queue_boost=1.0)
    assert scoring.score(s, ModeConfig("queue-balance"), ctx) == pytest.approx(
        scoring.balance_v2(s, ModeConfig("queue-balance", w_a=1.0, w_b=0.0), ctx))
    assert scoring.POLICIES["balance-v2"] is scoring.balance_v2


# --- the measured-speed neutral (controller.engines.capacity) ------------------------------------------------

def test_balance_leaks_toward_the_measured_neutral_not_kv():
    """Equal pressure, equal KV capacity, one member measured twice as fast: only the leak moves the ratios."""
    s = {k: Sample(0, running=4, kv_usage=0.2, kv_max_concurrency=40.0) for k in ("a", "b")}
    ctx = scoring.Context(current={"a": 100, "b": 100}, scale=100, neutral={"a": 1.0, "b": 2.0}, neutral_source="measured")
    got = scoring.score(s, BAL, ctx)
    half = scoring.SPEED_PRIOR * math.log(2) / 2
    assert got == pytest.approx({"a": 100 * E ** (-LEAK * half), "b": 100 * E ** (LEAK * half)})
    # the previous default ignores the measured neutral and leaks toward equal KV capacity: nothing moves
    assert scoring.score(s, ModeConfig("balance-kv"), ctx) == pytest.approx({"a": 100, "b": 100})


def test_kv_use_weighs_only_when_the_cache_fills():
    """With the cubic KV term, 10% vs 30% KV use is inside the dead zone; 30% vs 90% is not."""
    low = {"a": Sample(0, running=4, kv_usage=0.1), "b": Sample(0, running=4, kv_usage=0.3)}
    assert scoring.score(low, BAL, _ctx(a=100, b=100)) == pytest.approx({"a": 100, "b": 100})
    assert scoring.score(low, ModeConfig("balance-kv"), _ctx(a=100, b=100))["b"] < 100  # linear: it moved
    high = {"a": Sample(0, running=4, kv_usage=0.3), "b": Sample(0, running=4, kv_usage=0.9)}
    assert scoring.score(high, BAL, _ctx(a=100, b=100))["b"] < 100


# --- the TTFT term: how the loop sees speed at the load it gives ----------------------------------------

@pytest.mark.parametrize(("ttft", "dz", "expect"), [
    ({"a": 0.1, "b": 0.1}, 0.2, {"a": 0.0, "b": 0.0}),  # equal: nobody is slower
    ({"a": 0.1, "b": 0.11}, 0.2, {"a": 0.0, "b": 0.0}),  # 10% apart: inside the dead zone
    ({"a": 0.1, "b": 0.4}, 0.2, {"a": -(math.log(2) - 0.2), "b": math.log(2) - 0.2}),  # 4x: log 2 each side
    ({"a": 0.1, "b": 0.4}, 0.0, {"a": -math.log(2), "b": math.log(2)}),
    ({"a": 0.1}, 0.2, {"a": 0.0, "b": 0.0}),  # b not measured: no term for anybody
    ({"a": 0.1, "b": 0.0}, 0.2, {"a": 0.0, "b": 0.0}),
])
def test_ttft_term_table(ttft, dz, expect):
    assert scoring.ttft_term(["a", "b"], ttft, dz) == pytest.approx(expect)


def _even(n: int) -> dict[str, Sample]:
    return {f"m{i}": Sample(0, running=4, kv_usage=0.2) for i in range(n)}


def test_slower_first_tokens_lose_share_and_equal_ones_do_not_move():
    s = _even(2)
    ctx = scoring.Context(current={"m0": 100, "m1": 100}, scale=100, ttft={"m0": 0.1, "m1": 0.3})
    got = scoring.score(s, BAL, ctx)
    push = scoring.BALANCE_TTFT_WEIGHT * (math.log(0.3 / 0.1) / 2 - scoring.BALANCE_TTFT_DEAD_ZONE)
    step = min(CLIP, GAIN * max(0.0, push - DZ))
    assert step > 0
    assert got == pytest.approx({"m0": 100 * E ** step, "m1": 100 * E ** -step})
    same = scoring.Context(current={"m0": 100, "m1": 100}, scale=100, ttft={"m0": 0.2, "m1": 0.2})
    assert scoring.score(s, BAL, same) == pytest.approx({"m0": 100, "m1": 100})
    # the variants from before the term ignore it
    for name in ("balance-rate", "balance-kv", "balance-v2", "balance-v1"):
        assert scoring.score(s, ModeConfig(name), ctx) == pytest.approx({"m0": 100, "m1": 100})


def test_ttft_term_is_off_in_a_large_pool():
    n = scoring.BALANCE_LARGE_POOL
    s = _even(n)
    ttft = {k: 0.1 for k in s} | {"m0": 0.1 * math.exp(1.15)}
    ctx = scoring.Context(current=dict.fromkeys(s, 100), scale=100, ttft=ttft)
    assert scoring.BALANCE_TTFT_WEIGHT_LARGE == 0.0
    assert scoring.score(s, BAL, ctx) == pytest.approx(dict.fromkeys(s, 100))
    small = scoring.balance_step(s, BAL, ctx, ttft_weight_large=scoring.BALANCE_TTFT_WEIGHT)
    assert small["m0"] < 100  # the same pool with the small-pool weight would move


def test_min_leak_reaches_the_neutral_when_the_pressure_is_quiet():
    s = _even(2)
    ctx = scoring.Context(current={"m0": 100, "m1": 100}, scale=100, neutral={"m0": 1.0, "m1": 4.0},
                         neutral_source="measured")
    cur: dict[str, float] = {"m0": 100.0, "m1": 100.0}
    for _ in range(60):
        cur = scoring.balance_step(s, BAL, scoring.Context(current=cur, scale=10**6, neutral=ctx.neutral,
                                                         neutral_source="measured"), min_leak=0.1)
    assert cur["m1"] / cur["m0"] == pytest.approx(4.0 ** scoring.SPEED_PRIOR, rel=1e-6)


# --- pool-wide bursts: least connections while every engine is behind ---------------------------------

def _queueing(n_queueing: int, n: int) -> dict[str, Sample]:
    """n members running 8 each; the first n_queueing also keep 4 waiting (share 4/9, over BURST_QUEUE)."""
    return {f"m{i}": Sample(4 if i < n_queueing else 0, running=8, kv_usage=0.5) for i in range(n)}


@pytest.mark.parametrize(
    "n_queueing, n, expect",
    [
        (0, 4, False), (1, 4, False), (2, 4, True), (4, 4, True),  # half of the pool is enough
        (1, 2, False), (2, 2, True),  # ... but one member queueing alone is that member's problem
        (3, 8, False), (4, 8, True), (8, 8, True),
        (1, 1, False),  # a pool of one has nobody to balance against
        (16, 16, False),  # pools over BURST_POOL keep steering (writes and p50 measured worse there)
    ],
)
def test_in_burst_table(n_queueing, n, expect):
    assert scoring.in_burst(_queueing(n_queueing, n)) is expect


def test_a_small_queue_is_not_a_burst():
    samples = {k: Sample(0.4, running=9, kv_usage=0.5) for k in ("a", "b", "c", "d")}  # 0.04 of what each runs
    assert not scoring.in_burst(samples)


def test_in_a_burst_nothing_is_pushed_and_ratios_relax_toward_equal():
    """a queues much more than the others, which outside a burst moves share away from it; in a burst the
    ratios only leak toward their geometric mean by BURST_LEAK."""
    samples = {"a": Sample(40, running=8, kv_usage=1.0), "b": Sample(4, running=8, kv_usage=0.5),
               "c": Sample(4, running=8, kv_usage=0.5), "d": Sample(0, running=8, kv_usage=0.5)}
    current = {"a": 100, "b": 100, "c": 50, "d": 50}
    got = scoring.score(samples, BAL, _ctx(**current))
    mean = math.exp(sum(math.log(v) for v in current.values()) / 4)
    expect = {k: v * (mean / v) ** scoring.BURST_LEAK for k, v in current.items()}
    assert got == pytest.approx(expect, rel=1e-6)
    steered = scoring.balance_step(samples, BAL, _ctx(**current), burst_queue=0.0)  # the rule off:
    assert steered["a"] < 100 * (mean / 100) ** LEAK and steered["d"] > 50 * (mean / 50) ** LEAK  # a pushed, d pulled


def test_after_a_burst_the_pressure_steers_again():
    calm = {"a": Sample(4, running=8, kv_usage=0.9), "b": Sample(0, running=8, kv_usage=0.2),
            "c": Sample(0, running=8, kv_usage=0.2), "d": Sample(0, running=8, kv_usage=0.2)}
    assert not scoring.in_burst(calm)
    got = scoring.score(calm, BAL, _ctx(a=100, b=100, c=100, d=100))
    assert got["a"] < 100 < got["b"]
