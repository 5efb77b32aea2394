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
