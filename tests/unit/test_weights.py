import pytest

from controller.config.schema import WeightsConfig
from controller.model import Sample
from controller.policy import weights

W = WeightsConfig(scale=100, floor=10, dead_band=0.1, max_step=0.5)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ({"a": 0.9, "b": 0.45}, {"a": 100, "b": 50}),
        ({"a": 0.9, "b": 0.0}, {"a": 100, "b": 10}),  # never below the floor
        ({"a": 0.5, "b": 0.5}, {"a": 100, "b": 100}),
        ({"a": 0.0, "b": 0.0}, {"a": 100, "b": 100}),  # all equally bad: no preference
        ({"a": 1.0, "b": 0.333}, {"a": 100, "b": 33}),
        ({}, {}),
    ],
)
def test_ratios_from_scores(scores, expected):
    assert weights.ratios_from_scores(scores, 100, 10) == expected


def test_ratios_are_integers_in_range_for_max_scale():
    out = weights.ratios_from_scores({"a": 1.0, "b": 1e-9}, 65535, 1)
    assert out == {"a": 65535, "b": 1}
    assert all(isinstance(v, int) for v in out.values())


@pytest.mark.parametrize(
    "current, target, expected, held",
    [
        (100, 95, 100, True),  # inside the 10% dead band
        (100, 90, 100, True),  # exactly on the band edge: still noise
        (100, 80, 80, False),
        (100, 10, 50, False),  # one tick moves at most 50 (max_step 0.5 of scale 100)
        (10, 100, 60, False),
        (1, 10, 10, False),  # below floor (BIG-IP default 1) is always corrected
        (1, 12, 12, False),
        (1, 11, 10, False),  # corrected to the floor; the step from there to 11 is inside the dead band
        (1, 100, 60, False),  # steps from the clamped 10: max_step (50) applies, not a jump to 100
        (7, 100, 60, False),  # issue 12: 7 -> 100 in one tick was wrong
        (9, 30, 30, False),
        (200, 100, 100, False),  # above scale is corrected too
        (200, 10, 50, False),  # ... and stepped from the clamped 100
        (65535, 95, 100, False),  # corrected to scale; 95 is then inside the band
        (50, 50, 50, True),
    ],
)
def test_damped_ratio(current, target, expected, held):
    assert weights.damped_ratio(current, target, W) == (expected, held)


@pytest.mark.parametrize("current", [-5, 0, 1, 7, 9, 10, 55, 100, 101, 65535])
@pytest.mark.parametrize("target", [10, 33, 60, 100])
def test_damped_ratio_never_moves_more_than_max_step_from_the_clamped_current(current, target):
    ratio, _ = weights.damped_ratio(current, target, W)
    start = weights.clamp(current, W.floor, W.scale)
    assert W.floor <= ratio <= W.scale
    assert abs(ratio - start) <= round(W.max_step * W.scale)


@pytest.mark.parametrize(
    "prev, cur, keep, expected",
    [(None, 0.8, 0.7, 0.8), (0.2, 0.8, 0.0, 0.8), (0.2, 0.8, 0.5, 0.5), (1.0, 0.0, 0.7, 0.7)],
)
def test_smooth(prev, cur, keep, expected):
    assert weights.smooth(prev, cur, keep) == pytest.approx(expected)


def test_neutral_is_median():
    assert weights.neutral_ratio({"a": 100, "b": 40, "c": 20}, W) == 40
    assert weights.neutral_ratio({}, W) == 100


@pytest.mark.parametrize(
    "sample, cfg, expected",
    [
        (Sample(0, kv_max_concurrency=42.1), WeightsConfig(), 42),
        (Sample(0, kv_max_concurrency=42.1), WeightsConfig(limit_headroom=1.5), 63),
        (Sample(0, kv_max_concurrency=42.1), WeightsConfig(max_connections=16), 16),
        (Sample(0), WeightsConfig(max_connections=16), 16),
        (Sample(0), WeightsConfig(), None),  # nothing to base a limit on
        (Sample(0, kv_max_concurrency=0.2), WeightsConfig(), 1),  # never 0: 0 is unlimited on BIG-IP
        (None, WeightsConfig(), None),
    ],
)
def test_capacity_limit(sample, cfg, expected):
    assert weights.capacity_limit(sample, cfg) == expected


@pytest.mark.parametrize("current, target, expected", [(40, 42, 40), (0, 42, 42), (40, 20, 20), (5, 0, 1)])
def test_damped_limit(current, target, expected):
    assert weights.damped_limit(current, target, 0.1) == expected
