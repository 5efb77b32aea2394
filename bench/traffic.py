"""Traffic benchmark: one scenario file, every contender, a table and (with --json) the results.

    python bench/traffic.py --scenario bench/scenarios/equalkv4.yaml [--json OUT] [--seeds 1,2,3] [--load 0.7]
    python -m bench.traffic --scenario bench/scenarios/equalkv4.yaml

The scenario format is in `bench/scenario.py`, the simulation in `bench/simulator.py`, the contenders
and references in `bench/experiments.py`; `bench/matrix.py` runs every scenario file at every load and
seed and writes docs/benchmarks.md. A bad scenario file exits 2 with a message naming the key.

Traces: Azure Public Dataset (AzureLLMInferenceTrace_conv / _code, 2023), CC-BY 4.0.
Attribution: Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/traffic.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.experiments import ALL, KNOWN, run_scenario
from bench.scenario import ScenarioError, load


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/traffic.py", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", required=True, help="scenario YAML file (see bench/scenarios/)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--seeds", type=_ints, default=None,
                    help="comma-separated arrival seeds (default: the file's); figures are medians over seeds")
    ap.add_argument("--load", type=float, default=None, help="override arrivals.load (share of pool capacity)")
    ap.add_argument("--duration", type=float, default=None,
                    help="override duration_s (simulated seconds); slowdown times scale with it")
    ap.add_argument("--contenders", default=",".join(ALL), help=f"comma-separated subset of {','.join(KNOWN)} (default: all but balance-kv)")
    ap.add_argument("--ratios", type=_ints, default=None,
                    help="also run fixed ratios, one per member, under ratio-least-connections (contender `static`)")
    ap.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    args = ap.parse_args(argv)
    try:
        sc = load(args.scenario)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.load is not None:
        if not 0 < args.load <= 2:
            print("error: --load must be > 0 and <= 2", file=sys.stderr)
            return 2
        sc = sc.with_arrivals(load=args.load)
    if args.duration is not None:
        if not args.duration > 0:
            print("error: --duration must be > 0", file=sys.stderr)
            return 2
        sc = sc.with_duration(args.duration)
    chosen = [c for c in args.contenders.split(",") if c]
    unknown = [c for c in chosen if c not in KNOWN]
    if unknown:
        print(f"error: --contenders: unknown {', '.join(unknown)}; expected some of {', '.join(KNOWN)}", file=sys.stderr)
        return 2
    if args.ratios is not None:
        if len(args.ratios) != len(sc.members) or min(args.ratios) < 1:
            print(f"error: --ratios needs {len(sc.members)} ratios >= 1, one per member", file=sys.stderr)
            return 2
        chosen.append("static")
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    res = run_scenario(sc, args.seeds or (), chosen, log=log, ratios=tuple(args.ratios or ()))
    print(report.table(res))
    if args.json:
        report.write_json(res, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
