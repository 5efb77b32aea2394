"""What a plan means to a reader: each member's share of new connections, and scores on the sideband's 0-1
scale. Pure; read by the plan tables, /status, the metrics and the demo."""

from __future__ import annotations

import math

from controller.model import PoolPlan
from controller.policy import sideband_modes

#: policies whose score already is the sideband's score (its modes; all but s1_ratio are within 0-1)
SCORE_POLICIES = frozenset(sideband_modes.SIDEBAND_MODES)


def shares(plan: PoolPlan, planned: bool = True) -> dict[str, float]:
    """Expected share of new connections per member: ratio / sum of ratios of active members.

    Pools whose LB mode ignores ratios (round robin, least connections, ...) are shown as an even
    split among active members: there the ratio has no say, so ratio-based shares would mislead.
    """
    active = [p for p in plan.members if plan.pool.serving(p.member)]  # idle priority groups get nothing
    weights = {p.member.key: float(p.ratio if planned else p.member.ratio) for p in active}
    if not plan.pool.honours_ratio:
        weights = {k: 1.0 for k in weights}
    total = sum(w for w in weights.values() if w > 0)
    return {p.member.key: (weights.get(p.member.key, 0.0) / total if total > 0 else 0.0) for p in plan.members}


def unit_scores(plan: PoolPlan, policy: str = "") -> dict[str, float]:
    """Each fresh member's score on the sideband's 0-1 scale (controller.telemetry.status's docstring says how)."""
    raw = {p.member.key: float(p.score) for p in plan.members if p.score is not None and math.isfinite(p.score)}
    if not raw:
        return {}
    if policy in sideband_modes.UNCLIPPED:
        return raw  # the sideband shows s1_ratio's score as computed, negative or above 1
    already_unit = policy in SCORE_POLICIES or (not policy and all(0.0 <= v <= 1.0 for v in raw.values()))
    if already_unit:
        return {k: min(1.0, max(0.0, v)) for k, v in raw.items()}
    top = max(raw.values())
    return {k: (max(0.0, v) / top if top > 0 else 0.0) for k, v in raw.items()}
