"""How the default's ratios move through one run: a line every few simulated seconds (docs/policy.md cites it).

    python -m bench.ratios --scenario bench/scenarios/equalkv4.yaml --trace conv --load 0.85 --seed 1

Each line: simulated time, each member's ratio on LTM, the mean TTFT the controller measured for it
(the TTFT term's input), its measured prefill rate in thousands of prompt tokens per TTFT-second (what
the neutral follows) and its queue (requests waiting). Then the run's TTFT summary.
"""

from __future__ import annotations

import argparse
import sys

from controller.policy import scoring

from bench import scenario as S
from bench.simulator import RLC, Contender, Sim


class _Traced(Sim):
    def __init__(self, *args, every: float, **kw) -> None:
        super().__init__(*args, **kw)
        self.every, self.next_line = every, 0.0

    def _tick(self, t: float) -> None:
        super()._tick(t)
        if t >= self.next_line:
            self.next_line = t + self.every
            ttft = [getattr(self.memory.get(n), "speed", None) for n in self.names]
            cells = [f"{n} {v.ratio:>3} ttft {_s(e.ttft if e else None)} pre {_k(e.prefill if e else None)} "
                     f"wait {eng.snapshot().waiting:>3}"
                     for n, v, e, eng in zip(self.names, self.views, ttft, self.engines, strict=True)]
            print(f"t={t:6.1f}  " + " | ".join(cells))


def _k(x: float | None) -> str:
    return "   - " if x is None else f"{x / 1000:4.1f}k"


def _s(x: float | None) -> str:
    return "   -  " if x is None else f"{x:5.2f}s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ratios", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", required=True, help="scenario YAML file")
    ap.add_argument("--trace", default="", help="replay this trace (conv or code) instead of Poisson arrivals")
    ap.add_argument("--load", type=float, default=None, help="override arrivals.load")
    ap.add_argument("--seed", type=int, default=None, help="arrival seed (default: the file's)")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds (default: the file's)")
    ap.add_argument("--policy", default="balance", help="the mode.name to run (default: balance)")
    ap.add_argument("--every", type=float, default=10.0, help="simulated seconds between lines")
    args = ap.parse_args(argv)
    if args.policy not in scoring.POLICIES:
        print(f"error: --policy: unknown {args.policy!r}; expected one of {', '.join(scoring.POLICIES)}", file=sys.stderr)
        return 2
    try:
        sc = S.load(args.scenario)
    except S.ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.duration:
        sc = sc.with_duration(args.duration)
    changes: dict = {"kind": "trace", "trace": args.trace} if args.trace else {}
    if args.load is not None:
        changes["load"] = args.load
    if args.seed is not None:
        changes["seed"] = args.seed
    sc = sc.with_arrivals(**changes) if changes else sc
    res = _Traced(sc, Contender(args.policy, "ctl", RLC, args.policy), every=args.every).run()
    print({k: round(v, 4) for k, v in res.summary().items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
