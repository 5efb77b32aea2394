"""Plain-text tables for `plan`, `--dry-run` and `check`: what an F5 admin reads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from controller.model import Kind, MemberPlan, PoolPlan, Reason, TickReport
from controller.policy.shares import shares, unit_scores

#: The plan table fits this many columns for a pool of 16 IPv4 members: the reason is cut to fit (`--json`
#: and /status carry it whole).
PLAN_WIDTH = 100


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _arrow(old: int, new: int) -> str:
    return f"{old}" if old == new else f"{old} -> {new}"


def _count(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.0f}" if float(value).is_integer() or value >= 100 else f"{value:.1f}"


def _pct(value: float | None, digits: int = 0) -> str | None:
    return None if value is None else f"{100 * value:.{digits}f}%"


def _natural(p: MemberPlan) -> tuple[int, tuple[int | str, ...]]:
    """Members by planned ratio, largest first; ties by address, numerically (10.0.0.9 before 10.0.0.10)."""
    parts = tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.member.display))
    return (-p.ratio, parts)


def pool_header(plan: PoolPlan, policy: str = "") -> str:
    """`pool /Common/p  ratio-least-connections-member  policy balance  16 members, 15 fresh, 1 inactive`"""
    pool = plan.pool
    inactive = sum(1 for p in plan.members if not p.member.active)
    fresh = sum(1 for p in plan.members if p.sample is not None)
    parts = [f"pool {pool.ref}", pool.load_balancing_mode] + ([f"policy {policy}"] if policy else [])
    held = sum(1 for p in plan.members if p.action.by_admin)
    counts = f"{len(plan.members)} members, {fresh} fresh" + (f", {inactive} inactive" if inactive else "")
    if plan.paused:
        counts += "  PAUSED by an admin (pool description)"
    elif held:
        counts += f", {held} held by an admin"
    return "  ".join([*parts, counts])


def pool_table(plan: PoolPlan, policy: str = "", width: int = PLAN_WIDTH) -> str:
    """One pool's members: load, 0-1 score, ratio now -> planned, expected share after the tick, action, reason.

    The connection-limit column appears when a member has or gets a limit, the speed column when a
    member's speed was measured; the reason is cut so that a line stays within `width` columns.
    """
    unit = unit_scores(plan, policy)
    share = shares(plan, planned=True)
    limits = any(p.connection_limit or p.member.connection_limit for p in plan.members)
    speeds = any(p.speed_source == "measured" for p in plan.members)
    ttfts = any(p.ttft for p in plan.members)
    headers = ["member", "wait", "run", "kv", "score", "ratio"] + (["limit"] if limits else []) + ["share"]
    headers += (["speed"] if speeds else []) + (["ttft"] if ttfts else []) + ["action", "reason"]
    rows = []
    for p in sorted(plan.members, key=_natural):
        s = p.sample
        row = [p.member.display, _count(s.waiting) if s else None, _count(s.running) if s else None,
               _pct(s.kv_usage) if s else None, None if p.member.key not in unit else f"{unit[p.member.key]:.2f}",
               _arrow(p.member.ratio, p.ratio)]
        row += [_arrow(p.member.connection_limit, p.connection_limit)] if limits else []
        row += [_pct(share[p.member.key], 1) if p.member.active else None]  # an idle priority group's: 0.0%
        row += [None if p.speed is None else f"{p.speed:.2f}"] if speeds else []
        row += [None if not p.ttft else f"{p.ttft:.2f}s"] if ttfts else []
        rows.append(row + [p.action.value, p.reason])
    return _fit(table(headers, rows), width)


def _fit(text: str, width: int) -> str:
    return "\n".join(line if len(line) <= width else line[: width - 3] + "..." for line in text.splitlines())


def plan_table(report: TickReport, policies: Mapping[str, str] | None = None, width: int = PLAN_WIDTH) -> str:
    """The whole plan: per pool a header line, the member table and the pool's notes; then the tick's errors."""
    policies = policies or {}
    out = []
    for plan in report.plans:
        policy = policies.get(plan.pool.ref.full_path, "")
        out += [pool_header(plan, policy), pool_table(plan, policy, width)]
        if plan.note:
            out.append(f"  note: {plan.note}")
        if plan.queue_note:
            out.append(_fit(f"  queue: {plan.queue_note}", width))
        if plan.neutral:
            out.append(f"  {neutral_line(plan)}")
        if plan.pool.priority_note():
            out.append(_fit(f"  {plan.pool.priority_note()}", width))
            out.append("  (planned within the groups in use; members of idle groups: share 0%, not written)")
        if not plan.pool.honours_ratio:
            out.append(f"  WARNING: load-balancing mode {plan.pool.load_balancing_mode} ignores ratios")
        out.append("")
    for err in report.errors:
        out.append(f"error: {err}")
    writes = sum(len(plan.writes) for plan in report.plans)
    verb = "would write" if report.dry_run else "wrote"
    settings = (sum(1 for plan in report.plans if plan.pool_changes) if report.dry_run else
                sum(1 for o in report.outcomes if o.kind is Kind.SETTING and o.reason is Reason.APPLIED))
    tail = f" and queueTimeLimit on {settings} pool(s)" if settings else ""
    out.append(f"{verb} {writes if report.dry_run else report.applied} member change(s){tail}")
    return "\n".join(out)


NEUTRAL_LABELS = {
    "measured": "measured service rates (engine token counters; the speed column)",
    "kv-capacity": "KV capacity (no member exports speed counters)",
    "equal": "equal ratios (no speed counters, no KV capacity)",
}


def neutral_line(plan: PoolPlan) -> str:
    """What the closed loop leaks toward in this pool."""
    return f"neutral ratios from {NEUTRAL_LABELS.get(plan.neutral, plan.neutral)}"
