"""The traffic benchmark's output: the table it prints, the JSON it writes, the goal checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.experiments import REFERENCES, ScenarioResult


def fmt(x: float | None, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def _cell(res: ScenarioResult, c: str, key: str, nd: int, share: bool = False) -> str:
    med = res.median(c)[key]
    conv = (lambda v: 100 * v) if share else (lambda v: v)
    text = f"{conv(med):.{nd}f}" + ("%" if share else "")
    if len(res.seeds) > 1:
        lo, hi = res.spread(c, key)
        text += f" ({conv(lo):.{nd}f}–{conv(hi):.{nd}f})"
    return text


def table(res: ScenarioResult) -> str:
    """A plain-text table, goodput first (TTFT <= 2 s over every arrival; resets, rejections and unfinished
    requests are misses; TTFT<=1s/2s are over the served): the median over seeds, min–max in brackets."""
    head = ["contender", "goodput<=2s", "resets", "p50 s", "p90 s", "p99 s", "mean s", "TTFT<=1s", "TTFT<=2s",
            "writes/min"]
    rows = []
    for c in res.runs:
        name = c + (" (reference)" if c in REFERENCES else "")
        rows.append([name, _cell(res, c, "goodput_2s", 1, True), f"{res.median(c)['resets']:.0f}", _cell(res, c, "p50", 3), _cell(res, c, "p90", 3), _cell(res, c, "p99", 3),
                     _cell(res, c, "mean", 3), _cell(res, c, "slo_1s", 1, True), _cell(res, c, "slo_2s", 1, True),
                     _cell(res, c, "writes_per_min", 1)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    sc = res.scenario
    a = sc.arrivals
    what = f"{a.kind}" + (f" {a.trace} trace" if a.kind == "trace" else f" ({a.trace} token sizes)")
    title = (f"scenario {sc.name}: {len(sc.members)} members, {what} at {a.load:.0%} of pool capacity, "
             f"{sc.duration_s:g} simulated s, tick {sc.tick_ms:g} ms, seeds {','.join(map(str, res.seeds))}")
    if len(res.seeds) > 1:
        title += " (median, min–max over seeds)"
    if res.static_ratios:
        title += f"\nstatic-best ratios {list(res.static_ratios)}"
    return title + "\n" + "\n".join(lines) + f"\nwall time {res.wall:.1f} s"


def write_json(res: ScenarioResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(res.as_json(), indent=2) + "\n", encoding="utf-8")
