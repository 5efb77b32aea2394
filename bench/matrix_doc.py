"""docs/benchmarks.md from the matrix results (bench/results/matrix.json): generated, never edited by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench import scenario as S
from bench.experiments import contenders

#: issue 23's goals for the default: goodput_2s at least LC's minus GOODPUT_SLACK; p50 at most MEDIAN_GOAL x LC;
#: at trace points whose LC p99 exceeds TAIL_POINT s, p99 at most TAIL_QUEUE x LC where the pool queues at its
#: limits and TAIL_RATIOS x LC where it does not; at steady heterogeneous Poisson points p99 at most
#: static-best's; on homogeneous pools p50 and p99 within HOMO_BAND of LC; pools of 16 at most WRITES_GOAL writes/min.
GOODPUT_SLACK, MEDIAN_GOAL, TAIL_POINT, TAIL_QUEUE, TAIL_RATIOS, HOMO_BAND, WRITES_GOAL = 0.005, 1.05, 5.0, 0.35, 0.6, 0.03, 30.0
ORDER = ("lc", "rr", "sideband", "sideband-10s", "default", "default-slo", "balance-rate", "static-best", "exact", "central")
REFS = ("static-best", "exact", "central")


def _f(x: float | None, nd: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _point_label(p: dict) -> str:
    what = f"Poisson {p['load']:.0%}" if p["kind"] == "poisson" else f"{p['trace']} trace {p['load']:.0%}"
    return what + (", pool queues at its limits" if p.get("queue") else "")


def _ratio(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b else math.nan


def goal_checks(p: dict) -> dict[str, tuple[bool | None, str]]:
    """Each goal of issue 23 at one point: (met, or None where it does not apply; the figure)."""
    m = p["median"]
    d, lc = m["default"], m["lc"]
    homo = p["scenario"].startswith("homo")
    r50, r99 = _ratio(d["p50"], lc["p50"]), _ratio(d["p99"], lc["p99"])
    gp = 100 * (d["goodput_2s"] - lc["goodput_2s"])
    out: dict[str, tuple[bool | None, str]] = {
        "goodput": (gp >= -100 * GOODPUT_SLACK, f"{100 * d['goodput_2s']:.1f}% vs {100 * lc['goodput_2s']:.1f}% ({gp:+.1f})"),
        "p50": (r50 <= MEDIAN_GOAL, _f(r50)),
    }
    if p["kind"] == "trace" and lc["p99"] > TAIL_POINT and not homo:
        goal = TAIL_QUEUE if p.get("queue") else TAIL_RATIOS
        out["tail"] = (r99 <= goal, f"{_f(r99)} (≤ {goal:g})")
    else:
        out["tail"] = (None, _f(r99))
    if p["kind"] == "poisson" and not homo:
        rst = _ratio(d["p99"], m["static-best"]["p99"])
        out["static"] = (rst <= 1.0, _f(rst))
    else:
        out["static"] = (None, _f(_ratio(d["p99"], m["static-best"]["p99"])))
    if homo:
        ok = abs(r50 - 1) <= HOMO_BAND and abs(r99 - 1) <= HOMO_BAND
        out["homo"] = (ok, f"{_f(r50)}, {_f(r99)}")
    else:
        out["homo"] = (None, "")
    w = d["writes_per_min"]
    out["writes"] = (w <= WRITES_GOAL if p["members"] >= 16 else None, _f(w, 1))
    return out


def _cell(check: tuple[bool | None, str]) -> str:
    ok, text = check
    return text if ok is None else f"{text} {_mark(ok)}"


def goal_rows(points: list[dict]) -> tuple[list[str], dict]:
    rows = ["| scenario | arrivals | goodput_2s default vs LC (≥ LC − 0.5) | p50 / LC (≤ 1.05) "
            "| p99 / LC (trace, LC p99 > 5 s: ≤ 0.35 queued, ≤ 0.6 not) | p99 / static-best (steady hetero: ≤ 1) "
            "| homo: p50, p99 / LC (±3%) | writes/min (16: ≤ 30) | resets | p99 / exact, central |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tally: dict[str, list[bool]] = {k: [] for k in ("goodput", "p50", "tail", "static", "homo", "writes")}
    for p in points:
        checks = goal_checks(p)
        for k, (ok, _) in checks.items():
            if ok is not None:
                tally[k].append(ok)
        m = p["median"]
        d = m["default"]
        refs = f"{_f(_ratio(d['p99'], m['exact']['p99']))}, {_f(_ratio(d['p99'], m['central']['p99']))}" \
            if "exact" in m and "central" in m else "–"
        rows.append(f"| {p['scenario']} | {_point_label(p)} | {_cell(checks['goodput'])} | {_cell(checks['p50'])} | "
                    f"{_cell(checks['tail'])} | {_cell(checks['static'])} | {_cell(checks['homo'])} | "
                    f"{_cell(checks['writes'])} | {d.get('resets', 0):.0f} | {refs} |")
    return rows, tally


def _range(values: list[float], nd: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    return f"{min(values):.{nd}f}–{max(values):.{nd}f}" if values else "–"


def groups(points: list[dict]) -> dict[str, list[dict]]:
    het = [p for p in points if not p["scenario"].startswith("homo")]
    return {
        "heterogeneous, Poisson 50–90%": [p for p in het if p["kind"] == "poisson"],
        "heterogeneous, bursty trace 85%, ratios only": [p for p in het if p["kind"] == "trace" and not p.get("queue")],
        "heterogeneous, bursty trace 85%, pool queues at its limits": [p for p in het if p["kind"] == "trace" and p.get("queue")],
        "homogeneous, all": [p for p in points if p["scenario"].startswith("homo")],
    }


def summary_rows(points: list[dict]) -> list[str]:
    """The ranges docs/results.md (and README's "Results") quote: default against each contender, per group of points (medians over seeds)."""
    out = ["| points | n | goodput_2s: default − LC (points) | p50 / LC | p99 / LC | p99 / static-best | p99 / exact "
           "| p99 / central | goodput_2s: default-slo − LC (points) | resets, default-slo | writes/min, pools of 4–8 "
           "| writes/min, pools of 16 |",
           "| --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, ps in groups(points).items():
        if not ps:
            continue

        def r(ref: str, key: str = "p99", ps: list[dict] = ps) -> str:
            return _range([_ratio(p["median"]["default"][key], p["median"][ref][key]) for p in ps if ref in p["median"]])

        gp = [100 * (p["median"]["default"]["goodput_2s"] - p["median"]["lc"]["goodput_2s"]) for p in ps]
        slo = [100 * (p["median"]["default-slo"]["goodput_2s"] - p["median"]["lc"]["goodput_2s"]) for p in ps
               if "default-slo" in p["median"]]
        resets = [100 * p["median"]["default-slo"]["unserved"] for p in ps if "default-slo" in p["median"]]
        small = [p["median"]["default"]["writes_per_min"] for p in ps if p["members"] < 16]
        large = [p["median"]["default"]["writes_per_min"] for p in ps if p["members"] >= 16]
        out.append(f"| {label} | {len(ps)} | {_range(gp, 1)} | {r('lc', 'p50')} | {r('lc')} | {r('static-best')} | "
                   f"{r('exact')} | {r('central')} | {_range(slo, 1) if slo else '–'} | "
                   f"{(_range(resets, 1) + '% of arrivals') if resets else '–'} | {_range(small, 1)} | {_range(large, 1)} |")
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
        for p in sorted(by[name], key=lambda q: (q["kind"] != "poisson", q["trace"], q["load"], q.get("queue", False))):
            out.append(f"\n**{_point_label(p)}**: {p['requests']} requests in {p['duration_s']:g} s (seed {p['seeds'][0]}); "
                       f"{p['overload_share']:.0%} arrive in a 10-s window above pool capacity; "
                       f"static-best ratios {p['static_ratios']}; seeds {','.join(map(str, p['seeds']))}.\n")
            out.append("| contender | goodput ≤ 2 s | goodput ≤ 1 s | > 10 s or never | resets | p50 s | p90 s | p99 s "
                       "| mean s | writes/min (limits) |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for c in ORDER:
                if c not in p["median"]:
                    continue
                m, s = p["median"][c], p["spread"][c]
                gs = s.get("goodput_2s", (m["goodput_2s"], m["goodput_2s"]))
                name_c = f"**{c}**" if c == "default" else (f"{c} (ref.)" if c in REFS else c)
                out.append(f"| {name_c} | {m['goodput_2s']:.1%} ({gs[0]:.1%}–{gs[1]:.1%}) | {m['goodput_1s']:.1%} | "
                           f"{m['over_10s']:.1%} | {m['resets']:.0f} | "
                           f"{_f(m['p50'], 3)} ({_f(s['p50'][0], 3)}–{_f(s['p50'][1], 3)}) | {_f(m['p90'], 3)} | "
                           f"{_f(m['p99'], 3)} ({_f(s['p99'][0], 3)}–{_f(s['p99'][1], 3)}) | {_f(m['mean'], 3)} | "
                           f"{_f(m['writes_per_min'], 1)} ({_f(m['limit_writes_per_min'], 1)}) |")
    out.append("\n| contender | what |\n| --- | --- |")
    out.extend(f"| `{c}` | {labels.get(c, '')} |" for c in ORDER)
    return out


def write(results: str | Path, doc: str | Path) -> None:
    data = json.loads(Path(results).read_text())
    meta, points = data["meta"], data["points"]
    points.sort(key=lambda p: (p["scenario"], p["kind"] != "poisson", p["trace"], p["load"], p.get("queue", False)))
    goals, tally = goal_rows(points)
    summary = ", ".join(f"{k}: {sum(v)}/{len(v)} met" for k, v in tally.items())
    L = [
        "# Traffic benchmark: goodput first, then latency, whatever the relation between KV and speed\n",
        f"Generated by `nice -n 15 {meta['command']}` from `bench/results/matrix.json`: {len(points)} points, seeds "
        f"{','.join(map(str, meta['seeds']))}, {meta['duration_s']:g} simulated seconds of arrivals per run "
        f"({meta.get('duration_16_s', meta['duration_s']):g} s for the pools of 16, which see 4× the requests per second; "
        "slowdowns at the same share of the run), "
        f"{meta['wall_s'] / 60:.0f} min of wall time on {meta['workers']} worker processes (2 shared cores). "
        + "".join(f"Rerun: `nice -n 15 {r['command']}` ({r['points']} points, {r['at']}, {r['wall_s'] / 60:.0f} min), "
                  "its points replacing the first run's. " for r in meta.get("reruns", []))
        + "Do not edit by hand (`bench/matrix_doc.py`). One point by hand: "
        "`python bench/traffic.py --scenario bench/scenarios/equalkv4.yaml --load 0.9 --seeds 1,2,3 --duration 300`.\n",
        METHOD,
        "\n## Summary: the default policy against each contender\n",
        "Ranges over points of the median (over seeds) of the default's figure divided by the contender's.\n",
        *summary_rows(points),
        "\n## Goals (issue 23), for the default policy\n",
        f"Median over seeds of each figure, divided by the same median of the reference. Tally (goals that apply "
        f"at a point): {summary}.\n",
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
5% step-time noise; [engine-model.md](engine-model.md)); LTM is the emulator's data plane
(`controller.sim.dataplane.DataPlane`: member selection, per-member connection limits and the pool's
connection queue, `queueOnConnectionLimit` FIFO with `queueDepthLimit` and `queueTimeLimit`); the
controller is the real `controller.policy.planner.plan_pool` with the shipped defaults, fed every tick (1 s)
with the `Sample` a vLLM page would give, speed counters included (`controller.engines.capacity`). Staleness:
the plan is made 50 ms after the scrape and written ratios and limits take effect 250 ms later.

* **Speeds** are relative to the reference engine (Llama-3.1-8B bf16 on an A100-80GB SXM under vLLM).
* **Load** is a share of the pool's capacity: the sum over members of the requests/s each sustains
  saturated with the arrivals' token mix (`trace.capacity_estimate`).
* **Arrivals.** Poisson: exponential gaps, token sizes drawn from the Azure conv trace; here p99 is a
  latency. Trace: the Azure conv (or code) trace compressed to the load, started at a seed-chosen offset;
  bursty, so part of it arrives above capacity and p99 measures the drain of an overload (each point
  states the share). **A seed varies the arrivals** (and the engines' step noise, and the scrape phase).
  Each trace point runs twice: on the pool as the scenario file has it (no connection queue: ratios are
  the only lever) and with `queueOnConnectionLimit` enabled (the default then sets connection limits too).
* **Goodput first**: `goodput ≤ 2 s` is the share of **all arrivals** whose first token came within 2 s;
  a request reset by `queueTimeLimit`, rejected, or not finished when the run stops (30 min after the
  last arrival) is a miss. `> 10 s or never` is the share not served within 10 s (a client's patience).
  The latency columns (p50/p90/p99 nearest rank, mean) are over the requests served, TTFT from arrival at
  LTM (LTM's queue included) to the first token; writes/min counts member PATCHes (one PATCH = one write,
  ratio and limit together), the limit writes among them in brackets.
* **Contenders**: `lc` and `rr` are plain LTM modes; `sideband` is the sideband scheduler's S1 weighted
  random pick, refreshed every 1 s (its best case) and every 10 s (`sideband-10s`, its shipped config);
  `default` is f5-llm-ratio's default on ratio-least-connections-member (ratios; connection limits too
  where the pool queues at its limits); `default-slo` the opt-in goodput mode (the pool with
  `queueTimeLimit` = half the SLO: requests queued longer are **reset**); `balance-rate` the previous
  default without the TTFT term.
* **References** (heuristics with knowledge the controller does not have; **not bounds**: each can be
  beaten, and where the default beats one the table says so):
  `static-best`, the best fixed ratio vector for the point (one ratio per member class, coordinate
  search over 0.5–2.8× on seed 1's arrivals, then run on every seed): what ratios alone, set once in
  hindsight, do; `exact`, per request, the member whose engine gives this prompt the earliest first token
  by its **exact state** (queued prompts, prefill backlog, free KV blocks and seats;
  `Engine.predict_ttft`): what a per-request dispatcher with perfect information does, which no ratio or
  limit can carry; `central`, one FIFO queue in front of the pool, each request dispatched to the member
  with the earliest predicted first token among those whose engine has nothing waiting: what LTM's queue
  with perfectly adapted connection limits could approach.

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
* Clients never give up or retry (a reset is a miss, never resent); scrapes and writes never fail and take a
  fixed time. A request LTM takes out of its queue reaches its engine at once.
* 300 simulated seconds per run and 3 seeds: the spread columns show how much a figure moves with the
  arrivals; differences smaller than that spread are noise.
"""
