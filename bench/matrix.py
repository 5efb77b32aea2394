"""The whole traffic-benchmark matrix: every scenario file at every load, 3 seeds, every contender.

    nice -n 10 python -m bench.matrix                 # writes bench/results/matrix.json and docs/benchmarks.md
    python -m bench.matrix --only equalkv4,homo4 --no-doc

Points (docs/benchmarks.md states each one's conditions next to its figures):

* Poisson arrivals at 50, 70 and 90% of pool capacity (pools of 16: 90%): p99 here is a latency;
* trace replay (Azure conv, and code on two pools) at 85%: bursty, a share of the requests arrives in
  10-s windows above pool capacity, so these p99s measure how an overload drains. Each trace point runs
  twice: as the scenario file has the pool (no queue: ratios are the only lever) and with
  `pool: {queue_on_connection_limit: true}` (the default then writes connection limits too); the queued
  points add `default-slo` (the opt-in queueTimeLimit mode).

Each point runs seeds 1-3 (arrivals differ per seed); figures are the median over seeds with the
min-max beside them. `static-best` is searched on seed 1 and its vector run on every seed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

from bench import scenario as S
from bench.experiments import ALL, run_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = ROOT / "bench" / "scenarios"
RESULTS = ROOT / "bench" / "results" / "matrix.json"
SEEDS = (1, 2, 3)
DURATION = 300.0  # simulated seconds of arrivals per run (5 minutes: 300 control ticks)
#: pools of 16: 4x the requests per second. Not a third of DURATION any more: writes per minute over 100 s were
#: mostly the start-up (every member written from BIG-IP's ratio 1), 2-3x the steady rate.
DURATION_16 = 200.0


def points(name: str) -> list[tuple[str, str, float, bool]]:
    """(arrival kind, trace, load, pool queues at its connection limits) for one scenario file."""
    large = name.endswith("16")
    pts = [("poisson", "conv", ld, False) for ld in ((0.9,) if large else (0.5, 0.7, 0.9))]
    traces = ["conv"] + (["code"] if name in ("kvprop4", "equalkv4") else [])
    pts += [("trace", t, 0.85, q) for t in traces for q in (False, True)]
    return pts


def _job(args: tuple) -> dict:
    path, kind, trace, load, queue, duration, seeds = args
    sc = S.load(path)
    sc = sc.with_duration(duration).with_arrivals(kind=kind, trace=trace, load=load)
    if queue:
        sc = sc.with_pool(queue_on_connection_limit=True)
    res = run_scenario(sc, seeds, (*ALL, "default-slo") if queue else ALL)
    arr = S.arrivals(sc)
    over = S.overload_share(arr, sc.duration_s, S.pool_capacity(sc))
    return {"scenario": sc.name, "kind": kind, "trace": trace, "load": load, "queue": queue, "seeds": list(seeds),
            "duration_s": duration, "members": len(sc.members), "requests": len(arr), "overload_share": over,
            "static_ratios": list(res.static_ratios), "wall": res.wall,
            "median": {c: res.median(c) for c in res.runs},
            "spread": {c: {k: res.spread(c, k) for k in ("p50", "p99", "slo_2s", "goodput_2s", "writes_per_min")}
                       for c in res.runs},
            "json": res.as_json()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.matrix", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: every file in bench/scenarios)")
    ap.add_argument("--duration", type=float, default=DURATION, help="simulated s per run (pools of 16: DURATION_16/DURATION of it)")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--queued-only", action="store_true", help="only the points where the pool queues at its limits")
    ap.add_argument("--merge", action="store_true",
                    help="replace the matching points of --out and keep the others (the rerun is listed in its meta)")
    args = ap.parse_args(argv)
    files = sorted(SCENARIO_DIR.glob("*.yaml"))
    only = {x for x in args.only.split(",") if x}
    if only:
        files = [f for f in files if f.stem in only]
    seeds = tuple(int(x) for x in args.seeds.split(","))
    jobs = [(str(f), *pt, args.duration * (DURATION_16 / DURATION if f.stem.endswith("16") else 1.0), seeds)
            for f in files for pt in points(f.stem) if pt[3] or not args.queued_only]
    jobs.sort(key=lambda j: -("16" in Path(j[0]).stem) * 10 - j[3] - j[4])  # biggest first: the workers finish together
    t0 = time.perf_counter()
    print(f"{len(jobs)} points x {len(seeds)} seeds, {args.duration:g} simulated s per run, {args.workers} workers", flush=True)
    out = []
    with mp.get_context("fork").Pool(max(1, args.workers)) as pool:
        for k, r in enumerate(pool.imap_unordered(_job, jobs), 1):
            out.append(r)
            d, lc = r["median"]["default"], r["median"]["lc"]
            print(f"[{k}/{len(jobs)}] {r['scenario']:14s} {r['kind']:7s} {r['trace']} {r['load']:.2f}"
                  f"{' queue' if r['queue'] else ''}: goodput_2s {d['goodput_2s']:.3f} vs lc {lc['goodput_2s']:.3f}, "
                  f"default/lc p50 {d['p50'] / lc['p50']:.2f} p99 {d['p99'] / lc['p99']:.2f} ({r['wall']:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    command = "python -m bench.matrix" + (f" --only {args.only}" if args.only else "") \
        + (" --queued-only" if args.queued_only else "") + (" --merge" if args.merge else "")
    meta = {"command": command, "seeds": list(seeds), "duration_s": args.duration,
            "duration_16_s": args.duration * DURATION_16 / DURATION, "wall_s": wall, "workers": args.workers}
    if args.merge and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text(encoding="utf-8"))

        def key(p: dict) -> tuple:
            return p["scenario"], p["kind"], p["trace"], p["load"], p.get("queue", False)

        fresh = {key(p) for p in out}
        out = [p for p in old["points"] if key(p) not in fresh] + out
        meta = {**old["meta"], "reruns": [*old["meta"].get("reruns", []),
                                          {"command": command, "points": len(fresh), "wall_s": wall,
                                           "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "points": out}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({wall / 60:.1f} min)")
    if not args.no_doc:
        from bench import matrix_doc
        matrix_doc.write(args.out, ROOT / "docs" / "benchmarks.md")
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
