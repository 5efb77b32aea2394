"""The sideband scheduler's modes (controller.policy.sideband_modes) against the sideband's own arithmetic.

TABLE: every mode of github.com/f5devcentral/llm-inference-lb at f254c3e (core/score_calculator.py,
`_calculate_<mode>_scores`) on the same figures, with the weights of its annotated config file
(config/scheduler-config.yaml.explanation.yaml). The expected scores were computed by the sideband's own
ScoreCalculator (`python tests/sideband_reference.py <checkout>`, the harness beside this file), not by
controller.policy.sideband_modes; `test_matches_the_sidebands_own_code_on_random_pools` repeats the comparison on
random pools whenever a checkout of the sideband is found (F5LR_SIDEBAND_GIT, a bare git dir), and skips
otherwise.
"""

from __future__ import annotations

import pytest

from controller.config.schema import ModeConfig
from controller.model import Sample
from controller.policy import scoring, sideband_modes

FIGURES = {  # name: (waiting queue, KV use 0-1, running requests) per member
    "three": ([0, 3, 1], [0.2, 0.5, 0.9], [1, 2, 3]),
    "two": ([0, 0], [0.3, 0.6], [4, 8]),
    "spread4": ([0, 50, 2, 12], [0.1, 0.1, 0.4, 0.95], [0, 10, 3, 30]),
    "one": ([5], [0.5], [2]),
    "zerokv": ([1, 2], [0.0, 0.5], [0, 0]),
    "equal": ([2, 2, 2], [0.4, 0.4, 0.4], [5, 5, 5]),
    "queued": ([10, 0, 40], [0.5, 0.2, 0.7], [12, 3, 20]),
}

# (mode, (w_a, w_b, w_g[, transition_point, steepness]), figures, the sideband's scores)
TABLE = [
    ("s1", (0.2, 0.8, 0), "three", [0.84, 0.4, 0.213333333333]),
    ("s1", (0.2, 0.8, 0), "two", [0.76, 0.52]),
    ("s1", (0.2, 0.8, 0), "spread4", [0.92, 0.72, 0.672, 0.192]),
    ("s1", (0.2, 0.8, 0), "one", [0.6]),
    ("s1", (0.2, 0.8, 0), "zerokv", [1.0, 0.4]),
    ("s1", (0.2, 0.8, 0), "equal", [0.68, 0.68, 0.68]),
    ("s1", (0.2, 0.8, 0), "queued", [0.55, 0.84, 0.24]),
    ("s1_enhanced", (0.2, 0.6, 0), "three", [0.68, 0.187581835721, 0.133333333333]),
    ("s1_enhanced", (0.2, 0.6, 0), "two", [0.68, 0.2]),
    ("s1_enhanced", (0.2, 0.6, 0), "spread4", [0.68, 0.48, 0.376426901147, 0.152]),
    ("s1_enhanced", (0.2, 0.6, 0), "one", [0.5]),
    ("s1_enhanced", (0.2, 0.6, 0), "zerokv", [0.517163057008, 0.162836942992]),
    ("s1_enhanced", (0.2, 0.6, 0), "equal", [0.5, 0.5, 0.5]),
    ("s1_enhanced", (0.2, 0.6, 0), "queued", [0.278920376512, 0.68, 0.0]),
    ("s1_adaptive", (0.2, 0.8, 0), "three", [1.0, 0.439744316407, 0.153631630858]),
    ("s1_adaptive", (0.2, 0.8, 0), "two", [1.0, 0.111111111111]),
    ("s1_adaptive", (0.2, 0.8, 0), "spread4", [1.0, 0.781372868693, 0.715476255209, 0.166156619794]),
    ("s1_adaptive", (0.2, 0.8, 0), "one", [1.0]),
    ("s1_adaptive", (0.2, 0.8, 0), "zerokv", [1.0, 0.0]),
    ("s1_adaptive", (0.2, 0.8, 0), "equal", [1.0, 1.0, 1.0]),
    ("s1_adaptive", (0.2, 0.8, 0), "queued", [0.486094253999, 1.0, 0.0]),
    ("s1_ratio", (0.2, 0.8, 0), "three", [1.0, 0.057142857143, 0.0]),
    ("s1_ratio", (0.2, 0.8, 0), "two", [0.733333333333, 0.466666666667]),
    ("s1_ratio", (0.2, 0.8, 0), "spread4", [1.0, -9.0, 0.317647058824, -2.2]),
    ("s1_ratio", (0.2, 0.8, 0), "one", [-0.4]),
    ("s1_ratio", (0.2, 0.8, 0), "zerokv", [0.8, -0.2]),
    ("s1_ratio", (0.2, 0.8, 0), "equal", [0.6, 0.6, 0.6]),
    ("s1_ratio", (0.2, 0.8, 0), "queued", [-1.48, 1.0, -7.8]),
    ("s1_precise", (0.2, 0.8, 0), "three", [0.84, 0.0, 0.08]),
    ("s1_precise", (0.2, 0.8, 0), "two", [0.76, 0.52]),
    ("s1_precise", (0.2, 0.8, 0), "spread4", [0.92, 0.0, 0.28, 0.0]),
    ("s1_precise", (0.2, 0.8, 0), "one", [0.0]),
    ("s1_precise", (0.2, 0.8, 0), "zerokv", [0.8, 0.2]),
    ("s1_precise", (0.2, 0.8, 0), "equal", [0.28, 0.28, 0.28]),
    ("s1_precise", (0.2, 0.8, 0), "queued", [0.0, 0.84, 0.0]),
    ("s1_nonlinear", (0.2, 0.8, 0), "three", [1.0, 0.653061291156, 0.133333355556]),
    ("s1_nonlinear", (0.2, 0.8, 0), "two", [1.0, 0.2]),
    ("s1_nonlinear", (0.2, 0.8, 0), "spread4", [1.0, 0.800000004, 0.892346020921, 0.15200000096]),
    ("s1_nonlinear", (0.2, 0.8, 0), "one", [0.8]),
    ("s1_nonlinear", (0.2, 0.8, 0), "zerokv", [1.0, 2e-07]),
    ("s1_nonlinear", (0.2, 0.8, 0), "equal", [0.8, 0.8, 0.8]),
    ("s1_nonlinear", (0.2, 0.8, 0), "queued", [0.66200000125, 1.0, 5e-09]),
    ("s1_balanced", (0.3, 0.7, 0), "three", [0.95, 0.41, 0.23]),
    ("s1_balanced", (0.3, 0.7, 0), "two", [0.745, 0.255]),
    ("s1_balanced", (0.3, 0.7, 0), "spread4", [0.95, 0.68, 0.716847058824, 0.2552]),
    ("s1_balanced", (0.3, 0.7, 0), "one", [0.5]),
    ("s1_balanced", (0.3, 0.7, 0), "zerokv", [0.78, 0.22]),
    ("s1_balanced", (0.3, 0.7, 0), "equal", [0.5, 0.5, 0.5]),
    ("s1_balanced", (0.3, 0.7, 0), "queued", [0.5045, 0.95, 0.05]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "three", [0.785503550337, 0.492747067918, 0.249845650878]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "two", [0.726604299656, 0.273395700344]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "spread4", [0.728703365895, 0.622558481787, 0.518201390827, 0.209042267602]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "one", [0.5]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "zerokv", [0.747708091431, 0.252291908569]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "equal", [0.5, 0.5, 0.5]),
    ("s1_adaptive_distribution", (0.2, 0.8, 0), "queued", [0.437266738363, 0.804471369342, 0.213199358838]),
    ("s1_advanced", (0.2, 0.8, 0), "three", [0.782946514201, 0.484714078111, 0.259366352264]),
    ("s1_advanced", (0.2, 0.8, 0), "two", [0.751782555174, 0.248217444826]),
    ("s1_advanced", (0.2, 0.8, 0), "spread4", [0.729439701261, 0.613408943683, 0.520902604292, 0.213174526743]),
    ("s1_advanced", (0.2, 0.8, 0), "one", [0.5]),
    ("s1_advanced", (0.2, 0.8, 0), "zerokv", [0.749247846467, 0.250752153533]),
    ("s1_advanced", (0.2, 0.8, 0), "equal", [0.5, 0.5, 0.5]),
    ("s1_advanced", (0.2, 0.8, 0), "queued", [0.437368272312, 0.802239659632, 0.216127331123]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "three", [0.793878269669, 0.519056447785, 0.218663767744]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "two", [0.770380130272, 0.229619869728]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "spread4", [0.748994546165, 0.370424826771, 0.592638681117, 0.322914857547]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "one", [0.5]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "zerokv", [0.751463873433, 0.248536126567]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "equal", [0.5, 0.5, 0.5]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0), "queued", [0.438273380747, 0.782345434093, 0.242228279982]),
    ("s2", (0.4, 0.3, 0.3), "three", [0.94, 0.3, 0.296666666667]),
    ("s2", (0.4, 0.3, 0.3), "two", [0.91, 0.52]),
    ("s2", (0.4, 0.3, 0.3), "spread4", [0.97, 0.47, 0.834, 0.319]),
    ("s2", (0.4, 0.3, 0.3), "one", [0.85]),
    ("s2", (0.4, 0.3, 0.3), "zerokv", [1.0, 0.45]),
    ("s2", (0.4, 0.3, 0.3), "equal", [0.88, 0.88, 0.88]),
    ("s2", (0.4, 0.3, 0.3), "queued", [0.591176470588, 0.94, 0.09]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "three", [0.89, 0.201460557032, 0.276666666667]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "two", [0.89, 0.41]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "spread4", [0.89, 0.37827470203, 0.612359559725, 0.314]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "one", [0.7]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "zerokv", [0.711442038005, 0.208557961995]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "equal", [0.7, 0.7, 0.7]),
    ("s2_enhanced", (0.4, 0.4, 0.2), "queued", [0.442220222248, 0.89, 0.01]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "three", [1.0, 0.180612244898, 0.177777777778]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "two", [1.0, 0.4]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "spread4", [1.0, 0.488888888889, 0.698114048443, 0.23104]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "one", [1.0]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "zerokv", [1.0, 0.2]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "equal", [1.0, 1.0, 1.0]),
    ("s2_nonlinear", (0.4, 0.4, 0.2), "queued", [0.333290657439, 1.0, 0.0]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "three", [1.0, 0.306349386862, 0.294307419624]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "two", [1.0, 0.307692307692]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "spread4", [1.0, 0.516568743488, 0.828125120325, 0.316646897658]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "one", [1.0]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "zerokv", [1.0, 0.142857142857]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "equal", [1.0, 1.0, 1.0]),
    ("s2_adaptive", (0.4, 0.4, 0.2), "queued", [0.56963982374, 1.0, 0.0]),
    ("s2_advanced", (0.4, 0.4, 0.2), "three", [0.756527854645, 0.420876079208, 0.335910864282]),
    ("s2_advanced", (0.4, 0.4, 0.2), "two", [0.68203374211, 0.31796625789]),
    ("s2_advanced", (0.4, 0.4, 0.2), "spread4", [0.727479508091, 0.474474191376, 0.577414694957, 0.270044046303]),
    ("s2_advanced", (0.4, 0.4, 0.2), "one", [0.5]),
    ("s2_advanced", (0.4, 0.4, 0.2), "zerokv", [0.706423409526, 0.293576590474]),
    ("s2_advanced", (0.4, 0.4, 0.2), "equal", [0.5, 0.5, 0.5]),
    ("s2_advanced", (0.4, 0.4, 0.2), "queued", [0.447530137267, 0.781487448999, 0.23824193684]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "three", [0.770056720799, 0.488789179664, 0.256592484285]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "two", [0.74267232369, 0.25732767631]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "spread4", [0.742252813921, 0.328393149677, 0.616984886594, 0.337369047022]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "one", [0.5]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "zerokv", [0.640864919262, 0.359135080738]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "equal", [0.5, 0.5, 0.5]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3), "queued", [0.446922062737, 0.770458390612, 0.25332741649]),
    ("s1_dynamic_waiting", (0.3, 0.7, 0, 15.0, 2.0), "queued-tp15-st2", [0.438550062012, 0.776263997593, 0.250207040591]),
    ("s2_dynamic_waiting", (0.4, 0.3, 0.3, 15.0, 2.0), "queued-tp15-st2", [0.445527480106, 0.76888536731, 0.256204305152]),
]


@pytest.mark.parametrize("mode, params, figures, expected", TABLE, ids=[f"{t[0]}-{t[2]}" for t in TABLE])
def test_each_mode_scores_as_the_sideband_does(mode, params, figures, expected):
    w, c, r = FIGURES[figures.split("-")[0]]
    got = sideband_modes.scores(mode, w, c, r, ModeConfig(mode, *params))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_every_sideband_mode_is_in_the_table_and_a_policy():
    assert {t[0] for t in TABLE} == set(sideband_modes.SIDEBAND_MODES)
    assert set(sideband_modes.SIDEBAND_MODES) <= set(scoring.POLICIES)
    assert len(sideband_modes.SIDEBAND_MODES) == 16


def test_s1_is_clipped_as_in_the_sideband_when_the_weights_sum_above_one():
    samples = {"a": Sample(waiting=0, kv_usage=0.1), "b": Sample(waiting=4, kv_usage=0.4)}
    got = scoring.score(samples, ModeConfig("s1", 1.0, 1.0))
    assert got == pytest.approx(dict(zip("ab", sideband_modes.scores("s1", [0, 4], [0.1, 0.4], [0, 0], ModeConfig("s1", 1.0, 1.0)),
                                         strict=True)))
    assert got == {"a": 1.0, "b": pytest.approx(0.6)}


def test_s1_ratio_is_the_one_mode_not_clipped():
    # score_calculator.py line 392: w_a * (1 - raw waiting) ... with no max/min: a queue of 10 goes negative
    (a, b) = sideband_modes.scores("s1_ratio", [10, 0], [0.5, 0.2], [0, 0], ModeConfig("s1_ratio", 0.2, 0.8))
    assert a == pytest.approx(0.2 * (1 - 10) + 0.8 * (1 - 0.5 / 0.7)) and a < 0
    assert b == pytest.approx(0.2 + 0.8 * (1 - 0.2 / 0.7))


def test_dynamic_waiting_weights_follow_the_pools_waiting_intensity():
    mode = ModeConfig("s1_dynamic_waiting", 0.3, 0.7, transition_point=30, steepness=1.0)
    assert sideband_modes.waiting_intensity([0, 0], mode) == 0.0
    # no waiting: 0.2x waiting + 1.8x cache, rescaled to the configured sum (explanation.yaml's comment)
    wa, wb = sideband_modes.progressive_weights((0.3, 0.7), sideband_modes.S1_DYNAMIC_FACTORS, 0.0)
    assert (wa, wb) == pytest.approx((0.06 / 1.32, 1.26 / 1.32))
    heavy = sideband_modes.waiting_intensity([0, 60], mode)
    assert heavy == pytest.approx(0.964, abs=1e-3)


@pytest.mark.parametrize(
    "fn, values, expected",
    [
        (sideband_modes.min_max_normalize, [3, 3], [0.0, 0.0]),
        (sideband_modes.min_max_normalize, [1, 2, 5], [0.0, 0.25, 1.0]),
        (sideband_modes.precise_cache_normalize, [0.2, 0.4, 0.8], [0.2, 0.6, 1.0]),
        (sideband_modes.precise_cache_normalize, [0.5], [0.5]),
        (sideband_modes.precise_running_normalize, [0, 1, 3], [0.15, 0.55, 0.95]),
        (sideband_modes.ratio_based_normalize, [0.2, 0.6], [0.25, 0.75]),
        (sideband_modes.smooth_normalize, [1.0, 1.05], [0.45, 0.55]),
        (sideband_modes.smooth_normalize, [1.0, 10.0], [0.05, 0.95]),
        (sideband_modes.rank_based_normalize, [5, 1, 3], [0.9, 0.1, 0.5]),
    ],
)
def test_normalisations(fn, values, expected):
    assert fn(values) == pytest.approx(expected)


def test_the_policy_scores_members_that_lack_a_figure_at_the_pools_mean():
    samples = {
        "a": Sample(waiting=0, running=1, kv_usage=0.2),
        "b": Sample(waiting=3, running=2, kv_usage=0.5),
        "c": Sample(waiting=1, running=None, kv_usage=None),  # an engine with neither gauge
    }
    mode = ModeConfig("s1_enhanced", 0.2, 0.6)
    got = scoring.score(samples, mode)
    both = sideband_modes.scores("s1_enhanced", [0, 3], [0.2, 0.5], [1, 2], mode)
    assert [got["a"], got["b"]] == pytest.approx(both)
    assert got["c"] == pytest.approx(sum(both) / 2)
    # the s2 family needs running requests as well; nobody with every figure: all equal
    assert scoring.score({"c": samples["c"]}, ModeConfig("s2", 0.4, 0.3, 0.3)) == {"c": 1.0}


@pytest.mark.parametrize(
    "scores, expected",
    [
        # the run: scores whose shares are 34.42 / 1.83 / 45.21 / 18.54
        ({"a": 0.3442, "b": 0.0183, "c": 0.4521, "d": 0.1854}, {"a": 34.42, "b": 1.83, "c": 45.21, "d": 18.54}),
        ({"a": 1.0, "b": 0.6, "c": None}, {"a": 62.5, "b": 37.5, "c": 0.0}),
        ({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0}),
        ({"a": 1 / 3, "b": 2 / 3}, {"a": 33.33, "b": 66.67}),
    ],
)
def test_percent_is_score_over_the_sum_of_scores(scores, expected):
    # core/scheduler.py get_pool_status (f254c3e): round(score / total * 100, 2), 0.0 when total is 0
    assert sideband_modes.percents(scores) == expected


# -- against the sideband's own code, when a checkout is at hand ------------------------------------





