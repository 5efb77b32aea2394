"""Scoring policies: fresh samples of one pool in, a score per member out (higher = send more).

Pure functions over plain data. A policy sees only members with fresh metrics; the planner
decides what happens to the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from controller.config.schema import ModeConfig
from controller.model import Sample
from controller.policy import sideband_modes

Scores = dict[str, float]


@dataclass(frozen=True)
class Context:
    """What a policy may know besides this tick's samples: all of it read or observed, none of it written.

    `current` is each member's ratio as just read from BIG-IP; `scale` the ratio of the best member.
    """

    current: Mapping[str, int] = field(default_factory=dict)
    scale: int = 100
    #: relative ratios the closed loop leaks toward, per member, and what they come from
    #: (controller.engines.capacity: "measured" service rates, "kv-capacity" or "equal"); empty: derive from the samples
    neutral: Mapping[str, float] = field(default_factory=dict)
    neutral_source: str = ""
    #: each member's recent mean time to first token (seconds), where measured (controller.engines.capacity)
    ttft: Mapping[str, float] = field(default_factory=dict)


Policy = Callable[[Mapping[str, Sample], ModeConfig, Context], Scores]


def min_max(values: Mapping[str, float]) -> dict[str, float]:
    """Normalise to 0..1 across the pool; equal values all map to 0 (nobody is worse)."""
    lo, hi = min(values.values()), max(values.values())
    span = hi - lo
    return {k: (v - lo) / span if span > 0 else 0.0 for k, v in values.items()}


def s1(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The sideband scheduler's S1: w_a·(1 − norm_waiting) + w_b·(1 − cache_usage).

    An engine without a KV metric is scored on its queue alone: the queue term takes both weights,
    so such a member is not favoured or penalised for a figure it does not export. The score is clipped
    into [0, 1], as the sideband clips it (core/score_calculator.py at f254c3e, line 177), which matters
    when w_a + w_b > 1.
    """
    if not samples:
        return {}
    norm = min_max({k: s.waiting for k, s in samples.items()})
    out = {}
    for key, s in samples.items():
        queue_term = 1.0 - norm[key]
        kv_term = queue_term if s.kv_usage is None else 1.0 - s.kv_usage
        out[key] = max(0.0, min(1.0, mode.w_a * queue_term + mode.w_b * kv_term))
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

#: exponent gain of the multiplicative update: a member whose pressure is 0.01 above the pool mean
#: (outside the dead zone) has its ratio cut by e^(-0.01 * GAIN) this tick, before the planner's damping.
BALANCE_GAIN = 2.0
#: share of the way each ratio moves toward its neutral every tick (in log space): a difference the
#: pressure does not keep renewing decays by 20% a tick, so equal engines end up with equal ratios
#: (= least-connections), while a persistent pressure difference holds ratios up to
#: BALANCE_MAX_MOVE / BALANCE_LEAK (= 0.5 in log, x1.65) away from the neutral.
BALANCE_LEAK = 0.2
#: the neutral the leak pulls toward: ratios proportional to KV capacity^BALANCE_PRIOR (vLLM's
#: kv_cache_max_concurrency; 0 = equal ratios). Used only when every member exports the figure; equal
#: engines have equal capacity, so on a homogeneous pool the neutral is "all equal" either way.
BALANCE_PRIOR = 1.0
#: pressure differences (in log(1 + pressure)) smaller than this are noise and ignored.
BALANCE_DEAD_ZONE = 0.03
#: largest pressure-driven change of a ratio per tick, in log space (0.1 = ~10%). Together with the
#: planner's 10% dead band a ratio only moves when the pressure points the same way for 2+ ticks.
BALANCE_MAX_MOVE = 0.1
#: in a pool of at least BALANCE_LARGE_POOL members the queued-share term of the pressure weighs
#: BALANCE_LARGE_POOL_QUEUE_BOOST times its configured w_a (the default 0.5/0.5 becomes 0.75/0.25).
#: Empirical, from the previous benchmark (single `speed` engine model, KV-proportional pools): with 16
#: members the KV-use differences kept the loop from following queue bursts (hetero16-conv 95%, p99 down
#: by about a quarter with the boost, seeds 4-6). Not re-tuned with the current benchmark.
BALANCE_LARGE_POOL = 8
BALANCE_LARGE_POOL_QUEUE_BOOST = 3.0
#: exponent on a *measured* service rate in the neutral (ratios proportional to rate^SPEED_PRIOR).
#: Below 1 because ratio-least-connections already sends a faster member more requests at equal
#: concurrency (it frees its connections sooner); the ratio only adds the part of the speed difference
#: that equal concurrency leaves on the table. Larger moves along the median/tail trade-off: 1.0 lowers
#: p99 at 50% load, raises p99 and p50 at 90% and writes up to twice as often (docs/policy.md).
SPEED_PRIOR = 0.5
#: weight of a member's measured time to first token in its pressure: q_i += BALANCE_TTFT_WEIGHT *
#: shrink(log ttft_i - mean log ttft, BALANCE_TTFT_DEAD_ZONE). This is how the loop *sees* speed at
#: the load it gives: with ratio-least-connections evening out concurrency, queue and KV use look alike
#: on a fast and a slow member, but the slow one's prompts wait longer for their first token. The
#: integrator moves share until first tokens come about as fast everywhere (the dead zone: differences
#: under ~20% are noise), bounded by the queue and KV terms, which still pull a member back whose
#: cache fills. Measured (bench.variants, docs/policy.md): 0.1 gives most of the tail gain at 50% load;
#: 0.2 is mixed (better at 6 cells, worse at 4, p50 up at 90%) and writes up to 50% more.
BALANCE_TTFT_WEIGHT = 0.1
BALANCE_TTFT_DEAD_ZONE = 0.2
#: the TTFT weight in a pool of BALANCE_LARGE_POOL or more members: off. Measured (bench.matrix, 2026-11-30,
#: seeds 1-3, docs/policy.md): at 0.05 the pools of 16 wrote 15-70% more (e.g. fastsmallkv16 conv trace 38
#: vs 22 writes a minute, over the 30/min budget at 3 of 12 points) for a p99 better at 4 points and worse
#: at 4. A large pool's speed differences reach it through the measured neutral.
BALANCE_TTFT_WEIGHT_LARGE = 0.0
#: KV use enters the pressure as kv_usage ** BALANCE_KV_POWER: near 0 while a member has room, steep as
#: its cache fills. With a speed neutral, a fast member is *meant* to hold more concurrency (and so more
#: KV) than a slow one; a linear KV term pushed it back toward equal concurrency at 15-30% KV use.
BALANCE_KV_POWER = 3.0
#: A pool-wide burst: at least half the members (and two) queue more than BURST_QUEUE of what they run
#: (waiting/(running+1)). Every engine is behind then, and moving share only moves the wait from one member to
#: another: sending a slow member's share to the fast ones fills their queues too, and more requests miss
#: their first-token objective than under plain least connections, which leaves the fast members' queues
#: short (docs/policy.md, "Bursts": three8 conv trace 85% goodput 88.8% LC, 78.1% chasing the queues). So in
#: pools of at most BURST_POOL members, while a burst lasts, the pressure moves nothing and the ratios relax
#: toward equal by BURST_LEAK a tick (least connections); the neutral is back once the queues drain.
BURST_QUEUE = 0.05
BURST_LEAK = 0.5
BURST_POOL = 8
#: differences in log measured speed under this are taken as equal in the neutral (0: none).
BALANCE_NEUTRAL_DEAD_ZONE = 0.0


def queued_share(s: Sample) -> float:
    """waiting / (running + 1): 0 while the engine admits everything it is sent."""
    return s.waiting / ((s.running or 0.0) + 1.0)


def in_burst(samples: Mapping[str, Sample], threshold: float | None = None, pool_max: int | None = None) -> bool:
    """Whether a pool of at most `pool_max` members (BURST_POOL) is in a pool-wide burst: at least half its
    members, and at least two, queue more than `threshold` (BURST_QUEUE; 0 = never) of what they run
    (waiting/(running+1)). The constants are read at each call, so the benchmark can vary them."""
    threshold = BURST_QUEUE if threshold is None else threshold
    pool_max = BURST_POOL if pool_max is None else pool_max
    if len(samples) < 2 or len(samples) > pool_max or threshold <= 0:
        return False
    queueing = sum(1 for s in samples.values() if queued_share(s) > threshold)
    return queueing >= max(2, math.ceil(len(samples) / 2))


def _base_ratios(keys: Iterable[str], ctx: Context) -> dict[str, float]:
    """The ratio each member has on BIG-IP now. A ratio this tool did not set (BIG-IP's default 1, or
    out of [2, scale]) counts as the median of the others, so a new member starts neutral."""
    cur = {k: float(ctx.current.get(k, 0)) for k in keys}
    valid = sorted(v for v in cur.values() if 1 < v <= ctx.scale)
    neutral = valid[len(valid) // 2] if valid else float(ctx.scale)
    return {k: (v if 1 < v <= ctx.scale else neutral) for k, v in cur.items()}


def pressure(s: Sample, mode: ModeConfig, kv_power: float = 1.0) -> float:
    """How loaded a member is, comparable across unequal engines: w_a * queued share + w_b * KV use.

    The queued share waiting/(running+1) is 0 while the engine admits everything it is sent; KV use
    is the fraction of its cache in use. Engines without it: the share of their slots in use where the
    slots are known (llama.cpp: running/slots, 1 when it defers requests), else running/(running+waiting+1).
    """
    queued = queued_share(s)
    kv = s.kv_usage if s.kv_usage is not None else fullness(s)
    if kv_power != 1.0:
        kv = max(0.0, kv) ** kv_power
    wa, wb = mode.w_a, mode.w_b
    total = wa + wb
    if total <= 0:
        wa, wb, total = 1.0, 0.0, 1.0
    return (wa * queued + wb * kv) / total


def fullness(s: Sample) -> float:
    """How full an engine without a KV gauge is: running/slots where its slots are known, else
    running/(running+waiting+1)."""
    running = s.running or 0.0
    if s.slots:
        return min(1.0, running / s.slots)
    return running / (running + s.waiting + 1.0)


def ttft_term(keys: Iterable[str], ttft: Mapping[str, float], dead_zone: float) -> dict[str, float]:
    """Each member's log TTFT against the pool's mean log TTFT, soft-thresholded; all 0 unless every
    member has a measured TTFT (a member without one would otherwise look average and be pushed around)."""
    keys = list(keys)
    if not keys or not all(ttft.get(k, 0) > 0 for k in keys):
        return dict.fromkeys(keys, 0.0)
    logs = {k: math.log(ttft[k]) for k in keys}
    mean = sum(logs.values()) / len(logs)
    return {k: shrink(v - mean, dead_zone) for k, v in logs.items()}


def shrink(x: float, dead_zone: float) -> float:
    """Soft threshold: 0 inside ±dead_zone, and x moved toward 0 by dead_zone outside it (continuous)."""
    if x > dead_zone:
        return x - dead_zone
    if x < -dead_zone:
        return x + dead_zone
    return 0.0


def _centre(logs: Mapping[str, float], samples: Mapping[str, Sample], ctx: Context, speed_prior: float | None,
            prior: float, dead_zone: float) -> dict[str, float]:
    """Where each log ratio leaks to: the pool's current geometric mean, spread in proportion to the
    neutral (ctx.neutral ** speed_prior for measured rates, ** prior for KV capacity; speed_prior None:
    ignore ctx.neutral and use the samples' kv_max_concurrency ** prior), or all equal."""
    level = sum(logs.values()) / len(logs)
    caps: Mapping[str, float | None] = {k: s.kv_max_concurrency for k, s in samples.items()}
    exponent = prior
    if speed_prior is not None and ctx.neutral and all(ctx.neutral.get(k, 0) > 0 for k in samples):
        caps = ctx.neutral
        exponent = speed_prior if ctx.neutral_source == "measured" else prior
    if not exponent or not all(c and c > 0 for c in caps.values()):
        return dict.fromkeys(logs, level)
    cl = {k: math.log(c or 1.0) for k, c in caps.items()}
    cmean = sum(cl.values()) / len(cl)
    return {k: level + exponent * shrink(cl[k] - cmean, dead_zone) for k in logs}


def balance_step(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None, *,
                 gain: float = BALANCE_GAIN, leak: float = BALANCE_LEAK, dead_zone: float = BALANCE_DEAD_ZONE,
                 max_move: float = BALANCE_MAX_MOVE, log_pressure: bool = True,
                 prior: float = BALANCE_PRIOR, large_pool: int = BALANCE_LARGE_POOL,
                 large_pool_queue_boost: float = BALANCE_LARGE_POOL_QUEUE_BOOST,
                 speed_prior: float = SPEED_PRIOR, use_neutral: bool = True, kv_power: float = BALANCE_KV_POWER,
                 neutral_dead_zone: float | None = None, min_leak: float = 0.0,
                 ttft_weight: float = BALANCE_TTFT_WEIGHT, ttft_dead_zone: float = BALANCE_TTFT_DEAD_ZONE,
                 ttft_weight_large: float = BALANCE_TTFT_WEIGHT_LARGE, burst_queue: float | None = None,
                 burst_leak: float | None = None, burst_pool: int | None = None) -> Scores:
    """One tick of the closed loop, in log space:

        log r_i <- (1 - leak) * log current_i + leak * neutral_i - clip(gain * shrink(q_i - mean q))

    with q = log(1 + pressure) (or the pressure itself when log_pressure is False), shrink() a soft
    dead zone and clip() at ±max_move. neutral_i = mean_j log current_j + e * (log cap_i - mean_j
    log cap_j), where cap is ctx.neutral (controller.engines.capacity: measured service rates, e = speed_prior;
    or KV capacity, e = prior) when it covers every member and use_neutral is set; otherwise
    kv_max_concurrency from the samples (e = prior; a member without it: all neutrals equal).
    Members more pressed than the pool's mean lose share, less pressed ones gain it; the leak makes
    differences the pressure does not renew decay back to the neutral. In a pool of `large_pool` or
    more members the queue weight w_a is multiplied by `large_pool_queue_boost` (1 = off).

    q also carries ttft_weight (ttft_weight_large in a large pool) x ttft_term(): a member whose first
    tokens come slower than the pool's (ctx.ttft, measured) is more pressed. min_leak > 0 makes a quiet
    member's offset from the neutral shrink by at least that much per tick (a variant: it reaches the
    neutral, and churns).

    In a pool-wide burst (in_burst with burst_queue, burst_pool; None: BURST_QUEUE, BURST_POOL) nothing is
    pushed and every ratio leaks toward the pool's geometric mean by burst_leak (None: BURST_LEAK): least
    connections, which serves more requests within their objective while every engine is behind.
    """
    if not samples:
        return {}
    ctx = ctx or Context()
    if len(samples) >= large_pool and large_pool_queue_boost != 1.0:
        mode = ModeConfig(mode.name, w_a=mode.w_a * large_pool_queue_boost, w_b=mode.w_b, w_g=mode.w_g)
    base = _base_ratios(samples, ctx)
    q = {k: pressure(s, mode, kv_power) for k, s in samples.items()}
    if log_pressure:
        q = {k: math.log1p(max(0.0, v)) for k, v in q.items()}
    weight = ttft_weight_large if len(samples) >= large_pool else ttft_weight
    if weight:
        slow = ttft_term(q, ctx.ttft, ttft_dead_zone)
        q = {k: v + weight * slow[k] for k, v in q.items()}
    mean = sum(q.values()) / len(q)
    logs = {k: math.log(v) for k, v in base.items()}
    nz = BALANCE_NEUTRAL_DEAD_ZONE if neutral_dead_zone is None else neutral_dead_zone
    centre = _centre(logs, samples, ctx, speed_prior if use_neutral else None, prior, nz)
    burst = in_burst(samples, burst_queue, burst_pool)
    if burst:
        centre = dict.fromkeys(logs, sum(logs.values()) / len(logs))
        leak = BURST_LEAK if burst_leak is None else burst_leak

    def move(k: str) -> float:
        if burst:
            return 0.0
        return max(-max_move, min(max_move, gain * shrink(q[k] - mean, dead_zone)))

    def decayed(k: str, push: float) -> float:
        # the offset from the neutral shrinks by `leak` of itself; while the pressure is quiet by at
        # least `min_leak`, so the step clears the planner's dead band and the ratio reaches the neutral
        off = logs[k] - centre[k]
        cut = leak * abs(off) if push else max(leak * abs(off), min_leak)
        return math.copysign(max(0.0, abs(off) - cut), off)

    out = {}
    for k in samples:
        push = move(k)
        out[k] = math.exp(centre[k] + decayed(k, push) - push)
    return out


def balance(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The default closed loop (balance_step with the BALANCE_* constants): equalise log(1 + pressure)
    across the pool, ignoring differences under the dead zone, at most ~10% per tick, with a 20% leak
    toward the neutral ctx.neutral (measured service rates; KV capacity where no member exports speed
    counters); in pools of 8+ members the queue term weighs 3x; in smaller pools a member whose measured
    time to first token is above the pool's (beyond ~20%) counts as more pressed. Scores are ratios (the
    planner rescales so the best is `scale`)."""
    return balance_step(samples, mode, ctx)


def balance_rate(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The fourth `balance` (the default until the TTFT term): leaks toward the measured service rate
    but does not see each member's time to first token. Kept for comparison (`balance-rate`)."""
    return balance_step(samples, mode, ctx, ttft_weight=0.0, ttft_weight_large=0.0)


def balance_kv(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The third `balance` (the default until measured speed): leaks toward KV capacity, never toward
    a measured service rate. Kept for comparison (`balance-kv`)."""
    return balance_step(samples, mode, ctx, use_neutral=False, kv_power=1.0, ttft_weight=0.0, ttft_weight_large=0.0)


def balance_v2(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The second `balance` (the default until the large-pool queue boost): the same loop with the
    configured w_a/w_b at every pool size. Kept for comparison (`balance-v2`); identical below 8 members."""
    return balance_step(samples, mode, ctx, large_pool_queue_boost=1.0, use_neutral=False, kv_power=1.0,
                        ttft_weight=0.0, ttft_weight_large=0.0)


def balance_v1(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """The first `balance` (the first default): ratio_i <- current_i * exp(-2 (p_i - mean p)),
    no leak, no dead zone, no clip. Kept for comparison (`balance-v1`); it chases noise on equal engines."""
    return balance_step(samples, mode, ctx, gain=2.0, leak=0.0, dead_zone=0.0, max_move=math.inf,
                        log_pressure=False, prior=0.0, large_pool_queue_boost=1.0, kv_power=1.0, ttft_weight=0.0, ttft_weight_large=0.0)


def queue_balance(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    """`balance` on the queued share alone (KV use ignored): only members with a queue lose share."""
    return balance(samples, ModeConfig(mode.name, w_a=1.0, w_b=0.0), ctx)


def kv_capacity(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
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


# The sideband scheduler's other modes, with its own formulas (controller.policy.sideband_modes). Its `s1` is the
# `s1` above, which also scores engines without a KV gauge; the arithmetic is the same where both apply.
POLICIES.update({name: sideband_modes.policy(name) for name in sideband_modes.SIDEBAND_MODES if name != "s1"})

POLICIES.update({
    "balance": balance,
    "balance-v1": balance_v1,
    "balance-v2": balance_v2,
    "balance-rate": balance_rate,
    "balance-kv": balance_kv,
    "queue-balance": queue_balance,
    "kv-capacity": kv_capacity,
})


def score(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Context | None = None) -> Scores:
    try:
        policy = POLICIES[mode.name]
    except KeyError:
        raise ValueError(f"unknown scoring mode {mode.name!r}") from None
    return policy(samples, mode, ctx or Context())
