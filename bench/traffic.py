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
import os
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller import planner, policy  # noqa: E402
from controller.config import ModeConfig, PoolConfig, WeightsConfig  # noqa: E402
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult  # noqa: E402
from controller.sim import trace as tr  # noqa: E402
from controller.sim.dataplane import QUEUED, MemberView, decide, make_selector  # noqa: E402
from controller.sim.engine import Engine, EngineSpec, Request, preset  # noqa: E402

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

CONTENDERS: Dict[str, Contender] = {c.name: c for c in [
    Contender("rr", "lb", "round-robin", label="round-robin"),
    Contender("lc", "lb", "least-connections-member", label="least-connections-member"),
    Contender("sideband", "sideband", label="sideband scheduler (S1 weighted random)"),
    Contender("s1-ratio", "ctl", "ratio-member", "s1", label="f5-llm-ratio S1, ratio-member"),
    Contender("s1-rlc", "ctl", "ratio-least-connections-member", "s1", label="f5-llm-ratio S1, ratio-least-conns"),
    Contender("connlimit", "ctl", "least-connections-member", "s1", CL_WEIGHTS, queue=True,
              label="f5-llm-ratio connection limits (KV x4) + LTM queue"),
    Contender("kvcap-rlc", "ctl", "ratio-least-connections-member", "kv-capacity", label="KV-capacity weights, ratio-least-conns"),
    Contender("qbal-rlc", "ctl", "ratio-least-connections-member", "queue-balance", label="queue-balance, ratio-least-conns"),
    Contender("balance-rlc", "ctl", "ratio-least-connections-member", "balance", label="balance (closed loop), ratio-least-conns"),
    Contender("oracle-work", "oracle-work", label="oracle: least outstanding work (perfect knowledge)"),
    Contender("oracle", "oracle", label="oracle: soonest expected first token (perfect knowledge)"),
]}
DEFAULT_CONTENDERS = tuple(CONTENDERS)

# --- pools and scenarios ----------------------------------------------------------------------------


def _engine(kind: str, i: int, **changes) -> EngineSpec:
    return preset(kind, name=f"m{i}", **changes)


def pool_specs(name: str) -> List[EngineSpec]:
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
    loads: Tuple[float, ...]
    slowdown: Optional[Tuple[int, float, float, float]] = None  # member index, speed factor, start, end (share of duration)
    bursts: Optional[Tuple[float, float, float]] = None  # period s, burst length s, rate multiplier in the burst
    goal: str = ""  # "hetero" or "homo": which acceptance test applies


LOADS = (0.5, 0.7, 0.85, 0.95)

SCENARIOS: Dict[str, Scenario] = {s.key: s for s in [
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

_TRACES: Dict[str, list] = {}
_CAPS: Dict[Tuple[str, str], float] = {}


def base_trace(name: str) -> list:
    if name not in _TRACES:
        _TRACES[name] = tr.load_trace(name)
    return _TRACES[name]


def pool_capacity(pool: str, trace_name: str) -> float:
    """Summed saturated throughput (requests/s) of the pool's engines for the trace's token mix."""
    key = (pool, trace_name)
    if key not in _CAPS:
        cache: Dict[EngineSpec, float] = {}
        total = 0.0
        for spec in pool_specs(pool):
            s = spec.with_(name="x")
            if s not in cache:
                cache[s] = tr.capacity_estimate(s, base_trace(trace_name))
            total += cache[s]
        _CAPS[key] = total
    return _CAPS[key]


def arrivals(sc: Scenario, load: float, duration: float) -> List[tr.TraceRequest]:
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
    ttft: List[float] = field(default_factory=list, repr=False)
    queue: List[float] = field(default_factory=list, repr=False)
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
                 timing: Timing = Timing(), weights: Optional[WeightsConfig] = None):
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
        self.meta: Dict[int, Tuple[float, float]] = {}  # rid -> (LTM arrival, extra TTFT)
        self.weights = weights or con.weights
        if con.kind == "ctl":
            self.cfg = PoolConfig(PoolRef("bench"), "vllm", mode=ModeConfig(con.policy, con.w_a, con.w_b),
                                  weights=self.weights)
            self.memory: dict = {}
        self.sideband_scores: Optional[List[float]] = None
        self.pending_sideband: Optional[List[float]] = None
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
            if t_arr == math.inf and (t_ev == math.inf or not any(self.outstanding) and not self.ltm_queue):
                break
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
