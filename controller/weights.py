"""Scores to BIG-IP member settings, and the damping that keeps config from churning.

Pure functions. Ratios are integers in [floor, scale] and never 0 (BIG-IP rejects 0).
Connection limits are never 0 either: on BIG-IP 0 means unlimited.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from controller.config import WeightsConfig
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
    capacity (vLLM's kv_cache_max_concurrency × limit_headroom), and/or a fixed ceiling.

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


def damped_limit(current: int, target: int, dead_band: float) -> int:
    """Limits move straight to target (no step cap) but ignore changes inside the dead band."""
    if current > 0 and within_dead_band(current, target, dead_band):
        return current
    return max(1, target)
