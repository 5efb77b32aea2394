"""One pool's plan: what BIG-IP says now + what the engines say now → the settings to write.

Pure. The only state carried between ticks is `Observation` (when a member last had fresh metrics,
its smoothed score): memory of what was *seen*, never of what was written. The current ratio always
comes from the PoolState just read from BIG-IP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from controller import policy, weights
from controller.config import PoolConfig, WeightsConfig
from controller.model import Member, MemberPlan, PoolPlan, PoolState, Sample, ScrapeResult

NOTE_PREFIX = "f5-llm-ratio:"


@dataclass(frozen=True)
class Observation:
    first_seen: float
    last_fresh: Optional[float] = None
    smoothed: Optional[float] = None
    sample: Optional[Sample] = None  # the last fresh sample, for policies that use rates of counters


Memory = Mapping[str, Observation]


def describe_sample(sample: Optional[Sample]) -> str:
    if sample is None:
        return "no metrics"
    parts = [f"q={sample.waiting:g}"]
    if sample.running is not None:
        parts.append(f"run={sample.running:g}")
    if sample.kv_usage is not None:
        parts.append(f"kv={sample.kv_usage:.0%}")
    return " ".join(parts)


def gui_note(score: float, sample: Sample, wall: float) -> str:
    """The member description an F5 admin sees in the GUI next to the ratio."""
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(wall))
    return f"{NOTE_PREFIX} score {score:.2f} {describe_sample(sample)} {stamp}"


def may_describe(member: Member, w: WeightsConfig) -> bool:
    """Never overwrite a description this tool did not write."""
    return w.describe and (not member.description or member.description.startswith(NOTE_PREFIX))


def _remember(pool: PoolState, scrapes: Mapping[str, ScrapeResult], memory: Memory, now: float) -> dict:
    """Carry observations forward for members still in the pool; members that left are forgotten."""
    out = {}
    for m in pool.members:
        obs = memory.get(m.key) or Observation(first_seen=now)
        if m.active and m.key in scrapes and scrapes[m.key].ok:
            obs = replace(obs, last_fresh=now, sample=scrapes[m.key].sample)
        out[m.key] = obs
    return out


def _fresh(pool: PoolState, scrapes: Mapping[str, ScrapeResult]) -> dict[str, Sample]:
    return {m.key: scrapes[m.key].sample for m in pool.members if m.active and m.key in scrapes and scrapes[m.key].ok}


def _known_plan(m: Member, sample: Sample, score: float, target: int, cfg: PoolConfig, wall: float) -> MemberPlan:
    w = cfg.weights
    ratio, held = m.ratio, False
    if w.drive in ("ratio", "both"):
        ratio, held = weights.damped_ratio(m.ratio, target, w)
    limit = m.connection_limit
    if w.drive in ("connection_limit", "both"):
        wanted = weights.capacity_limit(sample, w)
        if wanted is not None:
            limit = weights.damped_limit(m.connection_limit, wanted, w.dead_band)
    changed = ratio != m.ratio or limit != m.connection_limit
    action = "write" if changed else ("dead-band" if held else "hold")
    reason = f"score {score:.2f} ({describe_sample(sample)}) target {target}"
    note = gui_note(score, sample, wall) if changed and may_describe(m, w) else None
    return MemberPlan(m, sample, score, ratio, limit, action, reason, note)


def _why(result: Optional[ScrapeResult]) -> str:
    if result is None or not result.error:
        return "not scraped"
    return f"{result.error}: {result.detail}" if result.detail else result.error


def _unknown_plan(m: Member, result: Optional[ScrapeResult], obs: Observation, neutral: int, cfg: PoolConfig, now: float) -> MemberPlan:
    why = _why(result)
    since = obs.last_fresh if obs.last_fresh is not None else obs.first_seen
    age = now - since
    if age < cfg.weights.stale_after:
        return MemberPlan(m, None, None, m.ratio, m.connection_limit, "unknown-hold", f"{why}; holding ratio ({age:.0f}s without metrics)")
    ratio = m.ratio
    if cfg.weights.drive in ("ratio", "both"):
        ratio, _ = weights.damped_ratio(m.ratio, neutral, cfg.weights)
    action = "unknown-neutral" if ratio != m.ratio else "unknown-hold"
    return MemberPlan(m, None, None, ratio, m.connection_limit, action, f"{why}; stale {age:.0f}s, neutral ratio {neutral}")


def plan_pool(
    pool: PoolState,
    scrapes: Mapping[str, ScrapeResult],
    cfg: PoolConfig,
    memory: Memory,
    now: float,
    wall: float,
) -> tuple[PoolPlan, dict[str, Observation]]:
    """Decide every member of one pool. Returns the plan and the observations to carry forward."""
    observed = _remember(pool, scrapes, memory, now)
    fresh = _fresh(pool, scrapes)
    if not fresh:
        plans = tuple(_hold(m, _why(scrapes.get(m.key)), action="unknown-hold") for m in pool.members)
        note = "no member has fresh metrics: nothing written" if any(m.active for m in pool.members) else "no active member"
        return PoolPlan(pool, plans, note), observed

    ctx = policy.Context(
        now=now,
        current={m.key: m.ratio for m in pool.members},
        previous={k: (o.sample, o.last_fresh) for k, o in memory.items() if o.sample is not None and o.last_fresh is not None},
        scale=cfg.weights.scale,
    )
    raw = policy.score(fresh, cfg.mode, ctx)
    smoothed = {k: weights.smooth(observed[k].smoothed, s, cfg.weights.smoothing) for k, s in raw.items()}
    for k, s in smoothed.items():
        observed[k] = replace(observed[k], smoothed=s)
    targets = weights.ratios_from_scores(smoothed, cfg.weights.scale, cfg.weights.floor)
    neutral = weights.neutral_ratio(targets, cfg.weights)

    plans = []
    for m in pool.members:
        if not m.active:
            plans.append(_hold(m, "inactive on BIG-IP", action="skip-inactive"))
        elif m.key in fresh:
            plans.append(_known_plan(m, fresh[m.key], smoothed[m.key], targets[m.key], cfg, wall))
        else:
            plans.append(_unknown_plan(m, scrapes.get(m.key), observed[m.key], neutral, cfg, now))
    return PoolPlan(pool, tuple(plans)), observed


def _hold(m: Member, reason: str, action: str = "hold") -> MemberPlan:
    if not m.active:
        action, reason = "skip-inactive", f"{m.session}/{m.state} on BIG-IP: takes no new traffic"
    return MemberPlan(m, None, None, m.ratio, m.connection_limit, action, reason)
