"""How far behind a member's TTFT estimate runs after a burst: the time-decayed estimate (TTFT on its own
TTFT_DECAY_S) against the same with the speeds' DECAY_S and the per-window EWMA before it (docs/policy.md).

    nice -n 15 python -m bench.ttft_lag                      # three8, conv trace 85%, 600 s, seeds 1,2,3

One run per seed of the default on the scenario; every tick it records what the controller believes each
member's mean TTFT is (`controller.engines.capacity`, as the planner keeps it) and compares it with the member's
real mean TTFT over the last 10 s (first tokens given in that window). A member-second counts as lagging
when the belief is more than 2x (or under 1/2 of) the real figure. The previous estimator is the
module as of commit 1e6962c (`git show 1e6962c:controller/capacity.py`), swapped into the planner.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/ttft_lag.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.engines import capacity
from controller.policy import planner

from bench import scenario as S
from bench.experiments import contenders
from bench.simulator import Sim

ROOT = Path(__file__).resolve().parent.parent
OLD = "1e6962c"


class _Recording(Sim):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.beliefs: list[tuple[float, dict[str, float]]] = []
        self.firsts: dict[str, list[tuple[float, float]]] = {n: [] for n in self.names}

    def _tick(self, t: float) -> None:
        super()._tick(t)
        est = {k: o.speed.ttft for k, o in self.memory.items() if o.speed is not None and o.speed.ttft}
        self.beliefs.append((t, est))

    def _finish(self, req, t: float) -> None:
        self.firsts[req.engine].append((req.first_token, req.first_token - self.meta[req.rid][0]))
        super()._finish(req, t)


def lag_seconds(sim: _Recording, window: float = 10.0, factor: float = 2.0) -> dict[str, int]:
    out = {}
    for name in sim.names:
        firsts = sorted(sim.firsts[name])
        times = [f[0] for f in firsts]
        n = 0
        for t, est in sim.beliefs:
            if name not in est:
                continue
            lo, hi = bisect.bisect_left(times, t - window), bisect.bisect_right(times, t)
            if hi - lo < 3:
                continue
            real = sum(f[1] for f in firsts[lo:hi]) / (hi - lo)
            if est[name] > factor * real or est[name] < real / factor:
                n += 1
        out[name] = n
    return out


def old_capacity():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD}:controller/engines/capacity.py"], capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "capacity_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("capacity_old", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["capacity_old"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ttft_lag", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default=str(ROOT / "bench" / "scenarios" / "three8.yaml"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--duration", type=float, default=600.0)
    args = ap.parse_args(argv)
    sc = S.load(args.scenario).with_duration(args.duration).with_arrivals(kind="trace", trace="conv", load=0.85)
    con = contenders()["default"]
    print(f"{sc.name}, conv trace 85%, {args.duration:g} simulated s: member-seconds whose TTFT estimate is off "
          "by more than 2x from the last 10 s\n")
    print("| seed | estimator | per member (s) | worst member (s) | p99 TTFT s |")
    print("| ---: | --- | --- | ---: | ---: |")
    current = f"time-decayed (TTFT {capacity.TTFT_DECAY_S:g} s, speeds {capacity.DECAY_S:g} s)"
    estimators = ((f"per-window EWMA ({OLD})", old_capacity(), capacity.TTFT_DECAY_S),
                  (f"time-decayed ({capacity.DECAY_S:g} s, TTFT too)", capacity, capacity.DECAY_S),
                  (current, capacity, capacity.TTFT_DECAY_S))
    for seed in (int(x) for x in args.seeds.split(",")):
        for label, mod, ttft_decay in estimators:
            planner.capacity = mod  # type: ignore[attr-defined]
            kept, capacity.TTFT_DECAY_S = capacity.TTFT_DECAY_S, ttft_decay
            try:
                sim = _Recording(sc.with_arrivals(seed=seed), con)
                res = sim.run()
            finally:
                planner.capacity = capacity  # type: ignore[attr-defined]
                capacity.TTFT_DECAY_S = kept
            lags = lag_seconds(sim)
            per = ", ".join(f"{k} {v}" for k, v in lags.items())
            print(f"| {seed} | {label} | {per} | {max(lags.values())} | {res.summary()['p99']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
