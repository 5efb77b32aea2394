"""One pool's plan: what BIG-IP says now + what the engines say now → the settings to write.

Priority groups: in a pool with `minActiveMembers` > 0, LTM sends new connections only to the priority
groups in use (`PoolState.groups_in_use`, worked out from member availability as LTM does). Members of the
other groups are planned `idle-group`: not scored, not counted in the normalisation or the floor cap,
planned share 0, and never written (their ratio matters only once their group is taken into use, when
they are scored like any new member).

Pure. The only state carried between ticks is `Observation` (when a member last had fresh metrics,
its smoothed score): memory of what was *seen*, never of what was written. The current ratio always
comes from the PoolState just read from BIG-IP.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from controller.config.schema import PoolConfig, WeightsConfig
from controller.engines import capacity
from controller.model import (
    HOLD_MARKER,
    NOT_SCRAPED,
    PAUSE_MARKER,
    Action,
    Member,
    MemberPlan,
    PoolPlan,
    PoolState,
    Sample,
    ScrapeError,
    ScrapeResult,
    held_by_admin,
)
from controller.policy import scoring, weights

NOTE_PREFIX = "f5-llm-ratio:"
OWNED_PREFIX = "f5-llm-ratio["  # followed by the instance id and "]:"
NO_FRESH_METRICS = "no member has fresh metrics: nothing written"
#: How long a member's GUI note written by *another* instance keeps this one off that member (seconds).
#: Longer than any steady state without writes is not possible to know, so this is a lease: the last
#: writer owns the member for this long; after it, another instance may take the member over.
OWNER_WINDOW = 600.0
#: A note of an instance with an id: the stamp ends the note, or is followed by the terms in brackets.
_OWNED_NOTE = re.compile(r"^f5-llm-ratio\[([^\]]*)\]:.*?\s(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?)Z(?:\s+\(.*\))?\s*$")


@dataclass(frozen=True)
class Observation:
    first_seen: float
    last_fresh: float | None = None
    smoothed: float | None = None
    speed: capacity.SpeedEstimate | None = None  # learned from the engine's counters (controller.engines.capacity)


Memory = Mapping[str, Observation]


def describe_sample(sample: Sample | None) -> str:
    if sample is None:
        return "no metrics"
    parts = [f"q={sample.waiting:g}"]
    if sample.running is not None:
        parts.append(f"run={sample.running:g}")
    if sample.kv_usage is not None:
        parts.append(f"kv={sample.kv_usage:.0%}")
    elif sample.slots:
        parts.append(f"slots={sample.running or 0:g}/{sample.slots}")
    return " ".join(parts)


def note_prefix(instance: str = "") -> str:
    """`f5-llm-ratio[<instance id>]:`, or the plain `f5-llm-ratio:` when no instance id is set."""
    return f"{OWNED_PREFIX}{instance}]:" if instance else NOTE_PREFIX


def gui_note(score: float, sample: Sample, wall: float, instance: str = "", ttft: float | None = None,
             why: str = "") -> str:
    """The member description an F5 admin sees in the GUI next to the ratio (with the measured mean time
    to first token the policy compared, where there is one, and the terms that moved the ratio)."""
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(wall))
    seen = describe_sample(sample) + (f" ttft={ttft:.2f}s" if ttft else "")
    return f"{note_prefix(instance)} score {score:.2f} {seen} {stamp}" + (f" ({why})" if why else "")


def may_describe(member: Member, w: WeightsConfig) -> bool:
    """Never overwrite a description this tool did not write."""
    return w.describe and (not member.description or member.description.startswith((NOTE_PREFIX, OWNED_PREFIX)))


@functools.lru_cache(maxsize=16384)
def note_owner(description: str) -> tuple[str, float] | None:
    """(instance id, wall time written) from a GUI note of an instance with an id; None for anything else.

    Cached: every member's note is read every tick, and most notes do not change between ticks."""
    found = _OWNED_NOTE.match(description or "")
    if not found:
        return None
    stamp = found.group(2)
    try:
        written = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S" if stamp.count(":") == 2 else "%Y-%m-%dT%H:%M"))
    except ValueError:
        return None
    return found.group(1), float(written)


_NOTED_RATIO = re.compile(r"\s\(ratio (\d+)[;)]")


def noted_ratio(description: str, instance: str = "") -> int | None:
    """The ratio this instance's own GUI note says it wrote (`... 2026-11-23T10:00Z (ratio 60; ...)`); None
    when the description is not this instance's note or names no ratio. A ratio on BIG-IP that differs is a
    hand edit, also after a restart."""
    text = description or ""
    owner = note_owner(text)
    mine = owner[0] == instance if owner is not None else (not instance and text.startswith(NOTE_PREFIX))
    found = _NOTED_RATIO.search(text) if mine else None
    return int(found.group(1)) if found else None


def other_owner(member: Member, instance: str, wall: float, window: float = OWNER_WINDOW) -> tuple[str, float] | None:
    """The (id, age in seconds) of another live instance whose note is on `member`, or None.

    Live: the note was written less than `window` ago (a note stamped in the future by a skewed clock
    counts as live for up to `window` too). Our own id, legacy notes without an id and foreign text
    are never another owner.
    """
    owner = note_owner(member.description)
    if owner is None or owner[0] == instance:
        return None
    age = wall - owner[1]
    return (owner[0], age) if -window < age < window else None


def _remember(pool: PoolState, scrapes: Mapping[str, ScrapeResult], memory: Memory, now: float) -> dict[str, Observation]:
    """Carry observations forward for members still in the pool; members that left are forgotten."""
    out: dict[str, Observation] = {}
    for m in pool.members:
        obs = memory.get(m.key) or Observation(first_seen=now)
        result = scrapes.get(m.key)
        if m.active and result is not None and result.sample is not None and result.carried:
            obs = replace(obs, last_fresh=result.at)  # read in an earlier tick: its counters are already counted
        elif m.active and result is not None and result.sample is not None:
            obs = replace(obs, last_fresh=now, speed=capacity.observe(obs.speed, result.sample, result.at))
        out[m.key] = obs
    return out


def _fresh(pool: PoolState, scrapes: Mapping[str, ScrapeResult]) -> dict[str, Sample]:
    out = {}
    for m in pool.members:
        result = scrapes.get(m.key) if pool.serving(m) else None
        if result is not None and result.sample is not None:
            out[m.key] = result.sample
    return out


@dataclass(frozen=True)
class Terms:
    """What moved a member's ratio, against the pool: its queued share waiting/(running+1), KV use and
    measured TTFT beside the pool's means over the members with fresh metrics, and the neutral the loop
    leaks toward (relative speed, 1 = the pool's fastest) with its source. Only for the reason text."""

    queue: float
    queue_pool: float
    kv: float | None = None
    kv_pool: float | None = None
    ttft: float | None = None
    ttft_pool: float | None = None
    neutral: float | None = None
    neutral_source: str = ""

    def text(self) -> str:
        parts = [f"queue share {self.queue:.2f} vs pool {self.queue_pool:.2f}"]
        if self.kv is not None and self.kv_pool is not None:
            parts.append(f"KV {self.kv:.0%} vs pool {self.kv_pool:.0%}")
        if self.ttft is not None and self.ttft_pool is not None:
            parts.append(f"TTFT {self.ttft:.2f}s vs pool {self.ttft_pool:.2f}s")
        if self.neutral is not None:
            parts.append(f"neutral {self.neutral:.2f} ({self.neutral_source or 'equal'})")
        return ", ".join(parts)

    def short(self) -> str:
        """The GUI note's form (BIG-IP descriptions are short): `q 0.20/0.35 kv 41%/30% ttft 0.45/0.60s n 0.80`."""
        parts = [f"q {self.queue:.2f}/{self.queue_pool:.2f}"]
        if self.kv is not None and self.kv_pool is not None:
            parts.append(f"kv {self.kv:.0%}/{self.kv_pool:.0%}")
        if self.ttft is not None and self.ttft_pool is not None:
            parts.append(f"ttft {self.ttft:.2f}/{self.ttft_pool:.2f}s")
        if self.neutral is not None:
            parts.append(f"n {self.neutral:.2f} {self.neutral_source or 'equal'}")
        return " ".join(parts)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pool_terms(fresh: Mapping[str, Sample], ttft: Mapping[str, float], neutral: capacity.Neutral) -> dict[str, Terms]:
    """Each fresh member's Terms (see there)."""
    q_pool = _mean([scoring.queued_share(s) for s in fresh.values()]) or 0.0
    kv_pool = _mean([s.kv_usage for s in fresh.values() if s.kv_usage is not None])
    ttft_pool = _mean([v for k, v in ttft.items() if k in fresh])
    top = max(neutral.values.values(), default=0.0)
    out = {}
    for k, s in fresh.items():
        speed = neutral.values.get(k)
        out[k] = Terms(queue=scoring.queued_share(s), queue_pool=q_pool, kv=s.kv_usage, kv_pool=kv_pool,
                       ttft=ttft.get(k), ttft_pool=ttft_pool if k in ttft else None,
                       neutral=speed / top if speed is not None and top > 0 else None,
                       neutral_source=neutral.sources.get(k, neutral.source))
    return out


def _moves(m: Member, target: int, ratio: int, dead_band_held: bool, w: WeightsConfig) -> list[str]:
    """What damping did between the target and the ratio written: the dead band, the step clip, the floor."""
    out: list[str] = []
    if not w.drives_ratio:
        return out
    if dead_band_held and target != m.ratio:
        out.append(f"inside the dead band ({w.dead_band:.0%} of {m.ratio}): held")
    elif ratio != target:
        start = weights.clamp(m.ratio, w.floor, w.scale)
        origin = f"; from {m.ratio}, outside [{w.floor}, {w.scale}]" if start != m.ratio else ""
        step = max(1, round(w.max_step * w.scale))
        out.append(f"step clip: {start} -> {ratio}, at most {step} a tick (max_step {w.max_step:g} x scale{origin})")
    if ratio == w.floor and target <= w.floor:
        out.append(f"at the floor {w.floor}")
    return out


def _known_plan(m: Member, sample: Sample, score: float, target: int, cfg: PoolConfig, wall: float, instance: str = "",
                ttft: float | None = None, queues: bool = False, terms: Terms | None = None,
                limits: bool = False, burst: bool = False) -> MemberPlan:
    """`queues`: the pool queues at connection limits (queueOnConnectionLimit), so an engine with slots
    gets them as its limit even when the config drives ratios only (weights.slot_limit). `terms`: what the
    reason says moved the ratio. `limits`: the pool's connection limits are planned, from each engine's
    own queue (weights.queue_limit). `burst`: the pool is in a pool-wide burst (scoring.in_burst): with
    `drive: auto` planned limits are lifted (0, or max_connections) so each engine queues its own share,
    except in the opt-in goodput mode, where LTM's queue with its queueTimeLimit is the point."""
    w = cfg.weights
    ratio, held = m.ratio, False
    if w.drives_ratio:
        ratio, held = weights.damped_ratio(m.ratio, target, w)
    limit = m.connection_limit
    wanted = weights.slot_limit(sample, w) if sample.slots and (w.drives_limit or queues) else None
    lifted = wanted is None and limits and burst and w.drive == "auto" and w.queue_time_limit != "slo"
    if wanted is not None:  # llama.cpp: its slots are a hard limit
        limit = weights.damped_limit(m.connection_limit, wanted, w.dead_band)
    elif lifted:
        limit = w.max_connections or 0  # no limit, unless the config caps every member
    elif limits:
        limit = weights.queue_limit(m.connection_limit, sample, w)
    changed = ratio != m.ratio or limit != m.connection_limit
    action = Action.WRITE if changed else (Action.DEAD_BAND if held and target != m.ratio else Action.HOLD)
    # score, load and share are fields of their own everywhere this shows; the reason says what moved it
    moves = _moves(m, target, ratio, held, w)
    if burst and w.drives_ratio and cfg.mode.name.startswith("balance"):
        moves.append("pool-wide burst: ratios relax toward equal")
    if wanted is not None:
        moves.append(f"limit {wanted} from the engine's capacity" + ("" if limit == wanted else f", held at {limit} (dead band)"))
    elif limit != m.connection_limit and lifted:
        moves.append(f"limit {m.connection_limit} lifted: pool-wide burst (each engine queues its own share)")
    elif limit != m.connection_limit:
        moves.append(f"limit {m.connection_limit} -> {limit} from the engine's queue "
                     f"(waiting {sample.waiting:g}, running {sample.running or 0:g}; limit_queue {w.limit_queue})")
    # the target and what damping did first (a table cuts the end), then the terms that set the target
    reason = "; ".join([f"target ratio {target}", *moves] + ([terms.text()] if terms is not None else []))
    note = None
    if changed and may_describe(m, w):
        why = "; ".join([f"ratio {ratio}"] + ([terms.short()] if terms is not None else [])
                        + [x.split(":")[0] for x in moves if "clip" in x or "floor" in x])
        note = gui_note(score, sample, wall, instance, ttft, why)
    return MemberPlan(member=m, sample=sample, score=score, ratio=ratio, connection_limit=limit, action=action,
                      reason=reason, description=note, ttft=ttft)


def _why(result: ScrapeResult | None) -> str:
    if result is None or not result.error:
        return "not scraped"
    return f"{result.error}: {result.detail}" if result.detail else result.error


def _slug(result: ScrapeResult | None) -> ScrapeError | Literal["not-scraped"]:
    return result.error if result is not None and result.error else NOT_SCRAPED


def _unknown_plan(m: Member, result: ScrapeResult | None, obs: Observation, neutral: int, cfg: PoolConfig, now: float) -> MemberPlan:
    why, slug = _why(result), _slug(result)
    since = obs.last_fresh if obs.last_fresh is not None else obs.first_seen
    age = now - since
    if age < cfg.weights.stale_after:
        return _unknown(m, m.ratio, Action.UNKNOWN_HOLD, f"{why}; holding ratio ({age:.0f}s without metrics)", slug)
    ratio = m.ratio
    if cfg.weights.drives_ratio:
        ratio, _ = weights.damped_ratio(m.ratio, neutral, cfg.weights)
    action = Action.UNKNOWN_NEUTRAL if ratio != m.ratio else Action.UNKNOWN_HOLD
    return _unknown(m, ratio, action, f"{why}; stale {age:.0f}s, neutral ratio {neutral}", slug)


def _unknown(m: Member, ratio: int, action: Action, reason: str, slug: ScrapeError | Literal["not-scraped"]) -> MemberPlan:
    return MemberPlan(member=m, sample=None, score=None, ratio=ratio, connection_limit=m.connection_limit, action=action,
                      reason=reason, scrape_error=slug)


def plan_pool(
    pool: PoolState,
    scrapes: Mapping[str, ScrapeResult],
    cfg: PoolConfig,
    memory: Memory,
    now: float,
    wall: float,
    instance: str = "",
    scorer: scoring.Policy | None = None,
    prefill_weight: float | None = None,
) -> tuple[PoolPlan, dict[str, Observation]]:
    """Decide every member of one pool, and the pool's queueTimeLimit where the opt-in goodput mode is on
    (`queue_time_plan`). Returns the plan and the observations to carry forward.

    `instance` is this controller's id: it goes into the GUI notes it writes, and a member whose note
    carries another instance's id, written less than OWNER_WINDOW ago, is left alone ("owned-by-other").
    `scorer` replaces the configured policy and `prefill_weight` capacity.PREFILL_WEIGHT (benchmarks
    compare variants without registering them or changing module constants).
    """
    plan, observed = _plan_members(pool, scrapes, cfg, memory, now, wall, instance, scorer, prefill_weight)
    wait, why = queue_time_plan(pool, cfg.weights)
    if why:
        plan = replace(plan, queue_time_limit_ms=wait, queue_note=why)
    return plan, observed


def queue_fix(pool: PoolState) -> str:
    """The tmsh line that lets LTM queue a pool's connections at its members' limits."""
    return f"tmsh modify ltm pool {pool.ref.full_path} queue-on-connection-limit enabled"


def queue_time_plan(pool: PoolState, w: WeightsConfig) -> tuple[int | None, str]:
    """(the queueTimeLimit in ms to keep on the pool, why) under the opt-in goodput mode.

    `weights.queue_time_limit: off` (the default): (None, "") and the pool's queueTimeLimit is never
    touched. `slo`: queue_time_share x slo_s, only where the pool queues at its connection limits
    (queueOnConnectionLimit enabled; elsewhere nothing waits in LTM's queue and the setting would do
    nothing), and not while an admin pauses the pool or holds it (the markers in its description).
    Equal to what BIG-IP holds: nothing to write. A request that waits longer in LTM's queue is reset.
    """
    wanted = w.queue_time_limit_ms
    if wanted is None:
        return None, ""
    setting = f"queueTimeLimit {wanted} ms ({w.queue_time_share:g} x slo_s {w.slo_s:g} s)"
    if pool.paused:
        return None, f"queue_time_limit: slo: {setting} not written: paused ('{PAUSE_MARKER}' in the pool's description)"
    if held_by_admin(pool.description):
        return None, (f"queue_time_limit: slo: {setting} not written: held ('{HOLD_MARKER}' in the pool's description); "
                      f"queueTimeLimit kept at {pool.queue_time_limit_ms} ms")
    if not pool.queue_on_connection_limit:
        return None, (f"queue_time_limit: slo: {setting} not written: queueOnConnectionLimit is disabled on the pool, so "
                      f"nothing waits in LTM's queue; to use it: {queue_fix(pool)}")
    if pool.queue_time_limit_ms == wanted:
        return wanted, f"{setting} as set: requests queued longer are reset"
    return wanted, (f"queueTimeLimit {pool.queue_time_limit_ms} -> {wanted} ms ({w.queue_time_share:g} x slo_s "
                    f"{w.slo_s:g} s; queue_time_limit: slo): requests queued longer are reset")


def _plan_members(
    pool: PoolState,
    scrapes: Mapping[str, ScrapeResult],
    cfg: PoolConfig,
    memory: Memory,
    now: float,
    wall: float,
    instance: str = "",
    scorer: scoring.Policy | None = None,
    prefill_weight: float | None = None,
) -> tuple[PoolPlan, dict[str, Observation]]:
    """Decide every member of one pool. Returns the plan and the observations to carry forward.

    `instance` is this controller's id: it goes into the GUI notes it writes, and a member whose note
    carries another instance's id, written less than OWNER_WINDOW ago, is left alone ("owned-by-other").
    `scorer` replaces the configured policy and `prefill_weight` capacity.PREFILL_WEIGHT (benchmarks
    compare variants without registering them or changing module constants).
    """
    observed = _remember(pool, scrapes, memory, now)
    fresh = _fresh(pool, scrapes)
    if cfg.fallback.pool_fallback:
        fallback = pool_fallback_plan(pool, fresh, cfg)
        return replace(fallback, members=tuple(_owned(p, instance, wall) for p in fallback.members)), observed
    if not fresh:
        held = tuple(_idle(m, pool) if pool.idle(m) else
                     _hold(m, _why(scrapes.get(m.key)), Action.UNKNOWN_HOLD, _slug(scrapes.get(m.key))) for m in pool.members)
        note = NO_FRESH_METRICS if any(pool.serving(m) for m in pool.members) else "no active member"
        return _by_admin(PoolPlan(pool, held, note), cfg), observed

    speeds = {k: o.speed for k, o in observed.items() if o.speed is not None}
    neutral = capacity.neutral(fresh, speeds, fresh, prefill_weight)
    ttft = capacity.ttfts(fresh, speeds)
    ctx = scoring.Context(current={m.key: m.ratio for m in pool.members}, scale=cfg.weights.scale,
                         neutral=neutral.values, neutral_source=neutral.source, ttft=ttft)
    raw = scorer(fresh, cfg.mode, ctx) if scorer is not None else scoring.score(fresh, cfg.mode, ctx)
    smoothed = {k: weights.smooth(observed[k].smoothed, s, cfg.weights.smoothing) for k, s in raw.items()}
    for k, s in smoothed.items():
        observed[k] = replace(observed[k], smoothed=s)
    targets = weights.ratios_from_scores(smoothed, cfg.weights.scale, cfg.weights.floor)
    stale_ratio = weights.neutral_ratio(targets, cfg.weights)
    top = max(neutral.values.values(), default=0.0)
    terms = pool_terms(fresh, ttft, neutral)

    burst = scoring.in_burst(fresh)
    plans: list[MemberPlan] = []
    for m in pool.members:
        if not m.active:
            plans.append(_hold(m))
        elif pool.idle(m):
            plans.append(_idle(m, pool))
        elif m.key in fresh:
            known = _known_plan(m, fresh[m.key], smoothed[m.key], targets[m.key], cfg, wall, instance, ttft.get(m.key),
                                pool.queue_on_connection_limit, terms.get(m.key),
                                limits=weights.auto_limits(pool.queue_on_connection_limit, len(fresh), cfg.weights),
                                burst=burst)
            speed = neutral.values.get(m.key)
            plans.append(replace(known, speed=speed / top if speed and top > 0 else None,
                                 speed_source=neutral.sources.get(m.key, "")))
        else:
            plans.append(_unknown_plan(m, scrapes.get(m.key), observed[m.key], stale_ratio, cfg, now))
    plans = _cap_floor(plans, cfg)
    plans = [over_threshold(p, cfg) for p in plans]
    plans = [_owned(p, instance, wall) for p in plans]
    plans = [writable(p, pool.honours_ratio) for p in plans]
    return _by_admin(PoolPlan(pool, tuple(plans), neutral=neutral.source), cfg), observed


def admin_hold(m: Member, pool: PoolState, cfg: PoolConfig) -> tuple[Action, str] | None:
    """(action, why) when an admin keeps the controller off this member; None when it may be written.

    A paused pool (its description contains PAUSE_MARKER) holds every member; a member whose description
    contains HOLD_MARKER, or that `pools[].exclude` names, is held on its own.
    """
    if pool.paused:
        return Action.PAUSED, f"paused: '{PAUSE_MARKER}' in the pool's BIG-IP description; nothing written"
    if cfg.excludes(m.name, m.full_path):
        return Action.EXCLUDED, "excluded: pools[].exclude names it in the config; ratio and limit kept"
    if held_by_admin(m.description):
        return Action.HELD, f"held: '{HOLD_MARKER}' in its BIG-IP description; ratio and limit kept"
    return None


def _by_admin(plan: PoolPlan, cfg: PoolConfig) -> PoolPlan:
    """Members an admin holds keep their ratio and limit; their load is still read and counted (their share
    stays in the pool's total), and the reason keeps what the controller would have done."""
    out, changed = [], False
    for p in plan.members:
        held = admin_hold(p.member, plan.pool, cfg)
        if held is None:
            out.append(p)
            continue
        action, why = held
        would = f"; would have planned ratio {p.ratio}" if p.ratio != p.member.ratio else ""
        out.append(replace(p, ratio=p.member.ratio, connection_limit=p.member.connection_limit, action=action,
                           reason=why + would + (f" ({p.reason})" if p.reason else ""), description=None))
        changed = True
    if not changed:
        return plan
    note = plan.note
    if plan.pool.paused:
        note = f"paused by an admin: the pool's BIG-IP description contains '{PAUSE_MARKER}'; nothing written" + (
            f"; {note}" if note else "")
    return replace(plan, members=tuple(out), note=note)


#: The plan note of a pool with fallback.pool_fallback: true.
POOL_FALLBACK_NOTE = ("fallback.pool_fallback: true: left to BIG-IP's own balancing (equal ratios, as the sideband "
                      "scheduler answers 'fallback' for it); scores shown, not used")


def pool_fallback_plan(pool: PoolState, fresh: Mapping[str, Sample], cfg: PoolConfig) -> PoolPlan:
    """fallback.pool_fallback: the sideband answers "fallback" for every request of the pool and BIG-IP picks
    the member by its own method (api/server.py at f254c3e, `select_optimal_member`). Here: every active member
    at the same ratio (`scale`), so ratio-least-connections-member is plain least connections. Ratios that are
    already equal are left as they are. Where this controller drives connection limits, they are lifted
    (0: unlimited); otherwise they are not touched."""
    active = [m for m in pool.members if m.active]
    equal = len({m.ratio for m in active}) <= 1
    # scored all the same, for /status (`score`, `percent`), as the sideband keeps scoring such a pool
    scores = scoring.score(fresh, cfg.mode, scoring.Context(scale=cfg.weights.scale)) if fresh else {}
    plans = []
    for m in pool.members:
        if not m.active:
            plans.append(_hold(m))
            continue
        ratio = m.ratio if equal or not cfg.weights.drives_ratio else cfg.weights.scale
        limit = 0 if cfg.weights.drives_limit else m.connection_limit
        plans.append(MemberPlan(member=m, sample=fresh.get(m.key), score=scores.get(m.key), ratio=ratio,
                                connection_limit=limit, action=Action.POOL_FALLBACK,
                                reason="pool_fallback: equal ratios, BIG-IP balances on its own"))
    plans = [writable(p, pool.honours_ratio) for p in plans]
    return PoolPlan(pool, tuple(plans), POOL_FALLBACK_NOTE)


def over_threshold(p: MemberPlan, cfg: PoolConfig) -> MemberPlan:
    """A member whose running requests or waiting queue is above its fallback threshold takes no new
    connections: the floor ratio, and a connection limit of 1 where limits are driven (BIG-IP takes no new
    connection to a member at or over its limit; 0 would mean unlimited). The sideband drops such a member
    from the candidates of every request (core/scheduler.py at f254c3e, `_filter_members_by_thresholds`:
    `value > threshold`); a member without metrics is kept, as there."""
    f, s = cfg.fallback, p.sample
    if s is None or not f.thresholds or not p.member.active:
        return p
    over = []
    if f.member_running_req_threshold is not None and (s.running or 0.0) > f.member_running_req_threshold:
        over.append(f"running {s.running:g} > {f.member_running_req_threshold:g} (member_running_req_threshold)")
    if f.member_waiting_queue_threshold is not None and s.waiting > f.member_waiting_queue_threshold:
        over.append(f"waiting {s.waiting:g} > {f.member_waiting_queue_threshold:g} (member_waiting_queue_threshold)")
    if not over:
        return p
    w = cfg.weights
    ratio = w.floor if w.drives_ratio else p.ratio
    limit = 1 if w.drives_limit else p.connection_limit
    how = " and ".join((["floor ratio"] if w.drives_ratio else []) + (["connection limit 1"] if w.drives_limit else []))
    return replace(p, ratio=ratio, connection_limit=limit, action=Action.OVER_THRESHOLD,
                   reason=f"{' and '.join(over)}: no new connections ({how})")


def writable(p: MemberPlan, honours_ratio: bool) -> MemberPlan:
    """Keep only what BIG-IP would accept and act on: nothing for an ephemeral member (BIG-IP refuses
    it), no ratio where the pool's mode ignores member ratios (connection limits count in every mode)."""
    m = p.member
    if not p.changes:
        return p
    if not m.writable:
        why = f"{p.reason}; ephemeral FQDN member: BIG-IP refuses changes, not written"
        return replace(p, ratio=m.ratio, connection_limit=m.connection_limit, action=Action.NOT_WRITABLE,
                       reason=why, description=None)
    if honours_ratio or p.ratio == m.ratio:
        return p
    held = replace(p, ratio=m.ratio)
    why = f"{p.reason}; ratio {p.ratio} not written: the pool's load-balancing mode ignores member ratios"
    if held.connection_limit != m.connection_limit:
        return replace(held, reason=why)
    return replace(held, action=Action.NOT_WRITABLE, reason=why, description=None)


def _owned(p: MemberPlan, instance: str, wall: float) -> MemberPlan:
    """Hold a member another live instance wrote last: two controllers must not fight over it."""
    if not p.member.active or p.action is Action.IDLE_GROUP:
        return p
    other = other_owner(p.member, instance, wall)
    if other is None:
        return p
    why = f"owned by f5-llm-ratio instance {other[0]!r} (note written {other[1]:.0f}s ago); not written"
    return replace(p, ratio=p.member.ratio, connection_limit=p.member.connection_limit, action=Action.OWNED_BY_OTHER,
                   reason=why, description=None)


def floor_allowance(active: int, w: WeightsConfig) -> int:
    """How many of `active` members may be planned at the floor: max_floor_share of them, rounded down."""
    return math.floor(w.max_floor_share * active + 1e-9)


def _cap_floor(plans: list[MemberPlan], cfg: PoolConfig) -> list[MemberPlan]:
    """At most max_floor_share of the active members at the floor ratio.

    When more would be, the excess among those the plan *moves* to the floor this tick is held above it
    (at the current ratio, brought into (floor, scale]): unknown members first, then the least loaded
    (highest score), ties by name, so the outcome is deterministic. Members already at the floor stay.
    """
    w = cfg.weights
    if not w.drives_ratio or w.floor >= w.scale:
        return plans
    active = [p for p in plans if p.member.active and p.action is not Action.IDLE_GROUP]
    allowed = floor_allowance(len(active), w)
    at_floor = [p for p in active if p.ratio == w.floor]
    excess = len(at_floor) - allowed
    if excess <= 0:
        return plans
    moving = [p for p in at_floor if p.member.ratio != w.floor]
    moving.sort(key=lambda p: (p.score is not None, -(p.score or 0.0), p.member.key))
    held = {p.member.key for p in moving[:excess]}
    out = []
    for p in plans:
        if p.member.key not in held:
            out.append(p)
            continue
        ratio = min(w.scale, max(w.floor + 1, p.member.ratio))
        changed = ratio != p.member.ratio or p.connection_limit != p.member.connection_limit
        why = (f"{p.reason}; held above floor: {len(at_floor)} of {len(active)} active members would be at floor "
               f"{w.floor}, max_floor_share {w.max_floor_share:g} allows {allowed}")
        out.append(replace(p, ratio=ratio, action=Action.FLOOR_CAP if changed else Action.FLOOR_HOLD, reason=why,
                           description=p.description if changed else None))
    return out


def _idle(m: Member, pool: PoolState) -> MemberPlan:
    """A member of a priority group LTM is not using now: left as it is, share 0."""
    used = ", ".join(str(g) for g in sorted(pool.groups_in_use or (), reverse=True))
    why = (f"priority group {m.priority_group} idle: LTM sends it nothing while group(s) {used} keep "
           f"{pool.min_active_members} member(s) available (minActiveMembers); not scored, not written")
    return MemberPlan(member=m, sample=None, score=None, ratio=m.ratio, connection_limit=m.connection_limit,
                      action=Action.IDLE_GROUP, reason=why)


def _hold(m: Member, reason: str = "", action: Action = Action.HOLD,
          slug: ScrapeError | Literal["not-scraped"] | None = None) -> MemberPlan:
    """Leave a member as it is; an inactive one says why it is skipped."""
    if m.fqdn_template:
        action, reason, slug = (Action.SKIP_INACTIVE, f"FQDN template ({m.state}): its ephemeral members take the "
                                "traffic; not scraped, not written", None)
    elif not m.active:
        action, reason, slug = Action.SKIP_INACTIVE, f"{m.session}/{m.state} on BIG-IP: takes no new traffic", None
    return MemberPlan(member=m, sample=None, score=None, ratio=m.ratio, connection_limit=m.connection_limit, action=action,
                      reason=reason, scrape_error=slug)
