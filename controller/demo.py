"""`f5-llm-ratio demo`: the real controller loop against a BIG-IP emulator and simulated engines.

Everything runs in this process on 127.0.0.1: the HTTPS BIG-IP emulator, one /metrics server per
simulated engine, a load generator replaying an Azure LLM trace through the emulator's LTM data
plane, and the controller (the same Daemon.tick as `run`). With --compare, an identical cluster
without the controller runs side by side on plain least-connections.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field, replace

from controller import logs, telemetry
from controller.config import yamlfile
from controller.config.schema import AppConfig
from controller.loop import daemon, render
from controller.model import TickReport
from controller.policy import scoring
from controller.policy.shares import unit_scores
from controller.sim.bigip import BigIPEmulator
from controller.sim.dataplane import QUEUED
from controller.sim.engine import Engine, RealtimeEngine, Request, preset
from controller.sim.engine_server import EngineServer
from controller.sim.trace import Trace, TraceNotFoundError, capacity_estimate, duration, load_trace, repeat, scale_to_rate

POOL = "/Common/llm-demo"
#: Unequal on purpose: the controller has something to find. (preset, name)
FLEET = (("a100-40g", "a100-a"), ("a100-40g", "a100-b"), ("h100-80g", "h100"), ("l40s-48g", "l40s"))
#: The summary's SLO line: the share of the requests offered that got a first token within this long.
TTFT_SLO = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, metavar="SECONDS", help="stop after this long (default 60)")
    parser.add_argument("--load", type=float, default=0.85, help="offered load as a share of pool capacity (default 0.85)")
    parser.add_argument("--trace", default="conv", help="conv, code, sample (built in) or a CSV path (default conv)")
    parser.add_argument("--compare", action="store_true", help="also run plain least-connections on the same trace")
    parser.add_argument("--mode", default=None, metavar="POLICY",
                        help=f"scoring policy: {' or '.join(SUPPORTED_MODES)} (default: balance, the controller's default); "
                             "others only with --experimental")
    parser.add_argument("--experimental", action="store_true",
                        help=f"allow the comparison policies of the benchmarks in --mode ({', '.join(experimental_modes())})")
    parser.add_argument("--interval", type=int, default=1000, metavar="MS", help="metrics_fetch_interval in ms (default 1000)")
    parser.add_argument("--telemetry-port", type=int, default=9109, metavar="PORT",
                        help="port of the live page http://127.0.0.1:PORT/ and of /metrics, /healthz, /status (0: any free port)")
    parser.add_argument("--verbose", action="store_true", help="show the controller's log lines (same as --log-level INFO)")


#: Policies the demo offers; the others in scoring.POLICIES are benchmark comparisons (docs/policy.md).
SUPPORTED_MODES = ("balance", "s1")


def experimental_modes() -> list[str]:
    return [name for name in scoring.POLICIES if name not in SUPPORTED_MODES]


def check_mode(args: argparse.Namespace) -> str | None:
    """None when --mode is acceptable, else the message for the user."""
    if args.mode is None or args.mode in SUPPORTED_MODES:
        return None
    if args.mode in scoring.POLICIES:
        return None if args.experimental else (f"--mode {args.mode} is an experimental comparison policy; "
                                               f"add --experimental to run it, or use {' or '.join(SUPPORTED_MODES)}")
    return f"--mode {args.mode!r}: choose {' or '.join(SUPPORTED_MODES)} (experimental with --experimental: " \
           f"{', '.join(experimental_modes())})"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class MemberStats:
    sent: int = 0
    ttfts: list[float] = field(default_factory=list)


class Cluster:
    """One emulated BIG-IP pool in front of simulated engines, fed by a trace in real time."""

    def __init__(self, label: str, lb_mode: str, trace: Trace, password: str):
        self.label = label
        self.emulator = BigIPEmulator(users={"admin": password})
        self.engines: dict[str, RealtimeEngine] = {}
        self.servers: dict[str, EngineServer] = {}
        self.names: dict[str, str] = {}  # member name -> engine name
        self.members: dict[str, str] = {}  # engine name -> member name (finished requests carry the engine)
        self.stats: dict[str, MemberStats] = {}
        self.arrivals: dict[object, float] = {}
        self.offered = 0  # requests the trace sent so far (finished or not)
        self.lb_mode = lb_mode
        self.trace = trace
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> str:
        members = []
        for kind, name in FLEET:
            rt = RealtimeEngine(Engine(preset(kind, name=name)), on_finish=self._finished).start()
            server = EngineServer(rt, "vllm")
            # a named node, as BIG-IP shows it (gui, table and live page agree): `h100:PORT`, address 127.0.0.1
            member = f"{name}:{server.start()}"
            self.engines[member], self.servers[member], self.names[member] = rt, server, name
            self.members[name] = member
            self.stats[member] = MemberStats()
            members.append({"name": member, "address": "127.0.0.1"})
        url = self.emulator.start()
        self.emulator.add_pool(POOL, members, lb_mode=self.lb_mode)
        threading.Thread(target=self._generate, name=f"load-{self.label}", daemon=True).start()
        return url

    def stop(self) -> None:
        self.stop_event.set()
        for member in self.engines:
            self.engines[member].stop()
            self.servers[member].stop()
        self.emulator.stop()

    # -- traffic ------------------------------------------------------------------------------
    def _generate(self) -> None:
        start = time.monotonic()
        for r in self.trace:
            if self.stop_event.wait(max(0.0, start + r.t - time.monotonic())):
                return
            req = Request(r.prompt_tokens, r.output_tokens)
            self.arrivals[req.rid] = time.monotonic()
            with self.lock:
                self.offered += 1
            member = self.emulator.dataplane.pick(POOL, req)
            if member not in (None, QUEUED):
                self._send(req, member)

    def _send(self, req: Request, member: str) -> None:
        with self.lock:
            self.stats[member].sent += 1
        self.engines[member].submit(req)

    def _finished(self, req: Request) -> None:
        member = self.members[req.engine]
        arrived = self.arrivals.pop(req.rid, req.arrival)
        if req.first_token is not None and arrived is not None:
            with self.lock:
                self.stats[member].ttfts.append(req.first_token - arrived)
        for ticket, other in self.emulator.dataplane.release(POOL, member):
            self._send(ticket, other)

    # -- figures ------------------------------------------------------------------------------
    def all_ttfts(self) -> list[float]:
        with self.lock:
            return [t for s in self.stats.values() for t in s.ttfts]


def demo_config(cluster: Cluster, args: argparse.Namespace, password: str) -> AppConfig:
    """The controller's config, in the sideband scheduler's format plus our keys."""
    data = {
        "global": {"log_level": getattr(args, "log_level", None) or ("INFO" if args.verbose else "WARNING")},
        "f5": {"host": "127.0.0.1", "port": cluster.emulator.port, "username": "admin", "password_env": "F5_PASSWORD",
               "verify_tls": cluster.emulator.cert_path},
        "scheduler": {"pool_fetch_interval": 10, "metrics_fetch_interval": args.interval},
        "pools": [{"name": "llm-demo", "partition": "Common", "engine_type": "vllm", "metrics": {"timeout": 2}}],
    }
    if args.mode:
        data["modes"] = [{"name": args.mode}]
    cfg = yamlfile.parse(data, {"F5_PASSWORD": password}, source="demo")
    # Port 0 (any free port) suits the demo but not a daemon's config, so it is set here, not in the file.
    return replace(cfg, telemetry=replace(cfg.telemetry, port=args.telemetry_port))


def view(cluster: Cluster, report: TickReport | None, elapsed: float, baseline: Cluster | None, policy_name: str = "") -> str:
    plans = {p.member.key: p for plan in (report.plans if report else ()) for p in plan.members}
    # the score on the 0-1 scale /status, /metrics and the plan table use (the policy's weight / the pool's largest)
    scores = {k: v for plan in (report.plans if report else ()) for k, v in unit_scores(plan, policy_name).items()}
    total_sent = sum(s.sent for s in cluster.stats.values()) or 1
    rows = []
    for member, rt in cluster.engines.items():
        snap, stats, plan = rt.snapshot(), cluster.stats[member], plans.get(member)
        rows.append([
            member, snap.waiting, snap.running, f"{snap.kv_usage:.0%}",
            None if plan is None or member not in scores else f"{scores[member]:.2f}",
            cluster.emulator.member(POOL, member)["ratio"], f"{stats.sent / total_sent:.0%}",
            _ms(percentile(stats.ttfts, 0.5)), _ms(percentile(stats.ttfts, 0.99)),
        ])
    out = [f"f5-llm-ratio demo  t={elapsed:5.1f}s  pool {POOL}  mode ratio-least-connections-member",
           render.table(("member", "queue", "running", "kv", "score 0-1", "ratio", "share", "ttft p50", "ttft p99"), rows),
           "TTFT: lower is better; 'done' = finished requests (the percentiles are theirs), 'open' = not finished yet",
           _summary_line("controller", cluster)]
    if baseline is not None:
        out.append(_summary_line("least-conn", baseline))
    return "\n".join(out)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def _summary_line(label: str, cluster: Cluster) -> str:
    t = cluster.all_ttfts()
    with cluster.lock:
        offered = cluster.offered
    within = sum(1 for x in t if x <= TTFT_SLO)
    slo = f"{within / offered:.0%}" if offered else "-"
    return (f"{label:<11} requests done {len(t):5d} of {offered:5d} (open {max(0, offered - len(t)):5d})  "
            f"TTFT p50 {_ms(percentile(t, 0.5))}  p99 {_ms(percentile(t, 0.99))}  TTFT <= {TTFT_SLO:g} s: {slo} of offered")


def _start_telemetry(d: daemon.Daemon, port: int) -> telemetry.Telemetry | None:
    try:
        return telemetry.serve(d)
    except Exception:  # noqa: BLE001 - a busy port must not spoil the demo: fall back to any port
        d.cfg = replace(d.cfg, telemetry=replace(d.cfg.telemetry, port=0))
        return telemetry.serve(d)


def _loop(d: daemon.Daemon, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        d.tick()
        stop.wait(max(0.0, d.cfg.scheduler.tick_seconds - (time.monotonic() - started)))


def _load(name: str) -> tuple[Trace, str]:
    """The named trace; the built-in sample when the full traces are not beside the install."""
    try:
        return load_trace(name), name
    except TraceNotFoundError:
        if name not in ("conv", "code"):
            raise
        return load_trace("sample"), "sample"


def build_trace(args: argparse.Namespace) -> tuple[Trace, float, str]:
    trace, name = _load(args.trace)
    capacity = sum(capacity_estimate(preset(kind), trace, method="analytic") for kind, _ in FLEET)
    scaled = scale_to_rate(trace, args.load * capacity)
    while duration(scaled) < args.duration:  # loop a short trace to fill the run
        scaled = repeat(scaled, 2)
    return [r for r in scaled if r.t < args.duration], capacity, name


def run(args: argparse.Namespace) -> int:
    problem = check_mode(args)
    if problem:
        print(f"f5-llm-ratio demo: {problem}", file=sys.stderr)
        return 2
    password = secrets.token_urlsafe(16)
    try:
        trace, capacity, trace_name = build_trace(args)
    except (TraceNotFoundError, ValueError) as exc:
        print(f"f5-llm-ratio demo: {exc}", file=sys.stderr)
        return 2
    main = Cluster("controller", "ratio-least-connections-member", trace, password)
    baseline = Cluster("least-conn", "least-connections-member", trace, password) if args.compare else None
    main.start()
    if baseline:
        baseline.start()
    cfg = demo_config(main, args, password)
    logs.setup(cfg.log_level, cfg.secrets(), stream=sys.stderr)
    d = daemon.Daemon("demo", cfg)
    tel = _start_telemetry(d, args.telemetry_port)
    stop = threading.Event()
    ticker = threading.Thread(target=_loop, args=(d, stop), name="controller", daemon=True)
    ticker.start()
    tty = sys.stdout.isatty()
    live = tel.address if tel else None  # serve() started it: it listens
    print(f"trace {trace_name}: {len(trace)} requests in {args.duration:.0f}s, {args.load:.0%} of pool capacity "
          f"({capacity:.1f} req/s); BIG-IP emulator {cfg.f5.base_url}"
          + (f"\nlive page: http://{live[0]}:{live[1]}/ (ratios, load and the reasons for each change)"
             if live else ""), flush=True)
    began = time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < args.duration:
            time.sleep(min(2.0, max(0.1, args.duration - elapsed)))
            frame = view(main, d.rec.last_report, time.monotonic() - began, baseline, d.cfg.pools[0].mode.name)
            print(("\x1b[H\x1b[2J" if tty else "") + frame + ("" if tty else "\n"), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        ticker.join(timeout=10)
        daemon.close(d.rec)
        if tel:
            tel.stop()
        for c in (main, baseline):
            if c:
                c.stop()
    print(final_summary(main, baseline))
    return 0


def final_summary(main: Cluster, baseline: Cluster | None) -> str:
    lines = ["", "final ratios: " + ", ".join(f"{main.names[m]}={main.emulator.member(POOL, m)['ratio']}" for m in main.engines)]
    lines.append(_summary_line("controller", main))
    if baseline is None:
        return "\n".join(lines)
    lines.append(_summary_line("least-conn", baseline))
    lines.append("TTFT, controller vs least-connections (lower is better; below 1.00x the controller is faster):")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        ours, theirs = percentile(main.all_ttfts(), q), percentile(baseline.all_ttfts(), q)
        if ours and theirs:
            verdict = "better" if ours < theirs else "worse" if ours > theirs else "equal"
            lines.append(f"  {name} TTFT: controller {_ms(ours)} vs least-connections {_ms(theirs)} ({ours / theirs:.2f}x, {verdict})")
    open_ = [(c.label, max(0, c.offered - len(c.all_ttfts())), c.offered) for c in (main, baseline)]
    if any(n for _, n, _ in open_):
        lines.append("  not finished when the run stopped (not in the percentiles): " +
                     ", ".join(f"{label} {n} of {total}" for label, n, total in open_))
    return "\n".join(lines)

