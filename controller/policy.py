"""Scoring policies: fresh samples of one pool in, a score per member out (higher = send more).

Pure functions over plain data. A policy sees only members with fresh metrics; the planner
decides what happens to the others.
"""

from __future__ import annotations

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


def score(samples: Mapping[str, Sample], mode: ModeConfig, ctx: Optional[Context] = None) -> Scores:
    try:
        policy = POLICIES[mode.name]
    except KeyError:
        raise ValueError(f"unknown scoring mode {mode.name!r}") from None
    return policy(samples, mode, ctx or Context())
