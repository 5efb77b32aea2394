"""`lc` and `default` at chosen matrix points, the default under variants of module constants: the quick
way to see what one constant does to the goal figures before a matrix rerun (docs/policy.md).

    nice -n 15 python -m bench.points --only homo4,kvprop4 \
        --variant capacity.TTFT_DECAY_S=10 --variant capacity.TTFT_DECAY_S=5

Each point of `bench.matrix.points` (its loads, traces and pool queue settings, its durations) runs `lc`
and, per variant, `default` on seeds 1-3 (2 worker processes); the table has medians over the seeds. A
variant sets `module.NAME=value` on `controller.engines.capacity`, `controller.policy.scoring` or `controller.policy.weights` in
the worker before the run (comma-separated for several); no variant: the code as it stands. No static-best
search, no references: minutes, not the matrix's 45.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/points.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.engines import capacity
from controller.policy import scoring, weights

from bench import scenario as S
from bench.experiments import contenders
from bench.matrix import DURATION, DURATION_16, points
from bench.simulator import run

ROOT = Path(__file__).resolve().parent.parent
MODULES = {"capacity": capacity, "policy": scoring, "weights": weights}
KEYS = ("goodput_2s", "p50", "p99", "writes_per_min")


def parse_variant(text: str) -> tuple[tuple[str, str, object], ...]:
    """`capacity.TTFT_DECAY_S=5,scoring.X=1` -> ((module, name, value), ...); values are Python literals."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        module, _, name = key.partition(".")
        if module not in MODULES or not hasattr(MODULES[module], name):
            raise SystemExit(f"--variant {part!r}: expected module.NAME=value, module one of {', '.join(MODULES)}")
        out.append((module, name, ast.literal_eval(value)))
    return tuple(out)


def _job(args: tuple) -> tuple[tuple, dict]:
    name, kind, trace, load, queue, variant, seed, contender = args
    # a worker runs many jobs: every constant a variant sets is put back afterwards, so no job inherits
    # another variant's values
    saved = [(module, attr, getattr(MODULES[module], attr)) for module, attr, _ in variant]
    try:
        for module, attr, value in variant:
            setattr(MODULES[module], attr, value)
        sc = S.load(str(ROOT / "bench" / "scenarios" / f"{name}.yaml"))
        sc = sc.with_duration(DURATION_16 if name.endswith("16") else DURATION).with_arrivals(kind=kind, trace=trace, load=load)
        if queue:
            sc = sc.with_pool(queue_on_connection_limit=True)
        return args, run(sc.with_arrivals(seed=seed), contenders()[contender]).summary()
    finally:
        for module, attr, value in saved:
            setattr(MODULES[module], attr, value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.points", description=__doc__.split("\n")[0])
    ap.add_argument("--only", required=True, help="comma-separated scenario names (bench/scenarios)")
    ap.add_argument("--variant", action="append", default=[], help="module.NAME=value[,...]; repeatable")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant] or [()]
    seeds = [int(x) for x in args.seeds.split(",")]
    jobs = []
    for name in args.only.split(","):
        for kind, trace, load, queue in points(name):
            for seed in seeds:
                jobs.append((name, kind, trace, load, queue, (), seed, "lc"))
                jobs += [(name, kind, trace, load, queue, v, seed, "default") for v in variants]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as ex:
        results = list(ex.map(_job, jobs))
    runs: dict[tuple, list[dict]] = {}
    for (name, kind, trace, load, queue, variant, _seed, contender), summary in results:
        runs.setdefault((name, kind, trace, load, queue, contender, variant), []).append(summary)
    print("| point | contender | goodput_2s | p50 s | p99 s | writes/min |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (name, kind, trace, load, queue, contender, variant), summaries in runs.items():
        med = {k: statistics.median(s[k] for s in summaries) for k in KEYS}
        point = f"{name} {trace + ' trace' if kind == 'trace' else 'poisson'} {load:g}{' queued' if queue else ''}"
        label = contender + (" " + ",".join(f"{m}.{n}={v}" for m, n, v in variant) if variant else "")
        print(f"| {point} | {label} | {100 * med['goodput_2s']:.1f}% | {med['p50']:.3f} | {med['p99']:.2f} | "
              f"{med['writes_per_min']:.1f} |")
    print(f"\n{len(jobs)} runs, {time.perf_counter() - t0:.0f} s wall", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
