"""`python -m bench.real [--duration S] [--json OUT]`: real llama.cpp engines behind HAProxy, the real
controller between them; prints a table of TTFT and goodput per contender (docs/real-engines.md).

`python -m bench.real --build-only` builds (or finds) llama-server and exits: what `.ci/run` runs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import statistics
import sys
import time

from bench.real import engine as eng
from bench.real import haproxy as hap
from bench.real import load
from bench.real.rig import Options, Rig, Workload

SLO_S = 2.0
CONTENDERS = ("lc", "default", "static-speed", "static-slots")
POISSON_PROMPT, POISSON_OUTPUT = 384, 96
CONV_TOKEN_SCALE, CONV_MAX_PROMPT, CONV_MAX_OUTPUT = 0.35, 1536, 256


def workloads(names: list[str]) -> dict[str, Workload]:
    out: dict[str, Workload] = {}
    if "poisson" in names:
        out["poisson"] = Workload("poisson", lambda seed, rate, dur: load.poisson(rate, dur, POISSON_PROMPT, POISSON_OUTPUT, seed),
                                  POISSON_PROMPT, POISSON_OUTPUT)
    if "conv" in names:
        from controller.sim.trace import load_trace

        trace = load_trace("conv")
        sized = load.trace_replay(trace, 1.0, float("inf"), CONV_TOKEN_SCALE, CONV_MAX_PROMPT, CONV_MAX_OUTPUT)
        mean_p = statistics.fmean(a.prompt_tokens for a in sized)
        mean_o = statistics.fmean(a.output_tokens for a in sized)
        span = trace[-1].t

        def conv(seed: int, rate: float, dur: float) -> list[load.Arrival]:
            # each round replays another stretch of the trace (its own burst pattern), same for every contender
            start = (seed * 997.0) % max(1.0, span * 0.8)
            return load.trace_replay(trace, rate, dur, CONV_TOKEN_SCALE, CONV_MAX_PROMPT, CONV_MAX_OUTPUT, start=start, seed=seed)

        out["conv"] = Workload("conv", conv, mean_p, mean_o)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.real", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per contender, workload and round (60)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds (3)")
    ap.add_argument("--load", type=float, default=0.6,
                    help="offered load as a multiple of the pool's one-request-at-a-time capacity, from the engines' speeds "
                         "measured at the start (0.6: a busy pool whose slow engine queues under bursts)")
    ap.add_argument("--workloads", default="poisson,conv", help="poisson,conv (both)")
    ap.add_argument("--contenders", default="lc,default,static-speed,static-slots")
    ap.add_argument("--no-queue", action="store_true",
                    help="the pool does not queue at connection limits (queueOnConnectionLimit disabled): ratios are the only lever")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds of load under the controller before round 1 (20)")
    ap.add_argument("--slots", type=int, default=4, help="llama-server -np (4)")
    ap.add_argument("--threads", type=int, default=1, help="llama-server -t per engine (1)")
    ap.add_argument("--interval-ms", type=int, default=1000, help="the controller's tick (1000)")
    ap.add_argument("--no-build", action="store_true", help="fail instead of building llama-server when it is not cached")
    ap.add_argument("--build-only", action="store_true", help="build (or find) llama-server and exit")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    ap.add_argument("--workdir", help="keep the logs (engines, HAProxy, controller) here")
    return ap.parse_args(argv)


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # runs the rig's cleanup (finally) on SIGTERM too


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    try:
        if args.build_only:
            b = eng.ensure_server(log=log)
            print(f"llama-server: {b.path} ({'reused' if b.reused else 'built'}; build took {b.seconds:.0f} s)")
            return 0
        hap.binary()
    except (eng.EngineUnavailable, hap.HAProxyUnavailable) as e:
        print(f"bench.real: {e}", file=sys.stderr)
        return 3
    wl = workloads([w.strip() for w in args.workloads.split(",") if w.strip()])
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if not wl or not contenders or set(contenders) - set(CONTENDERS):
        print(f"bench.real: --workloads takes poisson,conv and --contenders {','.join(CONTENDERS)}", file=sys.stderr)
        return 2
    opts = Options(duration=args.duration, rounds=args.rounds, warmup=args.warmup, slots=args.slots, threads=args.threads,
                   build=not args.no_build, interval_ms=args.interval_ms, log=log, queue=not args.no_queue,
                   workdir=pathlib.Path(args.workdir) if args.workdir else None)
    rig = Rig(opts)
    try:
        rig.start()
        result = run(rig, wl, contenders, args)
    except (eng.EngineUnavailable, hap.HAProxyUnavailable) as e:
        print(f"bench.real: {e}", file=sys.stderr)
        return 3
    finally:
        rig.stop()
    print_table(result)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(rig: Rig, wl: dict[str, Workload], contenders: list[str], args: argparse.Namespace) -> dict:
    started = time.monotonic()
    static = static_weights(rig)
    rates = {name: args.load * rig.request_rate(w.mean_prompt, w.mean_output) for name, w in wl.items()}
    for name, rate in rates.items():
        rig.log(f"workload {name}: {rate:.2f} requests/s offered ({args.load:g} x the pool's one-at-a-time capacity)")
    if args.warmup > 0 and "default" in contenders:
        first = next(iter(wl.values()))
        rig.log(f"warm-up: {args.warmup:g} s under the controller (not counted)")
        rig.run_once("default", first.arrivals(10_000, rates[first.name], args.warmup), None)
    outcomes: dict[str, dict[str, list[load.Outcome]]] = {c: {w: [] for w in wl} for c in contenders}
    per_round = []
    for r in range(args.rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for name, w in wl.items():
            arrivals = w.arrivals(r + 1, rates[name], args.duration)
            for c in order:
                got = rig.run_once(c, arrivals, static if c == "static-speed" else None,
                                   dict.fromkeys(rig.engines, args.slots) if c == "static-slots" else None)
                outcomes[c][name] += got
                s = load.summarise(got, SLO_S)
                per_round.append({"round": r + 1, "workload": name, "contender": c, **s})
                rig.log(f"round {r + 1} {name:8s} {c:13s} n={s['n']:4d} p50={_f(s['p50'])} p99={_f(s['p99'])} "
                        f"goodput_2s={s['goodput_2s']:.3f} errors={s['errors']}")
    learned = rig.learned_speed()
    measured = {n: rig.request_rate_of(n, wl) for n in rig.engines}
    result = {
        "engines": [{"name": n, "model": f"{spec.filename} (llama, {spec.width}-wide, {spec.layers} layers, random F32 weights)",
                     "threads": args.threads, "slots": args.slots,
                     "measured_prompt_tps": round(rig.speeds[n].prompt_tps, 1), "measured_gen_tps": round(rig.speeds[n].gen_tps, 1),
                     "measured_request_rate": round(measured[n], 4)}
                    for n, spec in rig.o.engines],
        "contenders": {c: load.summarise([o for w in wl for o in outcomes[c][w]], SLO_S) for c in contenders},
        "workloads": {w: {c: load.summarise(outcomes[c][w], SLO_S) for c in contenders} for w in wl},
        "learned_speed": learned,
        "rounds": args.rounds,
        "per_round": per_round,
        "static_weights": static,
        "conditions": {
            "duration_s": args.duration, "load": args.load, "offered_rps": {w: round(v, 3) for w, v in rates.items()},
            "warmup_s": args.warmup, "queue_on_connection_limit": not args.no_queue, "tick_ms": args.interval_ms, "slo_s": SLO_S, "cpus": _cpus(),
            "llama_cpp_python": eng.LLAMA_CPP_PYTHON, "build_seconds": round(rig.build.seconds, 1) if rig.build else None,
            "build_reused": rig.build.reused if rig.build else None, "wall_seconds": round(time.monotonic() - started, 1),
            "data_plane_changes": len(rig.mirror.changes) if rig.mirror else 0,
            "final_pool": {n: {"ratio": r, "connection_limit": lim} for n, (r, lim) in rig._read_pool().items()},
        },
    }
    return result


def static_weights(rig: Rig) -> dict[str, int]:
    """HAProxy weights proportional to each engine's measured request throughput (largest = 256)."""
    rates = {n: s.request_rate(POISSON_PROMPT, POISSON_OUTPUT) for n, s in rig.speeds.items()}
    top = max(rates.values())
    return {n: max(1, round(hap.MAX_WEIGHT * r / top)) for n, r in rates.items()}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _f(v: float | None) -> str:
    return "  miss" if v is None else f"{v:6.3f}"


def print_table(result: dict) -> None:
    print(f"{'contender':13s} {'n':>5s} {'p50 s':>7s} {'p90 s':>7s} {'p99 s':>7s} {'TTFT<=2s':>9s} {'errors':>6s}")
    for c, s in result["contenders"].items():
        print(f"{c:13s} {s['n']:5d} {_f(s['p50']):>7s} {_f(s['p90']):>7s} {_f(s['p99']):>7s} {s['goodput_2s']:9.3f} {s['errors']:6d}")
    for w, by in result["workloads"].items():
        for c, s in by.items():
            print(f"  {w:8s} {c:13s} n={s['n']:4d} p50={_f(s['p50'])} p99={_f(s['p99'])} TTFT<=2s={s['goodput_2s']:.3f} errors={s['errors']}")
    lc = result["contenders"].get("lc")
    d = result["contenders"].get("default")
    if lc and d and lc["p99"] and d["p99"] and lc["p50"] and d["p50"]:
        print(f"default / lc: p50 {d['p50'] / lc['p50']:.2f}x, p99 {d['p99'] / lc['p99']:.2f}x, "
              f"goodput {d['goodput_2s'] - lc['goodput_2s']:+.3f} (lower TTFT is better; higher goodput is better)")
    print("learned speed (controller /status, fastest = 1): " +
          ", ".join(f"{n} {v}" for n, v in result["learned_speed"].items()))
    print("measured request rate: " + ", ".join(f"{e['name']} {e['measured_request_rate']}" for e in result["engines"]))


if __name__ == "__main__":
    sys.exit(main())
