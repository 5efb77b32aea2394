"""Traffic benchmark: does pushing BIG-IP ratios help, against every alternative? (GitHub issue #4)

A discrete-event simulation in virtual time. It reuses, not copies:

* the engine model (`controller.sim.engine.Engine`: continuous batching, paged KV, preemption);
* LTM's member selection models (`controller.sim.dataplane.make_selector` / `decide`, incl. QUEUED);
* the controller's real decision code (`controller.planner.plan_pool` with `controller.policy` and
  `controller.weights` damping), fed by simulated scrapes with a scrape interval, a scrape latency
  and a BIG-IP write latency.

    python bench/traffic.py                 # full: 1 simulated hour per run, writes docs/benchmarks.md + PNGs
    python bench/traffic.py --quick         # 10 simulated minutes per run (iterating)
    python bench/traffic.py --only hetero4-conv --contenders lc,balance-rlc,oracle --quick --no-doc

Traces: Azure Public Dataset (AzureLLMInferenceTrace_conv / _code, 2023), CC-BY 4.0.
Attribution: Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import statistics
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller import planner, policy
from controller.config import ModeConfig, PoolConfig, WeightsConfig
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult
from controller.sim import trace as tr
from controller.sim.dataplane import QUEUED, MemberView, decide, make_selector
from controller.sim.engine import Engine, EngineSpec, Request, preset

SEED = 4  # the issue number; every figure states it
TTFT_SLO = 2.0  # seconds: "share of requests over a TTFT SLO"

# --- timing of the control loop (documented in docs/benchmarks.md) ---------------------------------


@dataclass(frozen=True)
class Timing:
    scrape_interval: float = 1.0  # the seed's metrics_fetch_interval default (1000 ms)
    scrape_latency: float = 0.05  # GET /metrics of a 40 KB page and parse
    write_latency: float = 0.25  # iControl REST PATCH through restjavad (tens to hundreds of ms)
    sideband_delay: float = 0.003  # the iRule's sideband POST /scheduler/select per request (LAN RTT + work)


# --- contenders -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  # "lb" (plain LTM), "ctl" (f5-llm-ratio), "sideband", "oracle"
    lb_mode: str = "round-robin"
    policy: str = "s1"
    weights: WeightsConfig = WeightsConfig(describe=False)
    w_a: float = 0.5
    w_b: float = 0.5
    queue: bool = False  # queueOnConnectionLimit
    label: str = ""


W = WeightsConfig(describe=False)  # the shipped defaults (see controller/config.py)
CL_WEIGHTS = replace(W, drive="connection_limit", limit_headroom=4.0)

CONTENDERS: dict[str, Contender] = {c.name: c for c in [
    Contender("rr", "lb", "round-robin", label="round-robin"),
    Contender("lc", "lb", "least-connections-member", label="least-connections-member"),
    Contender("sideband", "sideband", label="sideband scheduler (S1 weighted random)"),
    Contender("s1-ratio", "ctl", "ratio-member", "s1", label="f5-llm-ratio S1, ratio-member"),
    Contender("s1-rlc", "ctl", "ratio-least-connections-member", "s1", label="f5-llm-ratio S1, ratio-least-conns"),
    Contender("connlimit", "ctl", "least-connections-member", "s1", CL_WEIGHTS, queue=True,
              label="f5-llm-ratio connection limits (KV x4) + LTM queue"),
    Contender("kvcap-rlc", "ctl", "ratio-least-connections-member", "kv-capacity", label="KV-capacity weights, ratio-least-conns"),
    Contender("qbal-rlc", "ctl", "ratio-least-connections-member", "queue-balance", label="queue-balance, ratio-least-conns"),
    Contender("balance1-rlc", "ctl", "ratio-least-connections-member", "balance-v1",
              label="balance v1 (the first default: no leak, prior, dead zone or clip), ratio-least-conns"),
    Contender("balance2-rlc", "ctl", "ratio-least-connections-member", "balance-v2",
              label="balance v2 (the previous default: no large-pool queue boost; the same below 8 members), ratio-least-conns"),
    Contender("balance-rlc", "ctl", "ratio-least-connections-member", "balance",
              label="balance (closed loop, the default), ratio-least-conns"),
    Contender("oracle-work", "oracle-work", label="oracle: least outstanding work (perfect knowledge)"),
    Contender("oracle", "oracle", label="oracle: soonest expected first token (perfect knowledge)"),
]}
DEFAULT_CONTENDERS = tuple(CONTENDERS)  # (the ablation rows registered below are not in the matrix)

# --- pools and scenarios ----------------------------------------------------------------------------


def _engine(kind: str, i: int, **changes) -> EngineSpec:
    return preset(kind, name=f"m{i}", **changes)


def pool_specs(name: str) -> list[EngineSpec]:
    """homo: 4 x A100-40GB. hetero: speeds 1, 1, 2, 4 with KV 172k, 172k, 400k, 800k tokens (A100-40GB,
    A100-40GB, H100-80GB, and a 2-GPU H100 engine). A 16-member pool repeats the 4."""
    base = name.rstrip("0123456789")
    n = int(name[len(base):])
    if base == "homo":
        kinds = [dict(kind="a100-40g")] * 4
    elif base == "hetero":
        kinds = [dict(kind="a100-40g"), dict(kind="a100-40g"), dict(kind="h100-80g"),
                 dict(kind="h100-80g", speed=4.0, kv_capacity_tokens=800_000)]
    else:
        raise ValueError(name)
    out = []
    for i in range(n):
        k = dict(kinds[i % 4])
        out.append(_engine(k.pop("kind"), i, **k))
    return out


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    pool: str
    trace: str
    loads: tuple[float, ...]
    slowdown: tuple[int, float, float, float] | None = None  # member index, speed factor, start, end (share of duration)
    bursts: tuple[float, float, float] | None = None  # period s, burst length s, rate multiplier in the burst
    goal: str = ""  # "hetero" or "homo": which acceptance test applies


LOADS = (0.5, 0.7, 0.85, 0.95)

SCENARIOS: dict[str, Scenario] = {s.key: s for s in [
    Scenario("homo4-conv", "Homogeneous pool of 4 (A100-40GB), conv trace", "homo4", "conv", LOADS, goal="homo"),
    Scenario("homo4-code", "Homogeneous pool of 4 (A100-40GB), code trace", "homo4", "code", LOADS, goal="homo"),
    Scenario("hetero4-conv", "Heterogeneous pool of 4 (speeds 1,1,2,4; KV 172k,172k,400k,800k), conv trace", "hetero4", "conv", LOADS, goal="hetero"),
    Scenario("hetero4-code", "Heterogeneous pool of 4 (speeds 1,1,2,4; KV 172k,172k,400k,800k), code trace", "hetero4", "code", LOADS, goal="hetero"),
    Scenario("homo16-conv", "Homogeneous pool of 16 (A100-40GB), conv trace", "homo16", "conv", (0.7, 0.95), goal="homo"),
    Scenario("hetero16-conv", "Heterogeneous pool of 16 (4 x speeds 1,1,2,4), conv trace", "hetero16", "conv", (0.7, 0.95), goal="hetero"),
    Scenario("hetero16-code", "Heterogeneous pool of 16 (4 x speeds 1,1,2,4), code trace", "hetero16", "code", (0.85,), goal="hetero"),
    Scenario("slowdown", "Heterogeneous pool of 4, conv; the speed-2 engine runs at 1/4 speed from 1/3 to 2/3 of the run",
             "hetero4", "conv", (0.7,), slowdown=(2, 0.25, 1 / 3, 2 / 3)),
    Scenario("bursts", "Heterogeneous pool of 4, conv; every 300 s a 30 s burst at 2.5x the base rate",
             "hetero4", "conv", (0.6,), bursts=(300.0, 30.0, 2.5)),
]}

# --- arrivals ---------------------------------------------------------------------------------------

_TRACES: dict[str, list] = {}
_CAPS: dict[tuple[str, str], float] = {}


def base_trace(name: str) -> list:
    if name not in _TRACES:
        _TRACES[name] = tr.load_trace(name)
    return _TRACES[name]


def pool_capacity(pool: str, trace_name: str) -> float:
    """Summed saturated throughput (requests/s) of the pool's engines for the trace's token mix."""
    key = (pool, trace_name)
    if key not in _CAPS:
        cache: dict[EngineSpec, float] = {}
        total = 0.0
        for spec in pool_specs(pool):
            s = spec.with_(name="x")
            if s not in cache:
                cache[s] = tr.capacity_estimate(s, base_trace(trace_name))
            total += cache[s]
        _CAPS[key] = total
    return _CAPS[key]


def arrivals(sc: Scenario, load: float, duration: float) -> list[tr.TraceRequest]:
    """The trace compressed to `load` x pool capacity, repeated to fill `duration` seconds (token mix and
    burstiness kept). With bursts, time is warped so the mean rate is unchanged."""
    base = base_trace(sc.trace)
    rate = load * pool_capacity(sc.pool, sc.trace)
    factor = rate / tr.mean_rate(base)
    copies = max(1, math.ceil(duration * factor / tr.duration(base)) + 1)
    reqs = tr.window(tr.scale_rate(tr.repeat(base, copies), factor), 0.0, duration)
    if sc.bursts:
        reqs = _warp(reqs, *sc.bursts)
    return reqs


def overload_share(reqs: list[tr.TraceRequest], duration: float, capacity: float, window: float = 10.0) -> tuple[float, float]:
    """(share of requests that arrive in a `window`-second window whose rate is above pool capacity,
    the busiest window's rate as a multiple of capacity): how bursty a load level really is."""
    n = max(1, int(duration // window))
    counts = [0] * n
    for r in reqs:
        i = int(r.t // window)
        if i < n:
            counts[i] += 1
    over = sum(c for c in counts if c / window > capacity)
    return over / max(1, sum(counts)), max(counts) / window / capacity


def _warp(reqs, period: float, length: float, mult: float):
    """Map arrival times through the inverse of a piecewise-constant rate profile with mean 1."""
    mean = (length * mult + (period - length)) / period
    hi, lo = mult / mean, 1.0 / mean  # rates relative to the mean
    work_burst = hi * length  # "mean-rate seconds" in the burst part of a period
    out = []
    for r in reqs:
        cyc, w = divmod(r.t, period)  # one period of real time holds `period` mean-rate seconds
        t = w / hi if w < work_burst else length + (w - work_burst) / lo
        out.append(tr.TraceRequest(cyc * period + t, r.prompt_tokens, r.output_tokens))
    out.sort(key=lambda r: r.t)
    return out


# --- the simulation ---------------------------------------------------------------------------------

FINISH, TICK, APPLY, SPEED = 0, 1, 2, 3


@dataclass
class Result:
    scenario: str
    load: float
    contender: str
    seed: int
    duration: float
    n: int
    ttft: list[float] = field(default_factory=list, repr=False)
    queue: list[float] = field(default_factory=list, repr=False)
    completed_in_window: int = 0
    writes: int = 0
    rejected: int = 0
    preemptions: int = 0
    wall: float = 0.0

    def summary(self) -> dict:
        t = sorted(self.ttft)
        q = sorted(self.queue)
        return dict(
            scenario=self.scenario, load=self.load, contender=self.contender, seed=self.seed, n=self.n,
            p50=_pct(t, 50), p90=_pct(t, 90), p99=_pct(t, 99), mean=sum(t) / len(t) if t else math.nan,
            queue_mean=sum(q) / len(q) if q else math.nan, queue_p99=_pct(q, 99),
            throughput=self.completed_in_window / self.duration,
            slo=sum(1 for x in t if x > TTFT_SLO) / len(t) if t else math.nan,
            writes_per_min=self.writes / (self.duration / 60.0), rejected=self.rejected,
            preemptions=self.preemptions, wall=self.wall,
        )


def _pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return math.nan
    i = min(len(xs) - 1, max(0, math.ceil(p / 100.0 * len(xs)) - 1))
    return xs[i]


class Sim:
    """One run: one scenario at one load, one contender, one seed."""

    def __init__(self, sc: Scenario, load: float, con: Contender, *, duration: float, seed: int = SEED,
                 timing: Timing = Timing(), weights: WeightsConfig | None = None):
        self.sc, self.load, self.con, self.duration, self.timing = sc, load, con, duration, timing
        self.rng = random.Random(seed)
        self.seed = seed
        self.specs = pool_specs(sc.pool)
        self.names = [s.name for s in self.specs]
        self.engines = [Engine(s, keep_finished=False, on_finish=self._on_finish) for s in self.specs]
        self.idx = {n: i for i, n in enumerate(self.names)}
        self.views = [MemberView(n, ratio=1) for n in self.names]  # BIG-IP's default ratio is 1
        self.selector = make_selector(con.lb_mode if con.kind in ("lb", "ctl") else "round-robin")
        self.heap: list = []
        self._seq = 0
        self.ltm_queue: deque = deque()
        self.outstanding = [0] * len(self.specs)
        self.res = Result(sc.key, load, con.name, seed, duration, 0)
        self.meta: dict[int, tuple[float, float]] = {}  # rid -> (LTM arrival, extra TTFT)
        self.weights = weights or con.weights
        if con.kind == "ctl":
            self.cfg = PoolConfig(PoolRef("bench"), "vllm", mode=ModeConfig(con.policy, con.w_a, con.w_b),
                                  weights=self.weights)
            self.memory: dict = {}
        self.sideband_scores: list[float] | None = None
        self.pending_sideband: list[float] | None = None
        # oracle bookkeeping: generation tokens produced by requests already finished, per engine
        self.fin_gen = [0] * len(self.specs)
        self.out_tokens = [0] * len(self.specs)  # output tokens of outstanding requests

    # -- events
    def push(self, t: float, kind: int, data=None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, data))

    def _on_finish(self, req: Request) -> None:
        self.push(req.finish, FINISH, req)

    def advance_all(self, t: float) -> None:
        for e in self.engines:
            if e.t <= t and (e._running or e._waiting):
                e.advance(t)

    def run(self) -> Result:
        wall0 = time.perf_counter()
        reqs = arrivals(self.sc, self.load, self.duration)
        self.res.n = len(reqs)
        if self.con.kind in ("ctl", "sideband"):
            self.push(self.rng.uniform(0, self.timing.scrape_interval), TICK)
        if self.sc.slowdown:
            i, f, a, b = self.sc.slowdown
            self.push(a * self.duration, SPEED, (i, self.specs[i].speed * f))
            self.push(b * self.duration, SPEED, (i, self.specs[i].speed))
        i, n = 0, len(reqs)
        horizon = self.duration + 1800.0  # drain, but not forever
        while True:
            t_arr = reqs[i].t if i < n else math.inf
            t_ev = self.heap[0][0] if self.heap else math.inf
            if t_arr == math.inf and not any(self.outstanding) and not self.ltm_queue:
                break
            if t_arr == math.inf and t_ev == math.inf:  # arrivals over: step the engines to their next finishes
                busy = [e.t for e in self.engines if e._running or e._waiting]
                if not busy or min(busy) > horizon:
                    break
                self.advance_all(min(busy) + 0.5)
                continue
            if t_arr <= t_ev:
                self.advance_all(t_arr)
                while self.heap and self.heap[0][0] <= t_arr:
                    self._event(heapq.heappop(self.heap))
                self._arrive(reqs[i])
                i += 1
            else:
                ev = heapq.heappop(self.heap)
                if ev[0] > horizon:
                    break
                self._event(ev)
        self.res.preemptions = sum(e.num_preemptions for e in self.engines)
        self.res.wall = time.perf_counter() - wall0
        return self.res

    def _event(self, ev) -> None:
        t, _, kind, data = ev
        if kind == FINISH:
            self._finish(t, data)
        elif kind == TICK:
            self._tick(t)
        elif kind == APPLY:
            self._apply(t, data)
        elif kind == SPEED:
            i, speed = data
            self.advance_all(t)
            e = self.engines[i]
            e.spec = e.spec.with_(speed=speed)

    # -- requests
    def _arrive(self, r: tr.TraceRequest) -> None:
        req = Request(r.prompt_tokens, r.output_tokens)
        extra = self.timing.sideband_delay if self.con.kind == "sideband" else 0.0
        self.meta[req.rid] = (r.t, extra)
        k = self.con.kind
        if k == "oracle":
            target = self._oracle_pick(req)
        elif k == "oracle-work":
            target = self._oracle_work_pick(req)
        elif k == "sideband":
            target = self._sideband_pick()
        else:
            for v, c in zip(self.views, self.outstanding):
                v.connections = c
            if self.ltm_queue and self.con.queue:
                target = QUEUED  # FIFO: nobody overtakes the LTM queue
            else:
                target = decide(self.selector, self.views, self.con.queue)
            if target is None:
                self.res.rejected += 1
                return
            if target == QUEUED:
                self.ltm_queue.append(req)
                return
            target = self.idx[target]
        self._send(req, target, r.t)

    def _send(self, req: Request, i: int, now: float) -> None:
        self.outstanding[i] += 1
        self.out_tokens[i] += req.output_tokens
        if not self.engines[i].submit(req, now):
            self.outstanding[i] -= 1
            self.out_tokens[i] -= req.output_tokens
            self.res.rejected += 1
            self.meta.pop(req.rid, None)

    def _finish(self, t: float, req: Request) -> None:
        i = self.idx[req.engine]
        self.outstanding[i] -= 1
        self.out_tokens[i] -= req.output_tokens
        self.fin_gen[i] += req.output_tokens
        arrival, extra = self.meta.pop(req.rid)
        self.res.ttft.append(req.first_token - arrival + extra)
        self.res.queue.append(req.first_scheduled - arrival)
        if req.finish <= self.duration:
            self.res.completed_in_window += 1
        if self.ltm_queue:
            self._drain_ltm(t)

    def _drain_ltm(self, t: float) -> None:
        while self.ltm_queue:
            for v, c in zip(self.views, self.outstanding):
                v.connections = c
            name = self.selector.pick(self.views)
            if name is None:
                return
            self._send(self.ltm_queue.popleft(), self.idx[name], t)

    # -- the oracles: perfect, instant knowledge of every engine's exact state
    def _oracle_state(self, i: int, e: Engine):
        s = e.spec
        n = max(1, e.num_running)
        prefill = sum(q.prompt_tokens + q.generated for q in e._waiting)
        prefill += sum(seq.prefill_left for seq in e._prefilling.values())
        decode_left = max(0, self.out_tokens[i] - (e.generation_tokens_total - self.fin_gen[i]))
        return s, n, prefill, decode_left

    def _oracle_work_pick(self, req: Request) -> int:
        """The issue's oracle: the member whose outstanding work (prefill + decode, in seconds of its
        own speed, this request's prefill included) is least."""
        best, best_w = 0, math.inf
        for i, e in enumerate(self.engines):
            s, n, prefill, decode_left = self._oracle_state(i, e)
            work = ((prefill + req.prompt_tokens) * s.per_prefill_token_ms
                    + decode_left * (s.base_ms / n + s.per_seq_ms) + s.base_ms) / s.speed
            if work < best_w:
                best, best_w = i, work
        return best

    def _oracle_pick(self, req: Request) -> int:
        """TTFT oracle: the member where this request's first token is expected soonest: the prefill
        backlog ahead of it plus its own prefill, plus, when the KV cache or max_num_seqs cannot take
        everything queued, the share of the running decodes that must finish first."""
        best, best_w = 0, math.inf
        for i, e in enumerate(self.engines):
            s, n, prefill, decode_left = self._oracle_state(i, e)
            B = s.block_size
            step = (s.base_ms + s.per_seq_ms * n) / s.speed
            t = ((prefill + req.prompt_tokens) * s.per_prefill_token_ms) / s.speed + step
            need = sum(-(-(q.prompt_tokens + q.generated + 1) // B) for q in e._waiting)
            need += -(-(req.prompt_tokens + 1) // B)
            free = e._total - e._used
            drain = decode_left / n * step  # time until the running decodes are all done
            short = 0.0
            if need > free and e._used:
                short = max(short, (need - free) / e._used)
            excess = e.num_running + e.num_waiting + 1 - s.max_num_seqs
            if excess > 0:
                short = max(short, excess / n)
            t += min(1.0, short) * drain
            if t < best_w:
                best, best_w = i, t
        return best

    # -- the sideband scheduler: weighted random over S1 scores refreshed every interval
    def _sideband_pick(self) -> int:
        scores = self.sideband_scores
        if not scores or not sum(scores) > 0:
            return self.rng.randrange(len(self.engines))
        return self.rng.choices(range(len(scores)), weights=scores)[0]

    # -- the controller
    def _sample(self, e: Engine) -> Sample:
        return Sample(waiting=float(e.num_waiting), running=float(e.num_running), kv_usage=e.kv_usage,
                      kv_max_concurrency=e.spec.kv_cache_max_concurrency, engine="vllm")

    def _tick(self, t: float) -> None:
        tm = self.timing
        self.advance_all(t)
        samples = {n: self._sample(e) for n, e in zip(self.names, self.engines)}
        ready = t + tm.scrape_latency
        if self.con.kind == "sideband":
            sc = policy.s1(samples, ModeConfig("s1", self.con.w_a, self.con.w_b))
            self.push(ready, APPLY, ("sideband", [sc[n] for n in self.names]))
        else:
            members = tuple(Member(n, "Common", f"10.0.0.{i + 1}", 8000, ratio=v.ratio,
                                   connection_limit=v.connection_limit)
                            for i, (n, v) in enumerate(zip(self.names, self.views)))
            state = PoolState(PoolRef("bench"), self.con.lb_mode, members, self.con.queue)
            scrapes = {n: ScrapeResult(n, ready, sample=s) for n, s in samples.items()}
            plan, self.memory = planner.plan_pool(state, scrapes, self.cfg, self.memory, ready, 0.0)
            changes = [(p.member.name, p.ratio, p.connection_limit) for p in plan.writes]
            if changes:
                self.res.writes += len(changes)
                self.push(ready + tm.write_latency, APPLY, ("ltm", changes))
        if t + tm.scrape_interval <= self.duration:
            self.push(t + tm.scrape_interval, TICK)

    def _apply(self, t: float, data) -> None:
        kind, payload = data
        if kind == "sideband":
            self.sideband_scores = payload
            return
        for name, ratio, limit in payload:
            v = self.views[self.idx[name]]
            v.ratio, v.connection_limit = ratio, limit
        if self.ltm_queue:
            self._drain_ltm(t)


def run_one(args) -> dict:
    sc_key, load, con_name, duration, seed, timing, weights = args
    sim = Sim(SCENARIOS[sc_key], load, CONTENDERS[con_name], duration=duration, seed=seed, timing=timing,
              weights=weights)
    return sim.run().summary()


# --- the matrix, the doc and the plot ---------------------------------------------------------------

SMALL_SET = ("lc", "sideband", "s1-rlc", "connlimit", "qbal-rlc", "balance2-rlc", "balance-rlc", "oracle")
PREVIOUS_DEFAULT = "balance2-rlc"  # the goal tables' comparison column
TUNE_GRID = [  # (label, weights changes, timing changes) around the chosen defaults
    ("dead_band 0", dict(dead_band=0.0), {}),
    ("dead_band 0.05", dict(dead_band=0.05), {}),
    ("dead_band 0.1 (default)", {}, {}),
    ("dead_band 0.2", dict(dead_band=0.2), {}),
    ("max_step 0.25", dict(max_step=0.25), {}),
    ("max_step 1.0", dict(max_step=1.0), {}),
    ("smoothing 0.3", dict(smoothing=0.3), {}),
    ("smoothing 0.6", dict(smoothing=0.6), {}),
    ("scrape interval 0.5 s", {}, dict(scrape_interval=0.5)),
    ("scrape interval 2 s", {}, dict(scrape_interval=2.0)),
    ("scrape interval 5 s", {}, dict(scrape_interval=5.0)),
    ("write latency 1 s", {}, dict(write_latency=1.0)),
]
TUNE_CASES = (("hetero4-conv", 0.85), ("hetero4-code", 0.85), ("homo4-conv", 0.95))


# Ablation of the default policy: each row turns one ingredient of `balance` off (docs/policy.md).
ABLATION = [  # (label, balance_step keyword changes, weights changes)
    ("default (leak 0.2 toward KV-capacity prior, dead zone 0.03, clip 0.1, log pressure)", {}, {}),
    ("no capacity prior (leak toward equal ratios)", dict(prior=0.0), {}),
    ("no capacity prior, leak 0.1", dict(prior=0.0, leak=0.1), {}),
    ("prior 0.5", dict(prior=0.5), {}),
    ("no leak", dict(leak=0.0), {}),
    ("no dead zone", dict(dead_zone=0.0), {}),
    ("no clip", dict(max_move=math.inf), {}),
    ("linear pressure (not log1p)", dict(log_pressure=False), {}),
    ("leak 0.1", dict(leak=0.1), {}),
    ("gain 4", dict(gain=4.0), {}),
    ("+ smoothing 0.3", {}, dict(smoothing=0.3)),
    ("balance v1 (previous default)", None, {}),
]
ABLATION_CASES = (("hetero4-conv", 0.7), ("hetero4-conv", 0.95), ("hetero4-code", 0.85),
                  ("homo4-conv", 0.95), ("homo4-code", 0.7), ("homo4-code", 0.95))


def _ablation_contender(i: int) -> str:
    """Register ablation row i as a bench-only policy and contender; returns the contender name."""
    label, kw, wch = ABLATION[i]
    name = f"ablation-{i}"
    if kw is None:
        pol = "balance-v1"
    else:
        pol = f"bench:{name}"
        policy.POLICIES[pol] = lambda s, m, c, kw=kw: policy.balance_step(s, m, c, **kw)
    CONTENDERS[name] = Contender(name, "ctl", "ratio-least-connections-member", pol, replace(W, **wch), label=label)
    return name


ABLATION_NAMES = [f"ablation-{i}" for i in range(len(ABLATION))]


def run_ablation(duration: float, seed: int, workers: int) -> list[dict]:
    """Registers the ablation policies only now (not on import: tests import this module and check the
    policy registry), before the worker processes fork."""
    for i in range(len(ABLATION)):
        _ablation_contender(i)
    jobs = [(k, ld, n, duration, seed, Timing(), None) for k, ld in ABLATION_CASES for n in ABLATION_NAMES + ["lc", "oracle"]]
    return run_jobs(jobs, workers)


def contenders_for(sc: Scenario, chosen: Sequence[str]) -> list[str]:
    if sc.pool.endswith("16"):
        return [c for c in chosen if c in SMALL_SET]
    return list(chosen)


def build_jobs(scenarios: Sequence[str], chosen: Sequence[str], duration: float, seed: int) -> list:
    jobs = []
    for key in scenarios:
        sc = SCENARIOS[key]
        for load in sc.loads:
            for c in contenders_for(sc, chosen):
                jobs.append((key, load, c, duration, seed, Timing(), None))
    return jobs


def run_jobs(jobs: list, workers: int) -> list[dict]:
    # biggest first, so the two workers finish together
    order = sorted(range(len(jobs)), key=lambda i: -(SCENARIOS[jobs[i][0]].pool.endswith("16") * 4 + jobs[i][1]))
    todo = [jobs[i] for i in order]
    if workers <= 1:
        out = [run_one(j) for j in todo]
    else:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as p:
            out = []
            for k, r in enumerate(p.imap_unordered(run_one, todo, chunksize=1), 1):
                out.append(r)
                if k % 20 == 0 or k == len(todo):
                    print(f"  {k}/{len(todo)} runs", flush=True)
    return out


def run_tuning(duration: float, seed: int, workers: int, pol: str = "queue-balance") -> list[dict]:
    jobs = []
    for sc_key, load in TUNE_CASES:
        for label, wch, tch in TUNE_GRID:
            jobs.append((sc_key, load, CONTENDERS_DEFAULT, duration, seed, replace(Timing(), **tch),
                         replace(CONTENDERS[CONTENDERS_DEFAULT].weights, **wch), label))
    def strip(j):
        return j[:7]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(max(1, workers)) as p:
        res = p.map(run_one, [strip(j) for j in jobs], chunksize=1)
    for r, j in zip(res, jobs):
        r["tune"] = j[7]
    return res


def fmt(x: float, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def plot(results: list[dict], scenario: str, path: Path, seed: int, duration: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results if r["scenario"] == scenario]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for c in [c for c in CONTENDERS if any(r["contender"] == c for r in rows)]:
        pts = sorted((r["load"], r["p99"]) for r in rows if r["contender"] == c)
        style = "--" if c.startswith("oracle") else "-"
        ax.plot([100 * x for x, _ in pts], [y for _, y in pts], style, marker="o", label=c)
    ax.set_yscale("log")
    ax.set_xlabel("offered load, % of pool capacity")
    ax.set_ylabel("p99 TTFT, s (log)")
    ax.set_title(f"{scenario}: p99 TTFT vs load (seed {seed}, {duration / 60:.0f} simulated min per point)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.text(0.01, 0.01, "Trace: Azure LLM inference 2023 (Patel et al., Splitwise, ISCA 2024), CC-BY 4.0", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def goal_lines(results: list[dict], default: str) -> list[str]:
    """Check the issue's acceptance goals for the default contender."""
    by = {(r["scenario"], r["load"], r["contender"]): r for r in results}
    out = ["| scenario | load | default p99 | vs LC (goal ≤ 0.6) | vs sideband (goal ≤ 0.8) | vs best oracle (goal ≤ 1.3) | previous default (`" + PREVIOUS_DEFAULT + "`) p99 |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    homo = ["| scenario | load | default p99 | LC p99 | ratio (goal ≤ 1.05) | previous default p99 / ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    for key, sc in SCENARIOS.items():
        for load in sc.loads:
            d = by.get((key, load, default))
            if not d:
                continue
            v1 = by.get((key, load, PREVIOUS_DEFAULT))
            if sc.goal == "hetero" and 0.7 <= load <= 0.95:
                lc, sb = by.get((key, load, "lc")), by.get((key, load, "sideband"))
                ors = [by[(key, load, o)]["p99"] for o in ("oracle", "oracle-work") if (key, load, o) in by]
                orc = min(ors) if ors else math.nan
                def ratio(ref, d=d):
                    return d["p99"] / ref["p99"] if ref else math.nan
                r_lc, r_sb, r_or = ratio(lc), ratio(sb), d["p99"] / orc if ors else math.nan
                mark = lambda v, g: f"{fmt(v)} {'✅' if v <= g else '❌'}" if not math.isnan(v) else "–"
                out.append(f"| {key} | {load:.0%} | {fmt(d['p99'])} | {mark(r_lc, 0.6)} | {mark(r_sb, 0.8)} | {mark(r_or, 1.3)} | {fmt(v1['p99']) if v1 else '–'} |")
            elif sc.goal == "homo":
                lc = by.get((key, load, "lc"))
                if lc:
                    v = d["p99"] / lc["p99"]
                    homo.append(f"| {key} | {load:.0%} | {fmt(d['p99'])} | {fmt(lc['p99'])} | {fmt(v)} {'✅' if v <= 1.05 else '❌'} | {(fmt(v1['p99']) + ' / ' + fmt(v1['p99'] / lc['p99'])) if v1 else '–'} |")
    return out + [""] + homo


def write_doc(results: list[dict], tuning: list[dict], args, wall: float, default: str, ablation=()) -> None:
    docs = ROOT / "docs"
    cmd = "python bench/traffic.py" + (" --quick" if args.quick else "") + (f" --seed {args.seed}" if args.seed != SEED else "")
    cmd += (f" --only {args.only}" if args.only else "") + (f" --contenders {args.contenders}" if args.contenders else "")
    cmd += (" --no-tune" if args.no_tune else "") + (f" --out {args.out}" if args.out != "benchmarks.md" else "")
    L = []
    L.append("# Traffic benchmark: do the ratios help?\n")
    L.append(f"Generated by `{cmd}` (seed {args.seed}, {args.duration / 60:.0f} simulated minutes per run, "
             f"{len(results)} runs, {wall / 60:.1f} min of wall time on {args.workers} worker processes; "
             f"the slowest single run took {max(r['wall'] for r in results):.1f} s, the median "
             f"{statistics.median(r['wall'] for r in results):.1f} s). "
             "Do not edit by hand: the text between the tables is in `bench/traffic.py`, the model and the "
             "reasoning are in [policy.md](policy.md).\n")
    L.append(DOC_MODEL.format(slo=TTFT_SLO, seed=args.seed, **Timing().__dict__, sideband_ms=Timing().sideband_delay * 1000))
    L.append("\n## Acceptance goals (issue #4), for the default policy `" + default + "`\n")
    L.extend(goal_lines(results, default))
    L.append("")
    L.append(GOAL_NOTE)
    legend = "\n".join(f"| `{CONTENDERS[c].name}` | {CONTENDERS[c].label} |" for c in DEFAULT_CONTENDERS)
    L.append("\n## Contenders\n\n| name | what |\n| --- | --- |\n" + legend + "\n")
    for key, sc in SCENARIOS.items():
        rows = [r for r in results if r["scenario"] == key]
        if not rows:
            continue
        cap = pool_capacity(sc.pool, sc.trace)
        L.append(f"\n## {key}: {sc.title}\n")
        L.append(f"Pool capacity {cap:.1f} requests/s (saturated throughput, `trace.capacity_estimate`); seed {args.seed}.\n")
        if len(sc.loads) > 1:
            png = f"{Path(args.out).stem}-{key}.png"
            plot(results, key, docs / png, args.seed, args.duration)
            L.append(f"![p99 TTFT vs load, {key}, seed {args.seed}]({png})\n")
        for load in sc.loads:
            lr = [r for r in rows if r["load"] == load]
            if not lr:
                continue
            over, peak = overload_share(arrivals(sc, load, args.duration), args.duration, cap)
            L.append(f"\n**Load {load:.0%}** ({lr[0]['n']} requests, {load * cap:.1f}/s offered; {over:.0%} of requests "
                     f"arrive in a 10-s window above pool capacity, the busiest 10 s at {peak:.1f}× capacity)\n")
            L.append("| contender | TTFT p50 s | p90 s | p99 s | mean queue wait s | p99 queue s | completed/s | TTFT > "
                     f"{TTFT_SLO:g} s | BIG-IP writes/min | preemptions |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for c in CONTENDERS:
                r = next((x for x in lr if x["contender"] == c), None)
                if r is None:
                    continue
                name = f"**{c}**" if c == CONTENDERS_DEFAULT else c
                L.append(f"| {name} | {fmt(r['p50'])} | {fmt(r['p90'])} | {fmt(r['p99'])} | {fmt(r['queue_mean'])} | "
                         f"{fmt(r['queue_p99'])} | {fmt(r['throughput'], 1)} | {r['slo']:.1%} | {fmt(r['writes_per_min'], 1)} | {r['preemptions']} |")
    if tuning:
        L.append("\n## Damping and scrape-interval tuning (default policy, `balance-rlc`)\n")
        L.append(f"Each row changes one setting from the defaults; {args.tune_duration / 60:.0f} simulated minutes per run, seed {args.seed}.\n")
        cases = [f"{k} @ {ld:.0%}" for k, ld in TUNE_CASES]
        L.append("| setting | " + " | ".join(f"{c} p99 / writes/min" for c in cases) + " |")
        L.append("| --- | " + " | ".join("---:" for _ in cases) + " |")
        for label, _, _ in TUNE_GRID:
            cells = []
            for k, ld in TUNE_CASES:
                r = next((x for x in tuning if x["tune"] == label and x["scenario"] == k and x["load"] == ld), None)
                cells.append(f"{fmt(r['p99'])} / {fmt(r['writes_per_min'], 1)}" if r else "–")
            L.append(f"| {label} | " + " | ".join(cells) + " |")
    if ablation:
        L.append("\n## Ablation of the default policy (`balance`, ratio-least-conns)\n")
        L.append(f"Each row changes one ingredient of `controller.policy.balance_step` (or the planner's smoothing); "
                 f"{args.tune_duration / 60:.0f} simulated minutes per run, seed {args.seed}. Cells: p99 TTFT s / BIG-IP "
                 "writes per minute; the `lc` and `oracle` rows are the references.\n")
        cases = [f"{k} @ {ld:.0%}" for k, ld in ABLATION_CASES]
        L.append("| variant | " + " | ".join(cases) + " |")
        L.append("| --- | " + " | ".join("---:" for _ in cases) + " |")
        for name in ABLATION_NAMES + ["lc", "oracle"]:
            cells = []
            for k, ld in ABLATION_CASES:
                r = next((x for x in ablation if x["contender"] == name and x["scenario"] == k and x["load"] == ld), None)
                cells.append(f"{fmt(r['p99'])} / {fmt(r['writes_per_min'], 0)}" if r else "–")
            label = CONTENDERS[name].label if name.startswith("ablation-") else f"`{name}`"
            L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append(DOC_LIMITS)
    (docs / args.out).write_text("\n".join(L) + "\n", encoding="utf-8")


CONTENDERS_DEFAULT = "balance-rlc"

DOC_MODEL = """
## The model

A discrete-event simulation in virtual time (`bench/traffic.py`). Nothing is copied from the code it
judges: it drives

* **engines**: `controller.sim.engine.Engine` (vLLM-V1-like continuous batching, paged KV cache,
  chunked prefill, recompute preemption; presets and assumptions in [engine-model.md](engine-model.md));
* **BIG-IP LTM**: the selection models of the emulator's data plane (`controller.sim.dataplane.make_selector`
  and `decide`, including `QUEUED` for `queueOnConnectionLimit`). A connection is held from a request's
  arrival to its last token; queued connections are served FIFO as connections close or limits rise;
* **the controller**: the real `controller.planner.plan_pool` (policy, EWMA smoothing, dead band, max step,
  floor, connection limits), with the shipped `WeightsConfig` defaults, fed every scrape interval by a
  `Sample` (waiting, running, KV use, kv_cache_max_concurrency) of each engine's state at the scrape.
  The pool state it plans from carries the ratios LTM currently uses (as read from BIG-IP).

**Staleness.** Scrapes every {scrape_interval:g} s (the seed's `metrics_fetch_interval` default), random
phase; the plan is made {scrape_latency:g} s after the scrape (scrape latency) and the written ratios
take effect {write_latency:g} s later (iControl REST write latency). So a ratio is based on figures
0.3–1.3 s old when LTM uses it. The sideband scheduler refreshes its S1 scores on the same
{scrape_interval:g} s schedule and adds {sideband_ms:g} ms to every request's TTFT for its per-request
sideband call (one LAN round trip plus its HTTP handling; it waits up to 500 ms).

**Arrivals.** The Azure LLM inference traces (conv: mean 1,155 prompt / 211 output tokens; code: 2,048 /
28), compressed in time to the target share of the pool's capacity and repeated to fill the run, so
the token mix and the burstiness of the original are kept. Capacity is the engines' summed *saturated*
throughput (`trace.capacity_estimate`): at 85–95% of it a pool runs with deep batches and, during the
trace's own bursts, above capacity, so tail latencies there are seconds for every contender. Each load's
header says how bursty it is: the share of requests that arrive in a 10-s window whose rate is above pool
capacity. The code trace arrives in batches: in the 10-minute runs, even at 50% mean load 37–55% of its requests arrive in such
windows (conv: none), so its "70–95%" points are overload races, not steady 70–95% utilisation. Every run
of a scenario sees exactly the same arrivals; the only randomness (the sideband scheduler's weighted
random picks, the controller's scrape phase) comes from `random.Random(seed)`, seed {seed}.

**Metrics.** TTFT from arrival at LTM to the first token (LTM queueing and sideband delay included);
queue wait from arrival at LTM to the first scheduled step (LTM queue + engine queue); completed/s:
requests finished inside the run's window divided by its length (arrivals stop at the end of the window;
the stragglers are drained for the latency figures); TTFT SLO {slo:g} s; BIG-IP writes: member PATCHes
per minute (a ratio or limit change of one member is one write).

Traces: Azure Public Dataset (AzureLLMInferenceTrace_conv and _code, 2023), CC-BY 4.0. **Attribution:
Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.**
"""

GOAL_NOTE = """Where a cell is ❌ the goal is not met; the ratio says by how much. See "Why the goals are or are not
met" in [policy.md](policy.md) for the reasons and for what design change would close the gap."""

DOC_LIMITS = """
## What the simulation does not capture

* Everything [engine-model.md](engine-model.md) lists (no prefix caching, no step-time noise, attention
  cost independent of context length, TTFT measured inside the engine plus LTM queueing).
* LTM is one TMM with exact connection counts; real BIG-IPs run several TMMs, each with its own view of
  connections (CMP), which makes least-connections noisier than modelled here.
* Clients never give up; nothing is retried or cancelled; `queueDepthLimit`/`queueTimeLimit` are unlimited.
* Scrapes and writes never fail and take a fixed time; the sideband scheduler never times out.
* The oracles are heuristics with perfect, instant knowledge (exact queues, KV blocks, decode progress),
  not proofs of optimality: `oracle-work` is the issue's "least outstanding work", `oracle` estimates the
  time to this request's first token (prefill backlog ahead of it, plus the wait for KV blocks or batch
  slots). A contender can beat them at some points.
* One seed per figure; differences of a few percent between contenders are within run-to-run noise.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 simulated minutes per run instead of 60")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds per run")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated scenario keys")
    ap.add_argument("--contenders", default="", help="comma-separated contender names")
    ap.add_argument("--no-doc", action="store_true", help="print the results, do not write docs/")
    ap.add_argument("--no-tune", action="store_true", help="skip the damping sweep")
    ap.add_argument("--tune-duration", type=float, default=600.0)
    ap.add_argument("--out", default="benchmarks.md", help="file name under docs/ (PNGs are named after it)")
    args = ap.parse_args(argv)
    args.duration = args.duration or (600.0 if args.quick else 3600.0)
    scenarios = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    chosen = [c for c in args.contenders.split(",") if c] or list(DEFAULT_CONTENDERS)
    t0 = time.perf_counter()
    for key in scenarios:  # warm the capacity cache before forking
        pool_capacity(SCENARIOS[key].pool, SCENARIOS[key].trace)
    jobs = build_jobs(scenarios, chosen, args.duration, args.seed)
    print(f"{len(jobs)} runs of {args.duration:.0f} simulated s, {args.workers} workers", flush=True)
    results = run_jobs(jobs, args.workers)
    tuning = [] if (args.no_tune or args.no_doc) else run_tuning(args.tune_duration, args.seed, args.workers)
    ablation = [] if (args.no_tune or args.no_doc) else run_ablation(args.tune_duration, args.seed, args.workers)
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: (list(SCENARIOS).index(r["scenario"]), r["load"], list(CONTENDERS).index(r["contender"])))
    for r in results:
        print(f"{r['scenario']:14s} {r['load']:.2f} {r['contender']:12s} p50 {r['p50']:7.3f} p90 {r['p90']:7.3f} "
              f"p99 {r['p99']:7.3f} q {r['queue_mean']:6.3f} thr {r['throughput']:6.1f} slo {r['slo']:6.1%} "
              f"w/min {r['writes_per_min']:6.1f} wall {r['wall']:5.1f}s")
    slowest = max(r["wall"] for r in results)
    print(f"total wall time {wall:.1f} s (slowest single run {slowest:.1f} s)")
    if not args.no_doc:
        write_doc(results, tuning, args, wall, CONTENDERS_DEFAULT, ablation)
        print(f"wrote docs/{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
