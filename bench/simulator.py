"""The traffic benchmark's discrete-event simulation: one scenario, one contender, one seed.

It reuses, not copies: the engine model (`controller.sim.engine.Engine`: continuous batching, paged
KV, preemption, prefill and decode speeds, step noise), LTM's member selection, connection limits and
connection queue (`controller.sim.dataplane.DataPlane`: `queueOnConnectionLimit`, `queueDepthLimit`,
`queueTimeLimit`, FIFO), and the controller's real decision code (`controller.policy.planner.plan_pool` with
`controller.policy.scoring`, `controller.engines.capacity` and `controller.policy.weights` damping), fed every tick by the
`Sample` a scrape of each engine's /metrics page would give (load figures and speed counters).
Only public accessors of the engine are read.

Every arrival counts: a request reset by queueTimeLimit, rejected (queue full, no member, too long for
the engine) or not finished when the run stops is a miss for goodput (`RunResult.summary`).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from controller.policy import planner, scoring
from controller.config.schema import ModeConfig, PoolConfig, WeightsConfig
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult, SpeedCounters
from controller.sim import trace as tr
from controller.sim.dataplane import QUEUED, DataPlane, MemberView, PoolView
from controller.sim.engine import Engine, EngineSnapshot, Request

from bench.scenario import Scenario, arrivals

RLC = "ratio-least-connections-member"


@dataclass(frozen=True)
class Timing:
    scrape_latency: float = 0.05  # GET /metrics of a 40 KB page and parse
    write_latency: float = 0.25  # iControl REST PATCH through restjavad (tens to hundreds of ms)
    sideband_delay: float = 0.003  # the iRule's sideband POST /scheduler/select per request (LAN RTT + work)


@dataclass(frozen=True)
class Contender:
    """One way to spread requests. kind: "lb" (plain LTM mode), "ctl" (f5-llm-ratio with `policy`),
    "static" (fixed ratios under ratio-least-connections), "sideband" (S1 weighted random refreshed
    every `refresh` s), and two references that know what no load balancer knows: "exact" (per request,
    the member whose engine, by its exact state, gives this prompt the earliest first token) and
    "central" (one FIFO queue in front of the pool; a request leaves it for the member with the earliest
    predicted first token among those whose engine has nothing waiting). The references ignore the
    scenario's pool queue settings: they are not LTM."""

    name: str
    kind: str
    lb_mode: str = "round-robin"
    policy: str = "balance"
    scorer: scoring.Policy | None = None  # a bench-only policy variant (not registered anywhere)
    prefill_weight: float | None = None  # a bench-only capacity.PREFILL_WEIGHT
    weights: WeightsConfig = WeightsConfig(describe=False)
    refresh: float | None = None  # sideband: score refresh interval; None = the scenario's tick
    ratios: tuple[int, ...] = ()  # static: one ratio per member
    limits: tuple[int, ...] = ()  # static: one connection limit per member (0: none); empty: none
    #: > 0: the opt-in goodput mode: the pool set to queueOnConnectionLimit (an operator's setting) and the
    #: controller configured with weights.queue_time_limit: slo, queue_time_share = this, slo_s = the
    #: scenario's; the planner plans queueTimeLimit and the run writes it (controller.policy.planner.queue_time_plan)
    queue_time_share: float = 0.0
    label: str = ""


@dataclass
class RunResult:
    scenario: str
    contender: str
    seed: int
    load: float
    duration: float
    n: int = 0
    ttft: list[float] = field(default_factory=list, repr=False)
    writes: int = 0
    rejected: int = 0
    preemptions: int = 0
    wall: float = 0.0
    final_ratios: tuple[int, ...] = ()
    resets: int = 0  # queued past queueTimeLimit: LTM reset the connection
    limit_writes: int = 0  # member PATCHes that changed a connection limit (included in `writes`)
    slo_s: float = 2.0

    def summary(self) -> dict:
        """Latency figures over the requests served (p50 ... slo_2s, as before), and goodput over every
        arrival: a request reset, rejected or never finished counts as a miss (`goodput_*`, `over_10s`)."""
        t = sorted(self.ttft)
        n = max(1, self.n)

        def within(limit: float) -> float:
            return sum(1 for x in t if x <= limit) / n

        return {
            "p50": pct(t, 50), "p90": pct(t, 90), "p99": pct(t, 99),
            "mean": sum(t) / len(t) if t else math.nan,
            "slo_1s": sum(1 for x in t if x <= 1.0) / len(t) if t else math.nan,
            "slo_2s": sum(1 for x in t if x <= 2.0) / len(t) if t else math.nan,
            "writes_per_min": self.writes / (self.duration / 60.0),
            "goodput_2s": within(2.0), "goodput_1s": within(1.0), "goodput_slo": within(self.slo_s),
            "over_10s": 1.0 - within(10.0),
            "resets": float(self.resets),
            "unserved": (self.n - len(t)) / n,
            "limit_writes_per_min": self.limit_writes / (self.duration / 60.0),
        }


def pct(xs: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of sorted xs."""
    if not xs:
        return math.nan
    i = min(len(xs) - 1, max(0, math.ceil(p / 100.0 * len(xs)) - 1))
    return xs[i]


def counters(snap: EngineSnapshot) -> SpeedCounters:
    """What vLLM's page would show of this engine's speed (controller.engines.specs reads the same names)."""
    ttft, itl = snap.histograms["ttft"], snap.histograms["itl"]
    return SpeedCounters(prompt_tokens=float(snap.prompt_tokens_total), generation_tokens=float(snap.generation_tokens_total),
                         requests=float(snap.num_finished), ttft_sum=ttft.sum, ttft_count=float(ttft.count),
                         itl_sum=itl.sum, itl_count=float(itl.count))


FINISH, TICK, APPLY, SPEED, REFRESH = 0, 1, 2, 3, 4
POOL = "bench"
LTM_KINDS = ("lb", "ctl", "static")


class Sim:
    """One run."""

    def __init__(self, sc: Scenario, con: Contender, *, timing: Timing = Timing()):
        self.sc, self.con, self.timing = sc, con, timing
        self.seed = sc.arrivals.seed
        self.rng = random.Random(self.seed * 7919 + 17)
        self.tick_s = sc.tick_ms / 1000.0
        self.specs = sc.engine_specs()
        self.names = [s.name for s in self.specs]
        self.idx = {n: i for i, n in enumerate(self.names)}
        self.engines = [Engine(s, keep_finished=False, on_finish=self._on_finish) for s in self.specs]
        ratios = con.ratios if con.kind == "static" else (1,) * len(self.specs)
        limits = con.limits if con.kind == "static" and con.limits else (0,) * len(self.specs)
        self.views = [MemberView(n, ratio=r, connection_limit=c) for n, r, c in zip(self.names, ratios, limits, strict=True)]
        self.mode = RLC if con.kind == "static" else (con.lb_mode if con.kind in LTM_KINDS else "round-robin")
        self.now = 0.0
        q = sc.pool
        if con.queue_time_share > 0:
            q = replace(q, queue_on_connection_limit=True)  # queueTimeLimit: what the controller writes (_tick)
        self.queue_on = q.queue_on_connection_limit
        self.pool_view = PoolView(self.mode, self.views, q.queue_on_connection_limit, q.queue_depth_limit,
                                  q.queue_time_limit_ms)
        self.dp = DataPlane(lambda _pool: self.pool_view, clock=lambda: self.now)
        self.central: deque[Request] = deque()  # the central-queue reference's FIFO
        self.heap: list = []
        self._seq = 0
        self.outstanding = [0] * len(self.specs)
        self.res = RunResult(sc.name, con.name, self.seed, sc.arrivals.load, sc.duration_s, slo_s=sc.slo_s)
        self.meta: dict[int, tuple[float, float]] = {}
        self.memory: dict = {}
        if con.kind == "ctl":
            w = con.weights if con.queue_time_share <= 0 else replace(
                con.weights, queue_time_limit="slo", queue_time_share=con.queue_time_share, slo_s=sc.slo_s)
            self.cfg = PoolConfig(PoolRef("bench"), "vllm", mode=ModeConfig(con.policy), weights=w)
        self.sideband_scores: list[float] | None = None

    # -- events
    def push(self, t: float, kind: int, data: object = None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, data))

    def _on_finish(self, req: Request) -> None:
        self.push(req.finish, FINISH, req)

    def advance_all(self, t: float) -> None:
        for e in self.engines:
            if e.busy and e.t <= t:
                e.advance(t)

    def run(self) -> RunResult:
        wall0 = time.perf_counter()
        reqs = arrivals(self.sc)
        self.res.n = len(reqs)
        if self.con.kind == "ctl":
            self.push(self.rng.uniform(0, self.tick_s), TICK)
        if self.con.kind == "sideband":
            self.push(self.rng.uniform(0, self.con.refresh or self.tick_s), REFRESH)
        for s in self.sc.slowdowns:
            i = self.idx[s.member]
            self.push(s.at_s, SPEED, (i, s.factor))
            if s.until_s is not None:
                self.push(s.until_s, SPEED, (i, 1.0))
        self._loop(reqs)
        self.dp.expire()
        st = self.dp.stats(POOL)
        self.res.resets = st.expired
        self.res.rejected += st.rejected
        self.res.preemptions = sum(e.num_preemptions for e in self.engines)
        self.res.final_ratios = tuple(v.ratio for v in self.views)
        self.res.wall = time.perf_counter() - wall0
        return self.res

    def _waiting_anywhere(self) -> bool:
        return any(self.outstanding) or self.dp.queue_length(POOL) > 0 or bool(self.central)

    def _loop(self, reqs: list[tr.TraceRequest]) -> None:
        i, n = 0, len(reqs)
        horizon = self.sc.duration_s + 1800.0  # drain, but not forever: what is left is unfinished (a miss)
        while True:
            t_arr = reqs[i].t if i < n else math.inf
            t_ev = self.heap[0][0] if self.heap else math.inf
            if t_arr == math.inf and not self._waiting_anywhere():
                return
            if t_arr == math.inf and t_ev == math.inf:
                busy = [e.t for e in self.engines if e.busy]
                if not busy or min(busy) > horizon:
                    return
                self.advance_all(min(busy) + 0.5)
                continue
            if t_arr <= t_ev:
                self.advance_all(t_arr)
                while self.heap and self.heap[0][0] <= t_arr:
                    self._event(heapq.heappop(self.heap))
                self.now = t_arr
                self._arrive(reqs[i])
                i += 1
            else:
                ev = heapq.heappop(self.heap)
                if ev[0] > horizon:
                    return
                self._event(ev)

    def _event(self, ev: tuple) -> None:
        t, _, kind, data = ev
        self.now = max(self.now, t)
        if kind == FINISH:
            self._finish(data, t)
        elif kind == TICK:
            self._tick(t)
        elif kind == APPLY:
            self._apply(data, t)
        elif kind == REFRESH:
            self._refresh(t)
        elif kind == SPEED:
            i, factor = data
            self.advance_all(t)
            self.engines[i].spec = self.engines[i].spec.with_(speed=factor)

    # -- requests
    def _arrive(self, r: tr.TraceRequest) -> None:
        req = Request(r.prompt_tokens, r.output_tokens)
        k = self.con.kind
        self.meta[req.rid] = (r.t, self.timing.sideband_delay if k == "sideband" else 0.0)
        if k == "exact":
            self._submit(self._exact_pick(req.prompt_tokens), req, r.t)
        elif k == "central":
            self.central.append(req)
            self._central_dispatch(r.t)
        elif k == "sideband":
            self._submit(self._sideband_pick(), req, r.t)
        else:
            name = self.dp.pick(POOL, req)
            if name is None:  # rejected: counted by the data plane's stats
                self.meta.pop(req.rid, None)
            elif name != QUEUED:
                self._submit(self.idx[name], req, r.t)

    def _submit(self, target: int, req: Request, t: float) -> None:
        self.outstanding[target] += 1
        if not self.engines[target].submit(req, t):
            self.outstanding[target] -= 1
            self.res.rejected += 1
            self.meta.pop(req.rid, None)
            if self.con.kind in LTM_KINDS:
                self._serve(self.dp.release(POOL, self.names[target]), t)

    def _serve(self, served: list[tuple[Request, str]], t: float) -> None:
        """Connections LTM took out of its queue: they go to the member it picked, now."""
        for req, name in served:
            self._submit(self.idx[name], req, t)

    def _finish(self, req: Request, t: float) -> None:
        self.outstanding[self.idx[req.engine]] -= 1
        arrival, extra = self.meta.pop(req.rid)
        self.res.ttft.append(req.first_token - arrival + extra)
        if self.con.kind in LTM_KINDS:
            self._serve(self.dp.release(POOL, req.engine), t)
        elif self.con.kind == "central":
            self._central_dispatch(t)

    # -- references and the sideband scheduler
    def _exact_pick(self, prompt_tokens: int) -> int:
        """The member whose engine, by its exact state now, gives this prompt its first token soonest."""
        best, best_t = 0, math.inf
        for i, e in enumerate(self.engines):
            t = e.predict_ttft(prompt_tokens)
            if t < best_t:
                best, best_t = i, t
        return best

    def _central_dispatch(self, t: float) -> None:
        """Serve the central FIFO while some engine has nothing waiting: each head request goes to the
        one, among those, whose engine gives it the earliest first token."""
        while self.central:
            ready = [i for i, e in enumerate(self.engines)
                     if e.num_waiting == 0 and e.num_running < e.spec.max_num_seqs]
            if not ready:
                return
            req = self.central.popleft()
            target = min(ready, key=lambda i: self.engines[i].predict_ttft(req.prompt_tokens))
            self._submit(target, req, t)

    def _sideband_pick(self) -> int:
        scores = self.sideband_scores
        if not scores or not sum(scores) > 0:
            return self.rng.randrange(len(self.engines))
        return self.rng.choices(range(len(scores)), weights=scores)[0]

    def _refresh(self, t: float) -> None:
        self.advance_all(t)
        samples = {n: self._sample(e) for n, e in zip(self.names, self.engines, strict=True)}
        sc = scoring.s1(samples, ModeConfig("s1"))
        self.push(t + self.timing.scrape_latency, APPLY, ("sideband", [sc[n] for n in self.names]))
        every = self.con.refresh or self.tick_s
        if t + every <= self.sc.duration_s:
            self.push(t + every, REFRESH)

    # -- the controller
    def _sample(self, e: Engine) -> Sample:
        snap = e.snapshot()
        return Sample(waiting=float(snap.waiting), running=float(snap.running), kv_usage=snap.kv_usage,
                      kv_max_concurrency=snap.kv_cache_max_concurrency, engine="vllm", counters=counters(snap))

    def _tick(self, t: float) -> None:
        tm = self.timing
        self.advance_all(t)
        samples = {n: self._sample(e) for n, e in zip(self.names, self.engines, strict=True)}
        ready = t + tm.scrape_latency
        members = tuple(Member(n, "Common", f"10.0.{i // 250}.{i % 250 + 1}", 8000, ratio=v.ratio,
                               connection_limit=v.connection_limit)
                        for i, (n, v) in enumerate(zip(self.names, self.views, strict=True)))
        state = PoolState(PoolRef("bench"), self.con.lb_mode, members, queue_on_connection_limit=self.queue_on,
                          queue_depth_limit=self.pool_view.queue_depth_limit,
                          queue_time_limit_ms=self.pool_view.queue_time_limit_ms)
        scrapes = {n: ScrapeResult(n, t, sample=s) for n, s in samples.items()}
        plan, self.memory = planner.plan_pool(state, scrapes, self.cfg, self.memory, ready, 0.0, scorer=self.con.scorer,
                                              prefill_weight=self.con.prefill_weight)
        changes = [(p.member.name, p.ratio, p.connection_limit) for p in plan.writes]
        if changes:
            self.res.writes += len(changes)
            self.res.limit_writes += sum(1 for p in plan.writes if p.connection_limit != p.member.connection_limit)
            self.push(ready + tm.write_latency, APPLY, ("ltm", changes))
        if plan.pool_changes:  # the opt-in goodput mode's queueTimeLimit: one pool PATCH, a write like the others
            self.res.writes += 1
            self.push(ready + tm.write_latency, APPLY, ("pool", plan.pool_changes["queueTimeLimit"]))
        if t + self.tick_s <= self.sc.duration_s:
            self.push(t + self.tick_s, TICK)

    def _apply(self, data: tuple, t: float) -> None:
        kind, payload = data
        if kind == "sideband":
            self.sideband_scores = payload
            return
        if kind == "pool":
            self.pool_view.queue_time_limit_ms = payload
            return
        for name, ratio, limit in payload:
            v = self.views[self.idx[name]]
            v.ratio, v.connection_limit = ratio, limit
        self._serve(self.dp.drain(POOL), t)  # a raised limit lets queued connections through at once


def run(sc: Scenario, con: Contender, *, timing: Timing = Timing()) -> RunResult:
    return Sim(sc, con, timing=timing).run()

