"""The sideband scheduler's scoring modes, as policies: its s1 and s2 families with its own formulas.

Every formula here is re-implemented from the sideband scheduler's source, github.com/f5devcentral/
llm-inference-lb at commit f254c3e, file `core/score_calculator.py` (cited per function as
`score_calculator.py:<line>`, the line of the sideband's `def`), and its parameters from
`config/config_loader.py` (`ModeConfig`: w_a, w_b, w_g, transition_point, steepness). None of its code
is copied; the arithmetic is the same so the same figures give the same scores (tests/unit/test_sideband_modes.py
checks each mode against values computed the sideband's way).

What the sideband does and this module does too:
* a member is scored only if it has every figure the mode reads (waiting queue and KV use; the s2
  family also running requests); the normalisations run over those members only;
* every mode but `s1_ratio` clips the score into [0, 1] (`max(0.0, min(1.0, score))`);
* `power` of `s1_nonlinear` is *not* read from the config by the sideband (its ModeConfig has no such
  field, so `getattr(mode_config, 'power', 2.0)` is always 2.0): the exponent here is 2.0 as well, and
  the config reader says so when a file sets it.

Where this differs, because the controller must give every fresh member a ratio: a member that lacks a
figure the mode needs (an engine without a KV gauge, say) gets the mean score of the members that have
them; if no member has them, every member scores 1.0 (equal ratios). The sideband leaves such a
member at its previous score (0.001 at first).

Pure functions over plain data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from controller.config.schema import ModeConfig
from controller.model import Sample

if TYPE_CHECKING:  # controller.policy.scoring imports this module
    from controller.policy.scoring import Context, Policy

SOURCE = "github.com/f5devcentral/llm-inference-lb@f254c3e core/score_calculator.py"

#: The sideband's supported mode names, in the order of its config_loader.py (`supported_modes`, line 240).
SIDEBAND_MODES = (
    "s1", "s1_enhanced", "s1_adaptive", "s1_ratio", "s1_precise", "s1_nonlinear", "s1_balanced",
    "s1_adaptive_distribution", "s1_advanced", "s1_dynamic_waiting",
    "s2", "s2_enhanced", "s2_nonlinear", "s2_adaptive", "s2_advanced", "s2_dynamic_waiting",
)
#: Modes that read running requests (w_g) besides waiting queue and KV use.
THREE_METRIC = frozenset(m for m in SIDEBAND_MODES if m.startswith("s2"))
#: s1_nonlinear's exponent: `getattr(mode_config, 'power', 2.0)` on a ModeConfig without `power` (line 565).
NONLINEAR_POWER = 2.0
#: s2_nonlinear's exponent, a constant in the sideband (`exp_factor = 2.0`, line 942).
S2_NONLINEAR_EXP = 2.0

Values = Sequence[float]
Scorer = Callable[[Values, Values, Values, ModeConfig], list[float]]


# --- normalisations (score_calculator.py, same names without the leading underscore) ------------

def min_max_normalize(values: Values) -> list[float]:
    """`_min_max_normalize` (line 1095): one value or all equal -> 0.0."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if len(values) == 1 or hi == lo:
        return [0.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def _pstd(values: Values) -> tuple[float, float]:
    """(mean, population standard deviation), as the sideband computes them."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))


def _sigma_fallback(values: Values, base: float) -> list[float]:
    """The 3-sigma sigmoid branch shared by `_precise_cache_normalize` and `_precise_running_normalize`."""
    mean, std = _pstd(values)
    std = std if std > 0 else 1.0
    out = []
    for v in values:
        z = (v - mean) / (std * 3)
        out.append(base + 0.8 * (1 / (1 + math.exp(-z * 2))))
    return out


def precise_cache_normalize(values: Values) -> list[float]:
    """`_precise_cache_normalize` (line 1239): log2 of the ratio to the smallest, mapped onto [0.2, 1.0]."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if len(values) == 1 or hi == lo:
        return [0.5] * len(values)
    if lo > 0:
        logs = [math.log2(v / lo) for v in values]
        top = max(logs)
        if top > 0:
            return [0.2 + 0.8 * (x / top) for x in logs]
    return _sigma_fallback(values, 0.2)


def precise_running_normalize(values: Values) -> list[float]:
    """`_precise_running_normalize` (line 2162): log2 of (v + 1) over the smallest, mapped onto [0.15, 0.95]."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if len(values) == 1 or hi == lo:
        return [0.5] * len(values)
    if lo >= 0:
        adjusted = [v + 1 for v in values]
        base = min(adjusted)
        logs = [math.log2(v / base) for v in adjusted]
        top = max(logs)
        if top > 0:
            return [0.15 + 0.8 * (x / top) for x in logs]
    return _sigma_fallback(values, 0.15)


def ratio_based_normalize(values: Values) -> list[float]:
    """`_ratio_based_normalize` (line 1293): for two members the larger gets r/(r+1) of the pair; else min-max."""
    if len(values) <= 1:
        return [0.5] * len(values)
    if len(values) == 2:
        a, b = values
        if a == b:
            return [0.5, 0.5]
        if min(a, b) > 0:
            r = a / b if a > b else b / a
            big, small = r / (r + 1), 1 / (r + 1)
            return [big, small] if a > b else [small, big]
    return min_max_normalize(values)


#: `_smooth_normalize` (line 1374): relative spread below the bound -> output range.
SMOOTH_RANGES = ((0.1, (0.45, 0.55)), (0.3, (0.35, 0.65)), (0.8, (0.25, 0.75)), (2.0, (0.15, 0.85)))
SMOOTH_WIDEST = (0.05, 0.95)


def smooth_normalize(values: Values) -> list[float]:
    """`_smooth_normalize` (line 1374): min-max mapped onto a range that widens with the relative spread."""
    if len(values) <= 1:
        return [0.5] * len(values)
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.5] * len(values)
    spread = (hi - lo) / lo if lo > 0 else hi - lo
    out_lo, out_hi = next((r for bound, r in SMOOTH_RANGES if spread < bound), SMOOTH_WIDEST)
    return [out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo) for v in values]


def rank_based_normalize(values: Values, output_range: tuple[float, float] = (0.1, 0.9)) -> list[float]:
    """`_rank_based_normalize` (line 1627): ranks (ties in input order) spread over the range."""
    if not values:
        return []
    if len(values) == 1:
        return [0.5]
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = rank
    lo, hi = output_range
    top = len(values) - 1
    return [lo + (r / top) * (hi - lo) for r in ranks]


#: `_adaptive_distribution_normalize` (line 1520): coefficient of variation below the bound ->
#: (sensitivity, output range).
ADAPTIVE_BANDS = ((0.1, 3.0, (0.4, 0.6)), (0.3, 2.0, (0.25, 0.75)), (0.8, 1.5, (0.15, 0.85)))
ADAPTIVE_WIDEST = (1.0, (0.1, 0.9))


def adaptive_distribution_normalize(values: Values, metric_type: str = "general") -> list[float]:
    """`_adaptive_distribution_normalize` (line 1520): a tanh of the z-score, its sensitivity and output
    range chosen by the coefficient of variation; a waiting queue spanning more than 10x is taken in log;
    KV use 1.5x more sensitive (and a narrower range below cv 0.2); ranks when the order would change."""
    if len(values) <= 1:
        return [0.5] * len(values)
    mean, std = _pstd(values)
    std = std if std > 0 else 1e-6
    cv = std / abs(mean) if abs(mean) > 1e-6 else std
    sensitivity, output_range = next(((s, r) for bound, s, r in ADAPTIVE_BANDS if cv < bound), ADAPTIVE_WIDEST)
    if metric_type == "waiting_queue":
        if max(values) > 10 * min(values) and min(values) >= 0:
            return adaptive_distribution_normalize([math.log(max(1, x + 1)) for x in values], "general")
    elif metric_type == "cache_usage":
        sensitivity *= 1.5
        if cv < 0.2:
            output_range = (0.35, 0.65)
    lo, hi = output_range
    out = []
    for v in values:
        z = (v - mean) / std if std > 1e-6 else 0
        unit = math.tanh(z * sensitivity / 2) * 0.5 + 0.5
        out.append(max(0.0, min(1.0, lo + unit * (hi - lo))))
    if sorted(range(len(values)), key=lambda i: values[i]) != sorted(range(len(out)), key=lambda i: out[i]):
        return rank_based_normalize(values, output_range)
    return out


def cv_plain(values: Values) -> float:
    """`coefficient_of_variation` of s1_adaptive / s2_adaptive (lines 315, 1011): 0 when the mean is 0."""
    if len(values) <= 1:
        return 0.0
    mean, std = _pstd(values)
    return 0.0 if mean == 0 else std / mean


def cv_abs(values: Values) -> float:
    """`coefficient_of_variation` of s1_advanced / s2_advanced (lines 1695, 1823): |mean| < 1e-6 counts as 0."""
    if len(values) <= 1:
        return 0.0
    mean, std = _pstd(values)
    return 0.0 if abs(mean) < 1e-6 else std / abs(mean)


def cv_weights(weights: Sequence[float], cvs: Sequence[float]) -> list[float]:
    """The adaptive weights (lines 329-342, 1026-1041, 1709-1722, 1838-1853): w·(1 + cv/Σcv), rescaled to the configured sum."""
    total_cv = sum(cvs)
    if total_cv <= 0:
        return list(weights)
    adapted = [w * (1 + cv / total_cv) for w, cv in zip(weights, cvs, strict=True)]
    total = sum(adapted)
    return [a * sum(weights) / total for a in adapted] if total > 0 else adapted


def progressive_weights(weights: Sequence[float], factors: Sequence[tuple[float, float]], intensity: float) -> list[float]:
    """The dynamic-waiting weights (lines 1969-1985, 2087-2106): w·(lo + (hi − lo)·intensity), rescaled to
    the configured sum."""
    adapted = [w * (lo + (hi - lo) * intensity) for w, (lo, hi) in zip(weights, factors, strict=True)]
    total = sum(adapted)
    return [a * sum(weights) / total for a in adapted] if total > 0 else adapted


#: (factor at no waiting, factor at heavy waiting) per weight: s1_dynamic_waiting (line 1972) ...
S1_DYNAMIC_FACTORS = ((0.2, 2.5), (1.8, 0.3))
#: ... and s2_dynamic_waiting (line 2090).
S2_DYNAMIC_FACTORS = ((0.1, 2.5), (1.5, 0.4), (1.4, 0.6))


def waiting_intensity(waiting: Values, mode: ModeConfig) -> float:
    """tanh(max waiting · steepness / transition_point) (lines 1967, 2085)."""
    return math.tanh(max(waiting) * mode.steepness / mode.transition_point)


# --- the modes: (waiting, cache, running, mode) -> unclipped scores ---------------------------------

def _two(nw: Values, nc: Values, wa: float, wb: float) -> list[float]:
    return [wa * (1.0 - a) + wb * (1.0 - b) for a, b in zip(nw, nc, strict=True)]


def _three(nw: Values, nc: Values, nr: Values, wa: float, wb: float, wg: float) -> list[float]:
    return [wa * (1.0 - a) + wb * (1.0 - b) + wg * (1.0 - c) for a, b, c in zip(nw, nc, nr, strict=True)]


def score_s1(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_scores` (line 128): w_a·(1 − minmax(waiting)) + w_b·(1 − cache)."""
    return _two(min_max_normalize(w), c, m.w_a, m.w_b)


def score_s1_enhanced(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_enhanced_scores` (line 208): the cache through `_precise_cache_normalize`."""
    return _two(min_max_normalize(w), precise_cache_normalize(c), m.w_a, m.w_b)


def score_s1_adaptive(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_adaptive_scores` (line 286): weights by coefficient of variation; both min-max."""
    wa, wb = cv_weights((m.w_a, m.w_b), (cv_plain(w), cv_plain(c)))
    return _two(min_max_normalize(w), min_max_normalize(c), wa, wb)


def score_s1_ratio(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_ratio_scores` (line 392): the *raw* waiting queue; cache by `_ratio_based_normalize`;
    not clipped (a waiting queue above 1 gives a negative score)."""
    nc = ratio_based_normalize(c)
    return [m.w_a * (1.0 - a) + m.w_b * (1.0 - b) for a, b in zip(w, nc, strict=True)]


def score_s1_precise(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_precise_scores` (line 462): raw waiting and raw cache."""
    return _two(w, c, m.w_a, m.w_b)


def score_s1_nonlinear(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_nonlinear_scores` (line 535): min-max with ε = 1e-6, cache raised to `power` (2.0)
    and min-max'ed again."""
    eps = 1e-6
    lw, hw, lc, hc = min(w), max(w), min(c), max(c)
    nw = [0.0] * len(w) if hw == lw else [(x - lw) / (hw - lw + eps) for x in w]
    nc = [0.5] * len(c) if hc == lc else [(x - lc) / (hc - lc + eps) for x in c]
    amp = [x ** NONLINEAR_POWER for x in nc]
    if max(amp) > min(amp):
        la, ha = min(amp), max(amp)
        amp = [(x - la) / (ha - la) for x in amp]
    return _two(nw, amp, m.w_a, m.w_b)


def score_s1_balanced(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_balanced_scores` (line 630): both through `_smooth_normalize`."""
    return _two(smooth_normalize(w), smooth_normalize(c), m.w_a, m.w_b)


def score_s1_adaptive_distribution(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_adaptive_distribution_scores` (line 1430)."""
    nw = adaptive_distribution_normalize(w, "waiting_queue")
    return _two(nw, adaptive_distribution_normalize(c, "cache_usage"), m.w_a, m.w_b)


def score_s1_advanced(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_advanced_scores` (line 1658): CV weights (|mean| form) and adaptive distribution."""
    wa, wb = cv_weights((m.w_a, m.w_b), (cv_abs(w), cv_abs(c)))
    nw = adaptive_distribution_normalize(w, "waiting_queue")
    return _two(nw, adaptive_distribution_normalize(c, "cache_usage"), wa, wb)


def score_s1_dynamic_waiting(w: Values, c: Values, _r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s1_dynamic_waiting_scores` (line 1921): weights moved by the pool's waiting intensity."""
    wa, wb = progressive_weights((m.w_a, m.w_b), S1_DYNAMIC_FACTORS, waiting_intensity(w, m))
    nw = adaptive_distribution_normalize(w, "waiting_queue")
    return _two(nw, adaptive_distribution_normalize(c, "cache_usage"), wa, wb)


def score_s2(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_scores` (line 720): s1 plus w_g·(1 − minmax(running))."""
    return _three(min_max_normalize(w), c, min_max_normalize(r), m.w_a, m.w_b, m.w_g)


def score_s2_enhanced(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_enhanced_scores` (line 807)."""
    return _three(min_max_normalize(w), precise_cache_normalize(c), precise_running_normalize(r), m.w_a, m.w_b, m.w_g)


def score_s2_nonlinear(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_nonlinear_scores` (line 898): each term weight·(1 − minmax)^2."""
    e = S2_NONLINEAR_EXP
    nw, nc, nr = min_max_normalize(w), min_max_normalize(c), min_max_normalize(r)
    return [m.w_a * (1.0 - a) ** e + m.w_b * (1.0 - b) ** e + m.w_g * (1.0 - x) ** e
            for a, b, x in zip(nw, nc, nr, strict=True)]


def score_s2_adaptive(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_adaptive_scores` (line 979)."""
    wa, wb, wg = cv_weights((m.w_a, m.w_b, m.w_g), (cv_plain(w), cv_plain(c), cv_plain(r)))
    return _three(min_max_normalize(w), min_max_normalize(c), min_max_normalize(r), wa, wb, wg)


def score_s2_advanced(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_advanced_scores` (line 1783)."""
    wa, wb, wg = cv_weights((m.w_a, m.w_b, m.w_g), (cv_abs(w), cv_abs(c), cv_abs(r)))
    return _three(adaptive_distribution_normalize(w, "waiting_queue"), adaptive_distribution_normalize(c, "cache_usage"),
                  adaptive_distribution_normalize(r, "running_req"), wa, wb, wg)


def score_s2_dynamic_waiting(w: Values, c: Values, r: Values, m: ModeConfig) -> list[float]:
    """`_calculate_s2_dynamic_waiting_scores` (line 2036)."""
    wa, wb, wg = progressive_weights((m.w_a, m.w_b, m.w_g), S2_DYNAMIC_FACTORS, waiting_intensity(w, m))
    return _three(adaptive_distribution_normalize(w, "waiting_queue"), adaptive_distribution_normalize(c, "cache_usage"),
                  adaptive_distribution_normalize(r, "running_req"), wa, wb, wg)


SCORERS: dict[str, Scorer] = {
    "s1": score_s1,
    "s1_enhanced": score_s1_enhanced,
    "s1_adaptive": score_s1_adaptive,
    "s1_ratio": score_s1_ratio,
    "s1_precise": score_s1_precise,
    "s1_nonlinear": score_s1_nonlinear,
    "s1_balanced": score_s1_balanced,
    "s1_adaptive_distribution": score_s1_adaptive_distribution,
    "s1_advanced": score_s1_advanced,
    "s1_dynamic_waiting": score_s1_dynamic_waiting,
    "s2": score_s2,
    "s2_enhanced": score_s2_enhanced,
    "s2_nonlinear": score_s2_nonlinear,
    "s2_adaptive": score_s2_adaptive,
    "s2_advanced": score_s2_advanced,
    "s2_dynamic_waiting": score_s2_dynamic_waiting,
}
UNCLIPPED = frozenset({"s1_ratio"})  # the one mode whose score the sideband does not clip into [0, 1]


def scores(name: str, waiting: Values, cache: Values, running: Values, mode: ModeConfig) -> list[float]:
    """The sideband's scores for one pool's members (all with every figure the mode reads), in order."""
    if not waiting:
        return []
    raw = SCORERS[name](waiting, cache, running, mode)
    return raw if name in UNCLIPPED else [max(0.0, min(1.0, s)) for s in raw]


def policy(name: str) -> Policy:
    """A controller policy (samples, mode, ctx) -> scores that scores like the sideband's mode `name`."""
    needs_running = name in THREE_METRIC

    def score_pool(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> dict[str, float]:
        keys = [k for k, s in samples.items()
                if s.kv_usage is not None and (s.running is not None or not needs_running)]
        got = scores(name, [samples[k].waiting for k in keys], [samples[k].kv_usage or 0.0 for k in keys],
                     [samples[k].running or 0.0 for k in keys], mode)
        out = dict(zip(keys, got, strict=True))
        filler = sum(got) / len(got) if got else 1.0
        return {k: out.get(k, filler) for k in samples}

    score_pool.__name__ = name
    score_pool.__doc__ = f"The sideband scheduler's `{name}` mode ({SOURCE}); see controller.policy.sideband_modes."
    return score_pool


def percents(values: Mapping[str, float | None]) -> dict[str, float]:
    """The sideband's `percent` (core/scheduler.py `get_pool_status`, line 364): a member's score over the
    sum of the pool's scores × 100, rounded to 2 decimals; 0.0 for all when the sum is not positive.
    A member without a score (None) counts as 0."""
    total = sum(v for v in values.values() if v is not None)
    return {k: round((v or 0.0) / total * 100, 2) if total > 0 else 0.0 for k, v in values.items()}
