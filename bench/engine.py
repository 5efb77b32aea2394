"""How fast the simulated engine runs in virtual time (docs/engine-model.md, "Measured").

Replays one hour of the conv trace at a share of the capacity of 16 mixed engines (4 of each preset),
advancing every engine to every arrival, with a ratio-least-connections router (ratio = capacity) in
Python, and prints requests per CPU second.

    python bench/engine.py [LOAD]        # LOAD defaults to 0.85
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

if __package__ in (None, ""):  # run as a script: `python bench/engine.py`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from controller.sim import pages
from controller.sim.engine import Engine, Request, preset
from controller.sim.trace import capacity_estimate, duration, load_trace, repeat, scale_to_rate

KINDS = ["a100-40g", "a100-80g", "h100-80g", "l40s-48g"] * 4


def main() -> None:
    ap = argparse.ArgumentParser(prog="python bench/engine.py", description=__doc__.splitlines()[0])
    ap.add_argument("load", nargs="?", type=float, default=0.85, help="share of the 16 engines' capacity (default 0.85)")
    load = ap.parse_args().load
    specs = [preset(k, name=f"e{i}") for i, k in enumerate(KINDS)]
    base = load_trace("conv")
    caps = [capacity_estimate(s, base) for s in specs]
    trace = scale_to_rate(base, load * sum(caps))
    trace = [r for r in repeat(trace, max(1, math.ceil(3600 / duration(trace)))) if r.t < 3600]
    conns = [0] * len(specs)

    def finished(i):
        def on_finish(_req):
            conns[i] -= 1
        return on_finish

    engines = [Engine(s, on_finish=finished(i), keep_finished=False) for i, s in enumerate(specs)]
    t0 = time.process_time()
    for r in trace:
        for e in engines:
            e.advance(r.t)
        i = min(range(len(engines)), key=lambda j: (conns[j] + 1) / caps[j])
        conns[i] += 1
        engines[i].submit(Request(r.prompt_tokens, r.output_tokens), r.t)
    for e in engines:
        e.advance(math.inf)
    cpu = time.process_time() - t0
    snaps = [e.snapshot() for e in engines]
    print(f"load {load:.0%} of {sum(caps):.1f} req/s: {len(trace)} requests in one simulated hour, "
          f"{sum(s.num_finished for s in snaps)} finished, {sum(s.num_steps for s in snaps)} steps")
    print(f"CPU {cpu:.2f} s -> {len(trace) / cpu:,.0f} simulated requests per CPU second")
    page_and_snapshot_cost(engines[0])


def page_and_snapshot_cost(engine: Engine, n: int = 200) -> None:
    t0 = time.perf_counter()
    for _ in range(n):
        snap = engine.snapshot()
    t1 = time.perf_counter()
    for _ in range(n):
        page = pages.render(snap, "vllm")
    t2 = time.perf_counter()
    print(f"snapshot {(t1 - t0) / n * 1e6:.0f} us; vLLM page ({len(page):,} bytes) renders in {(t2 - t1) / n * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
