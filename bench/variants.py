"""Variants of the default policy, each changing one ingredient, against least-connections (docs/policy.md).

    nice -n 10 python -m bench.variants                  # the table docs/policy.md quotes
    python -m bench.variants --only equalkv4 --loads 0.9 --seeds 1

Each variant is a bench-only scorer or setting passed to the planner (`plan_pool(scorer=...,
prefill_weight=...)`); nothing is registered in `controller.policy.scoring.POLICIES` and no module constant is
changed. Cells: the median over seeds of each variant's p50 and p99 divided by the same median of
least-connections (as the goal table in docs/benchmarks.md divides them), Poisson arrivals; a second
table gives the median writes per minute. Runs are shortened with `Scenario.with_duration`, as in
`bench.matrix`, so a slowdown comes at the same share of the run.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

from controller.policy import scoring

from bench import scenario as S
from bench.simulator import RLC, Contender, run

SCENARIOS = ("homo4", "kvprop4", "equalkv4", "fastsmallkv4", "mml4", "degrade4", "three8")


def _variant(name: str, prefill_weight: float | None = None, **kw: object) -> Contender:
    scorer = functools.partial(scoring.balance_step, **kw) if kw else None
    return Contender(name, "ctl", RLC, "balance", scorer=scorer, prefill_weight=prefill_weight)


VARIANTS: dict[str, Contender] = {c.name: c for c in [
    _variant("default"),
    Contender("no TTFT term (balance-rate, previous default)", "ctl", RLC, "balance-rate"),
    _variant("TTFT weight 0.2", ttft_weight=0.2, ttft_weight_large=0.1),
    _variant("TTFT without dead zone", ttft_dead_zone=0.0),
    _variant("TTFT full weight in pools of 8+", ttft_weight_large=scoring.BALANCE_TTFT_WEIGHT),
    _variant("min leak 0.1 (reach the neutral)", min_leak=0.1),
    _variant("rate: decode only", prefill_weight=0.0),
    _variant("speed exponent 1.0", speed_prior=1.0),
    _variant("linear KV term", kv_power=1.0),
    _variant("no neutral (leak toward equal)", prior=0.0, speed_prior=0.0),
    Contender("balance-kv (the default before)", "ctl", RLC, "balance-kv"),
]}


def _job(args: tuple) -> tuple[str, float, int, dict[str, dict]]:
    name, load, seed, duration = args
    sc = S.load(Path(__file__).resolve().parent / "scenarios" / f"{name}.yaml").with_duration(duration)
    sc = sc.with_arrivals(kind="poisson", trace="conv", load=load, seed=seed)
    out = {"lc": run(sc, Contender("lc", "lb", "least-connections-member")).summary()}
    for v, con in VARIANTS.items():
        out[v] = run(sc, con).summary()
    return name, load, seed, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.variants", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--loads", default="0.5,0.9")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    names = [x for x in args.only.split(",") if x]
    loads = [float(x) for x in args.loads.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    jobs = [(n, ld, s, args.duration) for n in names for ld in loads for s in seeds]
    with mp.get_context("fork").Pool(max(1, args.workers)) as pool:
        results = pool.map(_job, jobs, chunksize=1)
    cols = [(n, ld) for n in names for ld in loads]
    print(f"p50/LC and p99/LC (medians over seeds {args.seeds}), Poisson arrivals, {args.duration:g} simulated s per run\n")
    _table(results, cols, lambda m, lc: f"{m['p50'] / lc['p50']:.2f} / {m['p99'] / lc['p99']:.2f}")
    print(f"\nBIG-IP writes per minute (median over seeds {args.seeds})\n")
    _table(results, cols, lambda m, lc: f"{m['writes_per_min']:.1f}")
    return 0


def _table(results: list, cols: list[tuple[str, float]], cell) -> None:
    print("| variant | " + " | ".join(f"{n} {ld:.0%}" for n, ld in cols) + " |")
    print("| --- | " + " | ".join("---:" for _ in cols) + " |")
    for v in VARIANTS:
        cells = []
        for n, ld in cols:
            rs = [r for (rn, rl, _, r) in results if rn == n and rl == ld]
            med = {k: statistics.median(r[v][k] for r in rs) for k in ("p50", "p99", "writes_per_min")}
            lc = {k: statistics.median(r["lc"][k] for r in rs) for k in ("p50", "p99")}
            cells.append(cell(med, lc))
        print(f"| {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
