"""Memory and time of telemetry's hour of history (the live page's ring buffer) at 1,000 members.

    .venv/bin/python bench/history_memory.py                       # 1,000 members in 4 pools, one hour
    .venv/bin/python bench/history_memory.py --members 1000 --pools 4 --ticks 480 --step 7.5

What it measures: a real `Telemetry` fed a full hour of hand-built tick reports (every member fresh,
a tenth of them changing ratio each tick, speed and TTFT set, so every field of every slot holds a number),
on a FakeClock moved `--step` seconds per report. The buffer's size does not depend on the tick: 480
reports 7.5 s apart fill every slot a 1 s tick fills in an hour (the 120 per-tick slots and the 360
10-second slots), in an eighth of the time. Printed:

- the ring buffers' own bytes (`History.nbytes`: float32 arrays and time axes) once the hour is full,
  and after another 600 ticks (it must not grow);
- the Python heap the whole telemetry object holds (tracemalloc, after the hour: rings, member keys,
  the /status views, Prometheus series);
- the time of one `observe()` at that size, and the size and build time of a full /history.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc

from controller.clock import FakeClock
from controller.config.schema import TelemetryConfig
from controller.model import (
    Action,
    Kind,
    Member,
    MemberPlan,
    Outcome,
    PoolPlan,
    PoolRef,
    PoolState,
    Reason,
    Sample,
    SpeedCounters,
    TickReport,
)
from controller.telemetry import Telemetry


def reports(members: int, pools: int, tick: int) -> TickReport:
    per = members // pools
    plans, outcomes = [], []
    for p in range(pools):
        ref = PoolRef(f"llm-pool-{p}")
        rows = []
        for i in range(per):
            m = Member(f"10.{p}.{i // 250}.{i % 250}:8000", "Common", f"10.{p}.{i // 250}.{i % 250}", 8000,
                       ratio=50 + (i + tick) % 50, connection_limit=64)
            counters = SpeedCounters(ttft_sum=0.2 * tick * (i + 1), ttft_count=float(tick * (i + 1)))
            sample = Sample(float(i % 7), running=float(i % 30), kv_usage=(i % 100) / 100, engine="vllm", counters=counters)
            write = (i + tick) % 10 == 0
            planned = 50 + (i + tick + 1) % 50 if write else m.ratio
            rows.append(MemberPlan(member=m, sample=sample, score=float(planned), ratio=planned, connection_limit=64,
                                   action=Action.WRITE if write else Action.HOLD, reason=f"target ratio {planned}",
                                   speed=1.0 + i % 3, speed_source="measured"))
            if write:
                outcomes.append(Outcome(kind=Kind.MEMBER, reason=Reason.APPLIED, pool=ref.full_path, member=m.key))
        plans.append(PoolPlan(PoolState(ref, "ratio-least-connections-member", tuple(r.member for r in rows)), tuple(rows)))
        outcomes.append(Outcome(kind=Kind.POOL, reason=Reason.READ, pool=ref.full_path))
    return TickReport(started=0.0, finished=0.2, plans=tuple(plans), outcomes=tuple(outcomes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--pools", type=int, default=4)
    ap.add_argument("--ticks", type=int, default=480, help="reports to feed (default 480: the hour at --step 7.5)")
    ap.add_argument("--step", type=float, default=7.5, help="seconds of (fake) time between reports")
    args = ap.parse_args()

    clock = FakeClock()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tel = Telemetry(TelemetryConfig(port=0), clock=clock, tick_seconds=1.0)
    started = time.perf_counter()
    for t in range(args.ticks):
        tel.observe(reports(args.members, args.pools, t))
        clock.advance(args.step)
    fill = time.perf_counter() - started
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - base
    rings = tel.history.nbytes()
    tracemalloc.stop()

    timings = []
    for t in range(args.ticks, args.ticks + 100):
        report = reports(args.members, args.pools, t)
        t0 = time.perf_counter()
        tel.observe(report)
        timings.append(time.perf_counter() - t0)
        clock.advance(1.0)
    t0 = time.perf_counter()
    doc = json.dumps(tel.history_doc(), allow_nan=False)
    snapshot = time.perf_counter() - t0
    timings.sort()
    print(f"members {args.members} in {args.pools} pools, {args.ticks} reports {args.step:g} s apart "
          f"({args.ticks * args.step / 60:.0f} min of history; fed in {fill:.0f} s under tracemalloc)")
    print(f"ring buffers (float32 slots): {rings / 1e6:.1f} MB at the full hour; after 100 more ticks "
          f"{tel.history.nbytes() / 1e6:.1f} MB ({'no growth' if tel.history.nbytes() == rings else 'GREW'})")
    print(f"telemetry Python heap (tracemalloc, rings + keys + views + series): {heap / 1e6:.1f} MB")
    print(f"per member: {rings / args.members / 1e3:.1f} KB of rings")
    print(f"observe() per tick: p50 {1e3 * timings[len(timings) // 2]:.0f} ms, p99 {1e3 * timings[int(len(timings) * 0.99)]:.0f} ms")
    print(f"/history.json, all pools: {len(doc) / 1e6:.1f} MB built in {snapshot:.2f} s")


if __name__ == "__main__":
    main()
