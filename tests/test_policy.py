import pytest

from controller import policy
from controller.config import ModeConfig
from controller.model import Sample

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
    got = policy.score(samples, mode)
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k])


def test_min_max_equal_values_are_zero():
    assert policy.min_max({"a": 3.0, "b": 3.0}) == {"a": 0.0, "b": 0.0}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown scoring mode"):
        policy.score({"a": Sample(1)}, ModeConfig("nope"))


# --- closed-loop policies (balance, queue-balance) and the open-loop kv-capacity ---------------------

BAL = ModeConfig("balance", w_a=0.5, w_b=0.5)


def _ctx(**current):
    return policy.Context(current=current, scale=100)


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
def test_balance_table(samples, current, expect):
    got = policy.score(samples, BAL, _ctx(**current))
    assert got == pytest.approx(expect, rel=1e-6)


def test_balance_pressure_uses_kv_and_queue_share():
    assert policy.pressure(Sample(0, running=3, kv_usage=0.4), BAL) == pytest.approx(0.2)
    assert policy.pressure(Sample(4, running=3, kv_usage=1.0), BAL) == pytest.approx(1.0)
    # no KV metric: occupancy running/(running+waiting+1) stands in
    assert policy.pressure(Sample(0, running=3), BAL) == pytest.approx(0.5 * 0.75)


def test_queue_balance_ignores_kv():
    s = {"a": Sample(0, running=4, kv_usage=0.9), "b": Sample(0, running=4, kv_usage=0.1)}
    got = policy.score(s, ModeConfig("queue-balance"), _ctx(a=80, b=60))
    assert got == pytest.approx({"a": 80, "b": 60})


def test_kv_capacity_is_proportional_to_kv_concurrency():
    s = {"a": Sample(0, kv_max_concurrency=10.5), "b": Sample(0, kv_max_concurrency=24.4), "c": Sample(0, running=8, kv_usage=0.5)}
    assert policy.score(s, ModeConfig("kv-capacity")) == pytest.approx({"a": 10.5, "b": 24.4, "c": 16.0})


def test_new_policies_are_registered_and_empty_is_empty():
    for name in ("balance", "queue-balance", "kv-capacity"):
        assert name in policy.POLICIES
        assert policy.score({}, ModeConfig(name)) == {}
