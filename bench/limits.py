"""Connection limits and LTM's queue, one setting at a time, on bursty trace replay (docs/policy.md).

    nice -n 15 python -m bench.limits                       # three8 and kvprop4, conv trace 85%, seed 1
    python -m bench.limits --only three8 --seeds 1,2,3 --duration 300

Every run has the pool queue at its connection limits (`queueOnConnectionLimit`); the rows change what the
controller does with it: no limits (`drive: ratio`), limits with `limit_queue` h (the default is 8), and the
default with `queueTimeLimit` at a share of the SLO (2 s), which resets what waits longer.
Cells: goodput (TTFT <= 2 s over all arrivals), p50 and p99 over the served, writes/min (limit writes), resets;
medians over the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/limits.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.config.schema import WeightsConfig

from bench import scenario as S
from bench.simulator import RLC, Contender, run

ROOT = Path(__file__).resolve().parent.parent


def variants() -> list[Contender]:
    w = WeightsConfig(describe=False)
    out = [Contender("lc", "lb", "least-connections-member"),
           Contender("ratios only (drive: ratio)", "ctl", RLC, "balance", weights=WeightsConfig(describe=False, drive="ratio"))]
    out += [Contender(f"limits, limit_queue {h}" + (" (default)" if h == w.limit_queue else ""), "ctl", RLC, "balance",
                      weights=WeightsConfig(describe=False, limit_queue=h)) for h in (2, 8, 32)]
    out += [Contender(f"default + queueTimeLimit {share:g} x SLO", "ctl", RLC, "balance", weights=w, queue_time_share=share)
            for share in (0.5, 1.0)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="three8,kvprop4")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--trace", default="conv")
    args = ap.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    print(f"conv trace 85%, {args.duration:g} simulated s, seeds {args.seeds}, pool queueOnConnectionLimit enabled; "
          "medians over seeds\n")
    print("| scenario | controller | goodput ≤ 2 s | p50 s | p99 s | writes/min (limits) | resets |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.only.split(","):
        sc = S.load(ROOT / "bench" / "scenarios" / f"{name}.yaml").with_duration(args.duration)
        sc = sc.with_arrivals(kind="trace", trace=args.trace, load=0.85).with_pool(queue_on_connection_limit=True)
        for con in variants():
            runs = [run(sc.with_arrivals(seed=s), con).summary() for s in seeds]

            def med(k: str, runs: list[dict] = runs) -> float:
                return statistics.median(r[k] for r in runs)

            print(f"| {name} | {con.name} | {med('goodput_2s'):.1%} | {med('p50'):.3f} | {med('p99'):.2f} | "
                  f"{med('writes_per_min'):.1f} ({med('limit_writes_per_min'):.1f}) | {med('resets'):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
