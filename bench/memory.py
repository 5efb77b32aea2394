"""Memory over 10,000 ticks: does the controller's RSS grow?

    .venv/bin/python bench/memory.py                          # 10,000 ticks, 20 members, 2 pools
    .venv/bin/python bench/memory.py --ticks 10000 --members 20

What it measures: the RSS of the controller process only, wired as `run` wires it (daemon.build:
BigIPClient over HTTPS with its token, Scraper with its thread pool and keep-alive connections,
Reconciler with its observation memory, fault log and write budget). The engines' pages (full-size
vLLM pages, served without delay: latency is not the point here) and the BIG-IP emulator run in a child
process (bench/_common.py), so their request logs do not count. The pages rotate every 25 ticks, so
ratios keep changing and the write path (pool re-read, PATCH) runs too. Controller time is a FakeClock
moved 1 s per tick (pool membership re-read every 10 ticks, as with the default pool_fetch_interval).

Printed: RSS after a warm-up, then every 1,000 ticks, and the growth from the warm-up to the end
(target < 5 MB), plus the number of Python objects tracked by the GC (a leak of Python objects shows
there first).
"""

from __future__ import annotations

import argparse
import gc
import time

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Edges, collect, machine, quiet_logs, rss_mb
from controller.loop import daemon
from controller.clock import FakeClock

TARGET_MB = 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=10_000)
    ap.add_argument("--members", type=int, default=20)
    ap.add_argument("--pools", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--every", type=int, default=1000)
    args = ap.parse_args()
    quiet_logs()
    print(f"# bench/memory.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"# {args.ticks} ticks after {args.warmup} warm-up ticks, {args.members} members in {args.pools} pools; "
          "controller RSS only (edges in a child process)")
    with Edges(args.members, latency=0.0, pools=args.pools) as edges:
        edges.call("rotate", args.members * 25)  # every member's page moves on every 25 ticks
        clock = FakeClock()
        cfg = edges.config(concurrency=32, pool_fetch_interval=10.0, deadline=5.0)
        rec = daemon.build(cfg, dry_run=False, clock=clock)
        writes = failed = not_ok = 0

        def tick() -> None:
            nonlocal writes, failed, not_ok
            report = rec.tick()
            writes += report.applied
            failed += report.failed
            not_ok += sum(1 for p in report.plans for m in p.members if m.sample is None)
            clock.advance(1.0)

        for _ in range(args.warmup):
            tick()
        collect()
        base, base_objs = rss_mb(), len(gc.get_objects())
        print(f"{'ticks':>6} | {'RSS MB':>7} | {'growth MB':>9} | {'GC objects':>10} | {'writes':>6} | {'s/1000 ticks':>12}")
        print(f"{0:>6} | {base:7.2f} | {0.0:9.2f} | {base_objs:>10} | {writes:>6} | {'':>12}", flush=True)
        t = time.perf_counter()
        samples = []
        for i in range(1, args.ticks + 1):
            tick()
            if i % args.every == 0 or i == args.ticks:
                collect()
                now = rss_mb()
                samples.append(now)
                print(f"{i:>6} | {now:7.2f} | {now - base:9.2f} | {len(gc.get_objects()):>10} | {writes:>6} | "
                      f"{time.perf_counter() - t:12.1f}", flush=True)
                t = time.perf_counter()
        daemon.close(rec)
        stats = edges.stats()
    growth = samples[-1] - base
    print(f"# growth over {args.ticks} ticks: {growth:+.2f} MB (max {max(samples) - base:+.2f} MB); target < {TARGET_MB} MB: "
          f"{'met' if growth < TARGET_MB else 'MISSED'}")
    print(f"# writes {writes}, failed writes {failed}, member-ticks without a sample {not_ok}, "
          f"page requests {stats['page_requests']}, TCP connections opened {stats['page_connections']}, "
          f"BIG-IP requests since the last clear {stats['bigip_requests']}, live tokens after close {stats['live_tokens']}")
    return 0 if growth < TARGET_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
