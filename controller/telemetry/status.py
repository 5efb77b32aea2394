"""The JSON documents of /status (the sideband scheduler's `/pools/status` shape) and its `?simple` form.

Compatibility with the sideband scheduler (seeds 000/001 and its api/server.py):

* `GET /pools/status` -> `{"pools": [pool, ...]}`; `GET /pools/{name}/{partition}/status` -> one pool,
  404 `{"detail": "Pool name:partition does not exist"}` otherwise; `?simple` -> one line per member,
  `ip:port score` with four decimals, as text/plain.
* Per pool: `name, partition, engine_type, member_count, members`.
* Per member: `ip, port, score, percent, metrics{waiting_queue, cache_usage, running_req},
  detected_variant, detected_engine_type, detection_status`.
* `score` is on the sideband's scale: the mode's own score for the sideband's modes (`s1`, `s1_enhanced`,
  ... `s2_dynamic_waiting`: controller.policy.sideband_modes); for policies that produce a weight (`balance` and
  the others) the weight divided by the pool's largest, so the best member is 1.0. The policy's own
  number is kept in `policy_weight`.
* `percent` is computed as the sideband computes it (core/scheduler.py `get_pool_status` at f254c3e): the
  member's score over the sum of the pool's scores × 100, rounded to 2 decimals (a member without a score
  counts 0). `ratio_percent` is the member's expected share of new connections by BIG-IP ratio (its ratio
  over the sum of the active members' ratios, after this tick's writes; under --dry-run the current ones).

Our own fields (ratio, planned ratio, connection limits, shares, action, reason) come after those.
Free text is passed through the log redactor before it reaches a reply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from controller import logs
from controller.engines.specs import base_engine_type
from controller.model import MemberPlan, Outcome, PoolPlan
from controller.policy import sideband_modes
from controller.policy.shares import shares, unit_scores

#: A JSON document of /status (a pool, a member).
Doc = dict[str, Any]


def num(value: float | None, digits: int = 4) -> float | None:
    """JSON-safe number: NaN/inf become null (json.dumps would emit invalid JSON otherwise)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


def scrub(text: str) -> str:
    """Known secrets, token URLs and URL credentials out of free text bound for a reply (controller.redact)."""
    return logs.REDACTOR.scrub(text or "")


def iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def split_path(full_path: str) -> tuple[str, str]:
    """(partition, name) of "/Partition[/folder]/name"."""
    parts = full_path.strip("/").split("/")
    return (parts[0] if len(parts) > 1 else "Common"), parts[-1]




def detection(p: MemberPlan) -> tuple[str | None, str | None, str | None]:
    """(detected_variant, detected_engine_type, detection_status) as the sideband reports them."""
    if p.sample is not None:
        variant = p.sample.engine or None
        return variant, (base_engine_type(variant) or variant) if variant else None, "ok"
    if not p.member.active:
        return None, None, None  # not scraped: nothing detected, nothing failed
    return None, None, "failed"


def member_view(p: MemberPlan, *, score: float | None, share: float, planned_share: float, percent: float,
                ratio_percent: float) -> Doc:
    """One member as /status shows it; the sideband's fields come first."""
    m, s = p.member, p.sample
    variant, engine_type, status = detection(p)
    view = {
        "ip": m.scrape_host.strip("[]"),
        "port": m.port,
        "score": num(score),
        "percent": num(percent, 2),  # the sideband's: score / sum of scores x 100
        "metrics": {
            "waiting_queue": num(s.waiting) if s else None,
            "cache_usage": num(s.kv_usage) if s else None,
            "running_req": num(s.running) if s else None,
        },
        "detected_variant": variant,
        "detected_engine_type": engine_type,
        "detection_status": status,
        "name": m.name,
        "session": m.session,
        "state": m.state,
        "active": m.active,
        "up": s is not None,
        "policy_weight": num(p.score),
        "ratio": m.ratio,
        "planned_ratio": p.ratio,
        "connection_limit": m.connection_limit,
        "planned_connection_limit": p.connection_limit,
        "ratio_percent": num(ratio_percent * 100.0, 2),  # by BIG-IP ratio, after this tick's writes
        "share": num(share, 6),
        "planned_share": num(planned_share, 6),
        "action": p.action.value,
        "reason": scrub(p.reason),
        "display": m.display,  # the member as the BIG-IP GUI names it
        "scrape_error": p.scrape_error if p.action.unknown else None,  # the slug, when its load is unknown
        "held": p.action.by_admin,  # an admin keeps the controller off it (hold marker, exclude, paused pool)
        "priority_group": m.priority_group,
    }
    # the planner's capacity estimate, and the mean TTFT the policy compared across the pool
    view["speed"] = {"value": num(p.speed), "source": p.speed_source or None, "ttft_seconds": num(p.ttft, 4)}
    return view


def pool_view(plan: PoolPlan, engine_type: str, policy: str, dry_run: bool) -> Doc:
    ref, pool = plan.pool.ref, plan.pool
    current, planned = shares(plan, planned=False), shares(plan, planned=True)
    live = current if dry_run else planned  # what BIG-IP balances on once this tick's writes are in
    scores = unit_scores(plan, policy)
    percents = sideband_modes.percents({p.member.key: scores.get(p.member.key) for p in plan.members})
    members = [
        member_view(p, score=scores.get(p.member.key), share=current[p.member.key],
                    planned_share=planned[p.member.key], percent=percents[p.member.key],
                    ratio_percent=live[p.member.key])
        for p in plan.members
    ]
    return {
        "name": ref.name,
        "partition": ref.partition,
        "engine_type": engine_type,
        "member_count": len(members),
        "members": members,
        "full_path": ref.full_path,
        "policy": policy or None,
        "load_balancing_mode": pool.load_balancing_mode,
        "honours_ratio": pool.honours_ratio,
        "neutral": plan.neutral or None,
        "active_member_count": sum(1 for p in plan.members if p.member.active),
        "fresh_member_count": sum(1 for p in plan.members if p.sample is not None),
        "note": scrub(plan.note),
        # the opt-in goodput mode (weights.queue_time_limit: slo): BIG-IP's queueTimeLimit now, the one planned
        # (null: not managed this tick) and why
        "queue_time_limit_ms": pool.queue_time_limit_ms,
        "planned_queue_time_limit_ms": plan.queue_time_limit_ms,
        "queue_note": plan.queue_note or None,
        "paused": plan.paused,
        "held_members": [p.member.key for p in plan.members if p.action.by_admin and not plan.paused],
        "blind": plan.blind,
        "min_active_members": pool.min_active_members,
        "priority_groups": [{"group": g, "members": n, "available": up, "in_use": used}
                            for g, n, up, used in pool.priority_groups()],
    }


def missing_pool_view(full_path: str, engine_type: str, outcome: Outcome | None) -> Doc:
    """A configured pool the tick could not read: listed, empty, with the reason."""
    partition, name = split_path(full_path)
    error = outcome.message if outcome is not None and outcome.failed else None
    return {
        "name": name,
        "partition": partition,
        "engine_type": engine_type,
        "member_count": 0,
        "members": [],
        "full_path": full_path,
        "error": scrub(error or "not read this tick"),
        "result": "error",
        "problem": scrub(error or "not read this tick"),
    }


def find_pool(pools: Sequence[Mapping[str, Any]], name: str, partition: str) -> Mapping[str, Any] | None:
    """The pool the sideband's `/pools/{name}/{partition}/status` names (its key is name:partition)."""
    return next((p for p in pools if p["name"] == name and p["partition"] == partition), None)


def simple_text(pool: Mapping[str, Any]) -> str:
    """The sideband's `?simple` form: `ip:port score` per member, score with four decimals.

    An unknown score prints as 0.0000, as the sideband prints a member it cannot score, so a script
    that splits each line in two keeps working.
    """
    lines = []
    for m in pool["members"]:
        lines.append(f"{m['ip']}:{m['port']} {(m['score'] or 0.0):.4f}")  # exactly the sideband's format
    return "\n".join(lines)
