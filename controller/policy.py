"""Scoring policies: fresh samples of one pool in, a score per member out (higher = send more).

Pure functions over plain data. A policy sees only members with fresh metrics; the planner
decides what happens to the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from controller.config import ModeConfig
from controller.model import Sample

Scores = dict[str, float]


@dataclass(frozen=True)
class Context:
    """What a policy may know besides this tick's samples: all of it read or observed, none of it written.

    `current` is each member's ratio as just read from BIG-IP; `previous` its last fresh sample and
    when it was taken (for rates from counters); `now` the clock time of this tick.
    """

    now: float = 0.0
    current: Mapping[str, int] = field(default_factory=dict)
    previous: Mapping[str, tuple[Sample, float]] = field(default_factory=dict)
    scale: int = 100


Policy = Callable[[Mapping[str, Sample], ModeConfig, Context], Scores]


def min_max(values: Mapping[str, float]) -> dict[str, float]:
    """Normalise to 0..1 across the pool; equal values all map to 0 (nobody is worse)."""
    lo, hi = min(values.values()), max(values.values())
    span = hi - lo
    return {k: (v - lo) / span if span > 0 else 0.0 for k, v in values.items()}


def s1(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    """The sideband scheduler's S1: w_a·(1 − norm_waiting) + w_b·(1 − cache_usage).

    An engine without a KV metric is scored on its queue alone: the queue term takes both weights,
    so such a member is not favoured or penalised for a figure it does not export.
    """
    if not samples:
        return {}
    norm = min_max({k: s.waiting for k, s in samples.items()})
    out = {}
    for key, s in samples.items():
        queue_term = 1.0 - norm[key]
        kv_term = queue_term if s.kv_usage is None else 1.0 - s.kv_usage
        out[key] = mode.w_a * queue_term + mode.w_b * kv_term
    return out


POLICIES: dict[str, Policy] = {"s1": s1}


# --- closed-loop policies -----------------------------------------------------------------------
#
# S1 scores each member on its own figures and knows nothing of how much traffic its ratio already
# sends it, so with ratio-least-connections-member (which keeps conns/ratio equal in real time) an
# S1 ratio is an open-loop guess. The policies below are feedback loops: they start from the ratio
# just read from BIG-IP (ctx.current) and move it multiplicatively so that a *pressure* signal
# becomes equal across the pool. The ratio then encodes "how many concurrent requests this member
# should hold relative to the others", which is exactly what ratio-least-connections enforces.
# See docs/policy.md for the evidence (docs/benchmarks.md).

#: exponent gain of the multiplicative update: a member whose pressure is 0.1 above the pool mean
#: has its ratio cut by e^(-0.1 * GAIN) (~18% at gain 2) this tick, before the planner's damping.
BALANCE_GAIN = 2.0


def _base_ratios(keys, ctx: Context) -> dict[str, float]:
    """The ratio each member has on BIG-IP now. A ratio this tool did not set (BIG-IP's default 1, or
    out of [2, scale]) counts as the median of the others, so a new member starts neutral."""
    cur = {k: float(ctx.current.get(k, 0)) for k in keys}
    valid = sorted(v for v in cur.values() if 1 < v <= ctx.scale)
    neutral = valid[len(valid) // 2] if valid else float(ctx.scale)
    return {k: (v if 1 < v <= ctx.scale else neutral) for k, v in cur.items()}


def pressure(s: Sample, mode: ModeConfig) -> float:
    """How loaded a member is, comparable across unequal engines: w_a * queued share + w_b * KV use.

    The queued share waiting/(running+1) is 0 while the engine admits everything it is sent; KV use
    is the fraction of its cache in use (engines without it: running/(running+waiting+1) stands in).
    """
    running = s.running or 0.0
    queued = s.waiting / (running + 1.0)
    kv = s.kv_usage if s.kv_usage is not None else running / (running + s.waiting + 1.0)
    wa, wb = mode.w_a, mode.w_b
    total = wa + wb
    if total <= 0:
        wa, wb, total = 1.0, 0.0, 1.0
    return (wa * queued + wb * kv) / total


def shrink(x: float, dead_zone: float) -> float:
    """Soft threshold: 0 inside ±dead_zone, and x moved toward 0 by dead_zone outside it (continuous)."""
    if x > dead_zone:
        return x - dead_zone
    if x < -dead_zone:
        return x + dead_zone
    return 0.0


def balance_step(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context], *,
                 gain: float = BALANCE_GAIN, leak: float = 0.0, dead_zone: float = 0.0,
                 max_move: float = math.inf, relative: bool = False) -> Scores:
    """ratio_i <- current_i^(1-leak) * geomean(current)^leak * exp(-gain * shrink(p_i - mean p, dead_zone)).

    `leak` pulls every ratio a little toward the pool's geometric mean each tick, so differences that the
    pressure does not keep renewing decay (equal engines drift back to equal ratios = least-connections);
    `dead_zone` ignores pressure differences smaller than it (noise on equal engines).
    """
    if not samples:
        return {}
    ctx = ctx or Context()
    base = _base_ratios(samples, ctx)
    p = {k: pressure(s, mode) for k, s in samples.items()}
    if relative:
        p = {k: math.log1p(v) for k, v in p.items()}
    mean = sum(p.values()) / len(p)
    logs = {k: math.log(v) for k, v in base.items()}
    centre = sum(logs.values()) / len(logs)
    def move(k):
        return max(-max_move, min(max_move, gain * shrink(p[k] - mean, dead_zone)))
    return {k: math.exp((1.0 - leak) * logs[k] + leak * centre - move(k)) for k in samples}


def balance(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    """Closed loop: ratio_i <- current_i * exp(-GAIN * (pressure_i - mean pressure)).

    Members above the pool's mean pressure lose share, members below gain it; at equilibrium every
    member is equally pressed, whatever its speed or KV size. Scores are ratios (the planner rescales
    so the best is `scale`). With one member, or equal pressures, the current ratios are kept.
    """
    return balance_step(samples, mode, ctx)


def queue_balance(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    """`balance` on the queued share alone (KV use ignored): only members with a queue lose share."""
    return balance(samples, ModeConfig(mode.name, w_a=1.0, w_b=0.0), ctx)


def kv_capacity(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    """Open loop, for comparison: ratio proportional to KV capacity (vLLM's kv_cache_max_concurrency,
    else the concurrency the member holds per unit of KV use). The benchmark shows why this is not enough."""
    out = {}
    for k, s in samples.items():
        if s.kv_max_concurrency:
            out[k] = float(s.kv_max_concurrency)
        elif s.kv_usage and s.running:
            out[k] = s.running / s.kv_usage
        else:
            out[k] = 1.0
    return out


POLICIES.update({"balance": balance, "queue-balance": queue_balance, "kv-capacity": kv_capacity})


def score(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    try:
        policy = POLICIES[mode.name]
    except KeyError:
        raise ValueError(f"unknown scoring mode {mode.name!r}") from None
    return policy(samples, mode, ctx or Context())
