"""docs/benchmarks.md from the matrix results (bench/results/matrix.json): generated, never edited by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench import scenario as S
from bench.experiments import contenders

HETERO_GOAL_LC, HETERO_GOAL_SB, MEDIAN_GOAL, STATIC_GOAL, WRITES_GOAL = 0.7, 0.8, 1.05, 1.15, 30.0
ORDER = ("lc", "rr", "sideband", "sideband-10s", "default", "balance-rate", "static-best", "jsed")


def _f(x: float | None, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _point_label(p: dict) -> str:
    what = f"Poisson {p['load']:.0%}" if p["kind"] == "poisson" else f"{p['trace']} trace {p['load']:.0%}"
    return what


def goal_rows(points: list[dict]) -> tuple[list[str], dict]:
    rows = ["| scenario | arrivals | p50 / LC (≤ 1.05) | p99 / LC (hetero ≤ 0.7, homo ≤ 1.05) | p99 / sideband (hetero ≤ 0.8) "
            "| p99 / static-best (≤ 1.15; degrade < 1) | TTFT ≤ 2 s vs LC (≥) | writes/min (16: ≤ 30) "
            "| p50, p99 / previous default |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tally: dict[str, list[bool]] = {k: [] for k in ("p50", "p99_lc", "p99_sb", "static", "slo", "writes")}
    for p in points:
        m = p["median"]
        d, lc, sb, st = m["default"], m["lc"], m["sideband"], m["static-best"]
        homo = p["scenario"].startswith("homo")
        r50, r99, rsb, rst = d["p50"] / lc["p50"], d["p99"] / lc["p99"], d["p99"] / sb["p99"], d["p99"] / st["p99"]
        g99 = MEDIAN_GOAL if homo else HETERO_GOAL_LC
        gst = rst
        ok_st = rst < 1.0 if p["scenario"].startswith("degrade") else rst <= STATIC_GOAL
        ok = {"p50": r50 <= MEDIAN_GOAL, "p99_lc": r99 <= g99, "p99_sb": homo or rsb <= HETERO_GOAL_SB,
              "static": ok_st, "slo": d["slo_2s"] >= lc["slo_2s"],
              "writes": p["members"] < 16 or d["writes_per_min"] <= WRITES_GOAL}
        for k, v in ok.items():
            tally[k].append(v)
        rows.append(
            f"| {p['scenario']} | {_point_label(p)} | {_f(r50)} {_mark(ok['p50'])} | {_f(r99)} {_mark(ok['p99_lc'])} | "
            + ("n/a" if homo else f"{_f(rsb)} {_mark(ok['p99_sb'])}")
            + f" | {_f(gst)} {_mark(ok['static'])} | {d['slo_2s']:.1%} vs {lc['slo_2s']:.1%} {_mark(ok['slo'])} | "
            f"{_f(d['writes_per_min'], 1)}" + (f" {_mark(ok['writes'])}" if p["members"] >= 16 else "") + " | "
            + (f"{_f(d['p50'] / m['balance-rate']['p50'])}, {_f(d['p99'] / m['balance-rate']['p99'])} |" if "balance-rate" in m else "– |"))
    return rows, tally


def _range(values: list[float], nd: int = 2) -> str:
    return f"{min(values):.{nd}f}–{max(values):.{nd}f}" if values else "–"


def summary_rows(points: list[dict]) -> list[str]:
    """The ranges README "Results" quotes: default / reference, per group of points (medians over seeds)."""
    groups = {
        "heterogeneous, Poisson 50–90%": [p for p in points if not p["scenario"].startswith("homo") and p["kind"] == "poisson"],
        "heterogeneous, bursty trace 85%": [p for p in points if not p["scenario"].startswith("homo") and p["kind"] == "trace"],
        "homogeneous, all": [p for p in points if p["scenario"].startswith("homo")],
    }
    out = ["| points | n | p50 / LC | p99 / LC | p99 / sideband (1 s) | p99 / sideband-10s | p99 / static-best | p99 / jsed "
           "| p50, p99 / previous default (`balance-rate`) | TTFT ≤ 2 s: default − LC (points) | writes/min, pools of 4–8 "
           "| writes/min, pools of 16 |",
           "| --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, ps in groups.items():
        if not ps:
            continue
        def r(ref: str, key: str = "p99", ps: list[dict] = ps) -> str:
            return _range([p["median"]["default"][key] / p["median"][ref][key] for p in ps if ref in p["median"]])
        slo = [100 * (p["median"]["default"]["slo_2s"] - p["median"]["lc"]["slo_2s"]) for p in ps]
        small = [p["median"]["default"]["writes_per_min"] for p in ps if p["members"] < 16]
        large = [p["median"]["default"]["writes_per_min"] for p in ps if p["members"] >= 16]
        out.append(f"| {label} | {len(ps)} | {r('lc', 'p50')} | {r('lc')} | {r('sideband')} | {r('sideband-10s')} | "
                   f"{r('static-best')} | {r('jsed')} | {r('balance-rate', 'p50')}, {r('balance-rate')} | {_range(slo, 1)} pp | "
                   f"{_range(small, 1)} | {_range(large, 1)} |")
    return out


def scenario_tables(points: list[dict]) -> list[str]:
    labels = {c.name: c.label for c in contenders().values()}
    labels["static-best"] = "reference: best fixed ratio vector, searched in hindsight on seed 1"
    out = []
    by: dict[str, list[dict]] = {}
    for p in points:
        by.setdefault(p["scenario"], []).append(p)
    for name in sorted(by):
        sc = S.load(Path(__file__).resolve().parent / "scenarios" / f"{name}.yaml")
        desc = sc.extra.get("description") or ""
        out.append(f"\n### {name}\n")
        members = ", ".join(f"{m.name} (prefill {m.prefill_speed:g}, decode {m.decode_speed:g}, KV {m.kv_tokens / 1000:.0f}k"
                            + (f", max_model_len {m.max_model_len}" if m.max_model_len != 16_384 else "") + ")"
                            for m in sc.members[:8])
        if len(sc.members) > 8:
            members += f", … ({len(sc.members)} members: the first 8 repeated)"
        out.append((desc + ". " if desc else "") + f"Members: {members}."
                   + ("".join(f" Slowdown: {s.member} at {s.factor:g}× speed from {s.at_s:g} s." for s in sc.slowdowns)))
        out.append(f"File: `bench/scenarios/{name}.yaml`.\n")
        for p in sorted(by[name], key=lambda q: (q["kind"] != "poisson", q["trace"], q["load"])):
            out.append(f"\n**{_point_label(p)}**: {p['requests']} requests in {p['duration_s']:g} s (seed {p['seeds'][0]}); "
                       f"{p['overload_share']:.0%} arrive in a 10-s window above pool capacity; "
                       f"static-best ratios {p['static_ratios']}; seeds {','.join(map(str, p['seeds']))}.\n")
            out.append("| contender | p50 s | p90 s | p99 s | mean s | TTFT ≤ 1 s | TTFT ≤ 2 s | writes/min |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for c in ORDER:
                if c not in p["median"]:
                    continue
                m, s = p["median"][c], p["spread"][c]
                name_c = f"**{c}**" if c == "default" else (f"{c} (ref.)" if c in ("static-best", "jsed") else c)
                out.append(f"| {name_c} | {_f(m['p50'], 3)} ({_f(s['p50'][0], 3)}–{_f(s['p50'][1], 3)}) | {_f(m['p90'], 3)} | "
                           f"{_f(m['p99'], 3)} ({_f(s['p99'][0], 3)}–{_f(s['p99'][1], 3)}) | {_f(m['mean'], 3)} | "
                           f"{m['slo_1s']:.1%} | {m['slo_2s']:.1%} | {_f(m['writes_per_min'], 1)} |")
    out.append("\n| contender | what |\n| --- | --- |")
    out.extend(f"| `{c}` | {labels.get(c, '')} |" for c in ORDER)
    return out


def write(results: str | Path, doc: str | Path) -> None:
    data = json.loads(Path(results).read_text())
    meta, points = data["meta"], data["points"]
    points.sort(key=lambda p: (p["scenario"], p["kind"] != "poisson", p["trace"], p["load"]))
    goals, tally = goal_rows(points)
    summary = ", ".join(f"{k}: {sum(v)}/{len(v)} met" for k, v in tally.items())
    L = [
        "# Traffic benchmark: does pushing BIG-IP ratios help, whatever the relation between KV and speed?\n",
        f"Generated by `nice -n 10 {meta['command']}` from `bench/results/matrix.json`: {len(points)} points, seeds "
        f"{','.join(map(str, meta['seeds']))}, {meta['duration_s']:g} simulated seconds of arrivals per run "
        f"({meta.get('duration_16_s', meta['duration_s']):g} s for the pools of 16, which see 4× the requests per second; "
        "slowdowns at the same share of the run), "
        f"{meta['wall_s'] / 60:.0f} min of wall time on {meta['workers']} worker processes (2 shared cores). "
        "Do not edit by hand (`bench/matrix_doc.py`). One point by hand: "
        "`python bench/traffic.py --scenario bench/scenarios/equalkv4.yaml --load 0.9 --seeds 1,2,3 --duration 300`.\n",
        METHOD,
        "\n## Summary: the default policy against each contender\n",
        "Ranges over points of the median (over seeds) of the default's figure divided by the contender's.\n",
        *summary_rows(points),
        "\n## Goals (issue 10), for the default policy\n",
        f"Median over seeds of each figure, divided by the same median of the reference. Tally: {summary}.\n",
        *goals,
        GOAL_NOTE,
        "\n## Every point\n",
        "Median over seeds, (min–max) over seeds for p50 and p99.",
        *scenario_tables(points),
        LIMITS,
    ]
    Path(doc).write_text("\n".join(L) + "\n", encoding="utf-8")


METHOD = """
## How it is measured

A discrete-event simulation in virtual time (`bench/simulator.py`), nothing copied from the code it
judges: the engines are `controller.sim.engine.Engine` (continuous batching, paged KV, preemption,
**separate prefill and decode speeds per GPU class** from the datasheets, KV capacity set independently,
5% step-time noise; [engine-model.md](engine-model.md)); LTM's member selection is the emulator's data
plane (`controller.sim.dataplane`); the controller is the real `controller.planner.plan_pool` with the
shipped weight defaults, fed every tick (1 s) with the `Sample` a vLLM page would give, speed counters
included (`controller.capacity` learns each member's service rate from them). Staleness: the plan is
made 50 ms after the scrape and written ratios take effect 250 ms later (iControl REST).

* **Speeds** are relative to the reference engine (Llama-3.1-8B bf16 on an A100-80GB SXM under vLLM).
* **Load** is a share of the pool's capacity: the sum over members of the requests/s each sustains
  saturated with the arrivals' token mix (`trace.capacity_estimate`).
* **Arrivals.** Poisson: exponential gaps, token sizes drawn from the Azure conv trace; here p99 is a
  latency. Trace: the Azure conv (or code) trace compressed to the load, started at a seed-chosen offset;
  bursty, so part of it arrives above capacity and p99 measures the drain of an overload (each point
  states the share). **A seed varies the arrivals** (and the engines' step noise, and the scrape phase).
* **Metrics**: TTFT from arrival at LTM to the first token (the sideband's per-request 3 ms call
  included); p50/p90/p99 (nearest rank), mean, share of requests with TTFT ≤ 1 s and ≤ 2 s; BIG-IP
  writes per minute (one member PATCH = one write). The run drains every request after the last arrival.
* **Contenders**: `lc` and `rr` are plain LTM modes; `sideband` is the sideband scheduler's S1 weighted
  random pick, refreshed every 1 s (its best case) and every 10 s (`sideband-10s`, its shipped config);
  `default` is f5-llm-ratio's default policy on ratio-least-connections-member; `balance-rate` the previous
  default (the same loop without the TTFT term: it leaks toward the measured service rate only). **References, not bounds**: `static-best` (the best fixed ratio
  vector for the point, one ratio per member class on a coordinate search over 0.5–2.8×, run on seed 1's
  arrivals and then on every seed) and `jsed` (join-shortest-expected-delay per request,
  (in-flight + 1) / true service rate, knowing each member's real capacity and slowdowns). Either can be
  beaten: they are heuristics with knowledge the controller does not have.

Traces: Azure Public Dataset (AzureLLMInferenceTrace_conv and _code, 2023), CC-BY 4.0. **Attribution:
Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.**
"""

GOAL_NOTE = """
Heterogeneous: every scenario but `homo*`. ❌ marks a goal missed; the ratio says by how much.
[policy.md](policy.md) explains why the misses happen and which trade-off the default takes.
"""

LIMITS = """
## What the simulation does not capture

* Everything [engine-model.md](engine-model.md) lists (no prefix caching, attention cost independent of
  context length, independent step noise).
* LTM is one TMM with exact connection counts; real BIG-IPs run several TMMs (CMP), each with its own view.
* Clients never give up or retry; scrapes and writes never fail and take a fixed time.
* 300 simulated seconds per run and 3 seeds: the spread columns show how much a figure moves with the
  arrivals; differences smaller than that spread are noise.
"""
