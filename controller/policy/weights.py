"""Scores to BIG-IP member settings, and the damping that keeps config from churning.

Pure functions. Ratios are integers in [floor, scale] and never 0 (BIG-IP rejects 0).
Connection limits are never 0 either: on BIG-IP 0 means unlimited.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from controller.config.schema import WeightsConfig
from controller.model import Sample


def clamp(value: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, value)))


def ratios_from_scores(scores: Mapping[str, float], scale: int, floor: int) -> dict[str, int]:
    """The best member gets `scale`; the others in proportion to their score, never below `floor`."""
    if not scores:
        return {}
    top = max(scores.values())
    if not top > 0:  # every member equally bad: no basis to prefer one
        return {k: scale for k in scores}
    return {k: clamp(round(scale * s / top), floor, scale) for k, s in scores.items()}


def smooth(previous: float | None, current: float, keep: float) -> float:
    """EWMA: `keep` is the weight of the previous value (0 disables smoothing)."""
    if previous is None or keep <= 0:
        return current
    return keep * previous + (1.0 - keep) * current


def within_dead_band(current: int, target: int, dead_band: float) -> bool:
    """A change no larger than dead_band × current is noise, not signal (as HPA's tolerance)."""
    return abs(target - current) <= dead_band * current


def step_toward(current: int, target: int, w: WeightsConfig) -> int:
    """Move at most max_step × scale per tick, and land inside [floor, scale]."""
    step = max(1, round(w.max_step * w.scale))
    moved = current + max(-step, min(step, target - current))
    return clamp(moved, w.floor, w.scale)


def damped_ratio(current: int, target: int, w: WeightsConfig) -> tuple[int, bool]:
    """The ratio to write this tick, and whether the dead band held it back.

    A current ratio outside [floor, scale] was not set by us (BIG-IP's default is 1, or a hand edit):
    it is taken as the nearest bound and stepped from there like any other, so `max_step` holds for
    every member (1 -> 60 on the first tick toward 100, not 1 -> 100). The correction into the range is
    always written, even where the dead band would hold the step.
    """
    start = clamp(current, w.floor, w.scale)
    if within_dead_band(start, target, w.dead_band):
        return (current, True) if start == current else (start, False)
    return step_toward(start, target, w), False


def neutral_ratio(planned: Mapping[str, int], w: WeightsConfig) -> int:
    """Where a member with stale metrics goes: the pool's median, so it neither starves nor floods."""
    if not planned:
        return w.scale
    return clamp(round(statistics.median(planned.values())), w.floor, w.scale)


def capacity_limit(sample: Sample | None, w: WeightsConfig) -> int | None:
    """Connection limit from the engine's slots (llama.cpp `-np`: a hard limit, so no headroom), else KV
    capacity (vLLM's kv_cache_max_concurrency × limit_headroom), and/or a fixed ceiling. No longer used by
    the planner for engines without slots: `kv_cache_max_concurrency` counts requests of `max_model_len`
    tokens (24 on an A100, 3 for a 128k context) while engines run 135-256 conversation requests, so this
    limit collapsed throughput (docs/policy.md); `queue_limit` replaces it.

    None when there is nothing to base a limit on: the caller then leaves the limit alone.
    """
    candidates = []
    if w.max_connections:
        candidates.append(w.max_connections)
    if sample is not None and sample.slots:
        candidates.append(sample.slots)
    elif sample is not None and sample.kv_max_concurrency:
        candidates.append(math.floor(sample.kv_max_concurrency * w.limit_headroom))
    if not candidates:
        return None
    return max(1, min(candidates))


def slot_limit(sample: Sample | None, w: WeightsConfig) -> int | None:
    """The connection limit for an engine with a fixed number of slots (llama.cpp `-np`), on a pool that
    queues at connection limits: its slots (capped by max_connections). Past its slots an engine defers
    requests in its own queue, where they wait for one of *its* slots even when another member frees one
    first; at the limit LTM holds them in the pool's one queue and sends each to the first member with a
    free slot (docs/real-engines.md measured it). None for engines without slots."""
    if sample is None or not sample.slots:
        return None
    return max(1, min(sample.slots, w.max_connections or sample.slots))


#: an engine with more than LIMIT_TIGHTEN x limit_queue requests waiting gets its limit tightened to
#: running + limit_queue; with at most limit_queue / LIMIT_TIGHTEN waiting and every connection its limit
#: allows, the limit relaxes. The band between keeps a limit from being rewritten every tick.
LIMIT_TIGHTEN = 2.0
#: a binding limit relaxes by at least this many connections per tick, and by at least LIMIT_RELAX_SHARE of
#: itself (more than the planner's 10% dead band, so every relaxation is written).
LIMIT_RELAX_STEP = 16
LIMIT_RELAX_SHARE = 0.25
#: `drive: auto` sets connection limits only in pools of at most this many members with fresh metrics.
#: Measured (bench.matrix, 2026-12-07, conv trace 85%, queued against not): in the pools of 16 limits wrote
#: 37.8-60.6 times a minute (budget 30; 16.2-30.3 without) and raised p99 at 5 of 6 points (homo16 1.40x LC
#: against 1.05x); in pools of 4 and 8 they lowered it at 7 of 8 heterogeneous points (docs/policy.md).
AUTO_LIMITS_POOL = 8


def auto_limits(queue_on_connection_limit: bool, members: int, w: WeightsConfig) -> bool:
    """Whether connection limits are planned for a pool: always with drive connection_limit/both; with
    auto where LTM queues what a limit holds back and the pool has at most AUTO_LIMITS_POOL members."""
    return w.drives_limit or (w.limits_on(queue_on_connection_limit) and members <= AUTO_LIMITS_POOL)


def queue_limit(current: int, sample: Sample | None, w: WeightsConfig) -> int:
    """The connection limit for one member from its engine's own queue; 0 is no limit (as on BIG-IP).

    With h = w.limit_queue:

    * the engine queues more than 2h: limit = running + h. The engine keeps h requests waiting to start
      as its slots free, and LTM (queueOnConnectionLimit) holds the pool's excess in one FIFO queue that
      every member draws from as it frees a connection, instead of each engine's own queue. Never below
      what the engine runs. A change within the dead band is not made.
    * it queues h/2 or less and holds every connection its limit allows (the limit binds while the
      engine has room): the limit relaxes by max(LIMIT_RELAX_STEP, 25%).
    * otherwise the limit stays as it is: a limit that does not bind costs nothing and is not rewritten.

    `max_connections` caps the result (and is the limit of a member that has none). Pure."""
    if sample is None:
        return current
    h = max(1, round(w.limit_queue))
    running = max(0, round(sample.running or 0.0))
    waiting = max(0, round(sample.waiting))
    out = current
    if waiting > LIMIT_TIGHTEN * h:
        target = running + h
        if current <= 0 or not within_dead_band(current, target, w.dead_band):
            out = target
    elif current > 0 and waiting <= h / LIMIT_TIGHTEN and running + waiting >= current:
        out = current + max(LIMIT_RELAX_STEP, math.ceil(LIMIT_RELAX_SHARE * current))
    if w.max_connections:
        out = w.max_connections if out <= 0 else min(out, w.max_connections)
    return out


def damped_limit(current: int, target: int, dead_band: float) -> int:
    """Limits move straight to target (no step cap) but ignore changes inside the dead band."""
    if current > 0 and within_dead_band(current, target, dead_band):
        return current
    return max(1, target)
