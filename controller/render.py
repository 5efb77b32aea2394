"""Plain-text tables for `plan`, `--dry-run` and `check`: what an F5 admin reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controller.model import MemberPlan, PoolPlan, TickReport

PLAN_COLUMNS = ("pool", "member", "waiting", "running", "kv", "score", "ratio", "limit", "action", "reason")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _arrow(old: int, new: int) -> str:
    return f"{old}" if old == new else f"{old} -> {new}"


def plan_row(pool: str, p: MemberPlan) -> list[object]:
    s = p.sample
    return [
        pool,
        p.member.endpoint,
        None if s is None else s.waiting,
        None if s is None else s.running,
        None if s is None or s.kv_usage is None else f"{s.kv_usage:.0%}",
        None if p.score is None else f"{p.score:.3f}",
        _arrow(p.member.ratio, p.ratio),
        _arrow(p.member.connection_limit, p.connection_limit),
        p.action.value,
        p.reason,
    ]


def plan_table(report: TickReport) -> str:
    rows = [plan_row(str(plan.pool.ref), p) for plan in report.plans for p in plan.members]
    out = [table(PLAN_COLUMNS, rows)]
    for plan in report.plans:
        if plan.note:
            out.append(f"{plan.pool.ref}: {plan.note}")
        if plan.neutral:
            out.append(neutral_line(plan))
        if not plan.pool.honours_ratio:
            out.append(f"{plan.pool.ref}: WARNING load-balancing mode {plan.pool.load_balancing_mode} ignores ratios")
    for err in report.errors:
        out.append(f"error: {err}")
    writes = sum(len(plan.writes) for plan in report.plans)
    verb = "would write" if report.dry_run else "wrote"
    out.append(f"{verb} {writes if report.dry_run else report.applied} member change(s)")
    return "\n".join(out)


NEUTRAL_LABELS = {
    "measured": "measured service rates (engine token counters)",
    "kv-capacity": "KV capacity (no member exports speed counters)",
    "equal": "equal ratios (no speed counters, no KV capacity)",
}


def neutral_line(plan: PoolPlan) -> str:
    """What the closed loop leaks toward in this pool, and each member's relative speed and its source."""
    label = NEUTRAL_LABELS.get(plan.neutral, plan.neutral)
    speeds = ", ".join(f"{p.member.endpoint} {p.speed:.2f} {p.speed_source}" for p in plan.members if p.speed is not None)
    return f"{plan.pool.ref}: neutral ratios from {label}" + (f": {speeds}" if speeds else "")
