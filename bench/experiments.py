"""What the traffic benchmark runs: the contenders, the `static-best` search, seeds and loads.

Contenders (the JSON names):

* `lc`, `rr`: LTM's least-connections-member and round-robin, no controller;
* `sideband`, `sideband-10s`: the sideband scheduler (S1 weighted random per request) refreshing its
  scores every tick (its best case) and every 10 s (its shipped config);
* `default`: f5-llm-ratio with the default policy (`controller.config.schema.ModeConfig().name`) on
  ratio-least-connections-member, through the real planner;
* `balance-rate`: the previous default (leaks toward the measured service rate, does not compare TTFT);
* `balance-kv`: the one before it (leaks toward KV capacity, not measured speed);
* `default-slo` (on request; the matrix runs it at trace points): the default with the pool set to queue
  at its connection limits and the controller's opt-in goodput mode (`weights.queue_time_limit: slo`), which
  writes queueTimeLimit = QUEUE_TIME_SHARE x the scenario's `slo_s`: LTM resets what waits longer;
* `static-best` (reference): the best fixed ratio vector for the scenario, found by search in
  hindsight (see `static_best`): what ratios alone, set once, could do on these arrivals;
* `exact` (reference): per request, the member whose engine gives this prompt the earliest first
  token, predicted from its exact state (`Engine.predict_ttft`: queued prompts, prefill backlog, KV);
* `central` (reference): one FIFO queue in front of the pool; the head leaves for the member with the
  earliest predicted first token among those whose engine has nothing waiting (what LTM's connection
  queue with perfectly adapted limits could approach).

References are not bounds: each is a heuristic with knowledge the controller does not have; the
controller can beat one (docs/benchmarks.md says where).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.config.schema import ModeConfig, WeightsConfig

from bench import scenario as S
from bench.simulator import RLC, Contender, RunResult, run

DEFAULT_POLICY = ModeConfig().name
#: the opt-in goodput mode's queueTimeLimit as a share of the SLO, the controller's default
#: (weights.queue_time_share): a request that leaves LTM's queue still needs time for its first token
#: (docs/policy.md: 0.5 against 1.0 on three8, conv trace 85%)
QUEUE_TIME_SHARE = WeightsConfig().queue_time_share
METRICS = ("p50", "p90", "p99", "mean", "slo_1s", "slo_2s", "writes_per_min", "goodput_2s", "goodput_1s",
           "goodput_slo", "over_10s", "resets", "unserved", "limit_writes_per_min")


def contenders(tick_s: float = 1.0) -> dict[str, Contender]:
    """A fresh registry per call: nothing global is changed by adding variants."""
    cs = [
        Contender("lc", "lb", "least-connections-member", label="LTM least-connections-member"),
        Contender("rr", "lb", "round-robin", label="LTM round-robin"),
        Contender("sideband", "sideband", refresh=tick_s, label=f"sideband scheduler, S1 refreshed every {tick_s:g} s"),
        Contender("sideband-10s", "sideband", refresh=10.0, label="sideband scheduler, S1 refreshed every 10 s (shipped config)"),
        Contender("default", "ctl", RLC, DEFAULT_POLICY, label=f"f5-llm-ratio `{DEFAULT_POLICY}` (the default), ratio-least-connections"),
        Contender("balance-rate", "ctl", RLC, "balance-rate", label="previous default: balance leaking toward measured speed, no TTFT term"),
        Contender("balance-kv", "ctl", RLC, "balance-kv", label="the default before: balance leaking toward KV capacity"),
        Contender("default-slo", "ctl", RLC, DEFAULT_POLICY, queue_time_share=QUEUE_TIME_SHARE,
                  label=f"the default on a pool with queueOnConnectionLimit and queueTimeLimit = {QUEUE_TIME_SHARE:g} x slo_s "
                        "(opt-in goodput mode: requests queued longer are reset)"),
        Contender("exact", "exact", label="reference: per request, earliest first token by exact engine state"),
        Contender("central", "central", label="reference: central FIFO queue, dispatched to engines with nothing waiting"),
    ]
    return {c.name: c for c in cs}


#: what a scenario runs unless told otherwise (`balance-kv` only on request: docs/policy.md has it)
ALL = ("lc", "rr", "sideband", "sideband-10s", "default", "balance-rate", "static-best", "exact", "central")
#: every contender a scenario can be asked for
KNOWN = (*ALL, "balance-kv", "default-slo")
REFERENCES = ("static-best", "exact", "central")

# --- static-best: the best fixed ratio vector, by search in hindsight -----------------------------------

#: ratio multipliers tried per member class, relative to the first class
GRID = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8)


def classes(sc: S.Scenario) -> list[list[int]]:
    """Members grouped by what they are (speeds, KV, max_model_len); a member that slows down is its own class."""
    slowed = {s.member for s in sc.slowdowns}
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(sc.members):
        key = (m.name,) if m.name in slowed else (m.prefill_speed, m.decode_speed, m.kv_tokens, m.max_model_len)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def ratio_vector(sc: S.Scenario, groups: list[list[int]], mult: Sequence[float]) -> tuple[int, ...]:
    top = max(mult)
    out = [0] * len(sc.members)
    for g, m in zip(groups, mult, strict=True):
        for i in g:
            out[i] = max(1, round(100 * m / top))
    return tuple(out)


def static_best(sc: S.Scenario, score: Callable[[dict], float] | None = None) -> tuple[tuple[int, ...], int]:
    """Coordinate search over one ratio per member class (GRID multipliers; a second pass with two
    classes only), each candidate run on the scenario's own arrivals; the vector with the lowest p99 TTFT
    wins (ties: lower mean). Returns (ratios, runs made). One class: equal ratios, no search."""
    score = score or (lambda s: s["p99"] + 1e-3 * s["mean"])
    groups = classes(sc)
    mult = [1.0] * len(groups)
    cache: dict[tuple[int, ...], float] = {}

    def cost(m: Sequence[float]) -> float:
        vec = ratio_vector(sc, groups, m)
        if vec not in cache:
            cache[vec] = score(run(sc, Contender("static", "static", ratios=vec)).summary())
        return cache[vec]

    if len(groups) > 1:
        for _ in range(2 if len(groups) == 2 else 1):
            moved = False
            for g in range(1, len(groups)):
                best = min(GRID, key=lambda x, g=g: cost([*mult[:g], x, *mult[g + 1:]]))
                if best != mult[g]:
                    mult[g], moved = best, True
            if not moved:
                break
    return ratio_vector(sc, groups, mult), max(1, len(cache))


# --- one scenario, several seeds ---------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    scenario: S.Scenario
    seeds: tuple[int, ...]
    runs: dict[str, list[dict]]  # contender -> one summary per seed
    static_ratios: tuple[int, ...] = ()
    wall: float = 0.0

    def median(self, contender: str) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in self.runs[contender]) for k in METRICS}

    def spread(self, contender: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in self.runs[contender]]
        return min(values), max(values)

    def as_json(self) -> dict:
        """The issue's JSON: the median over seeds of each figure, per contender."""
        return {"scenario": self.scenario.name,
                "contenders": {c: {k: _finite(v) for k, v in self.median(c).items()} for c in self.runs}}


def _finite(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(v, 6)


def run_scenario(sc: S.Scenario, seeds: Sequence[int] = (), chosen: Sequence[str] = ALL,
                 log: Callable[[str], None] | None = None, ratios: tuple[int, ...] = ()) -> ScenarioResult:
    """Every chosen contender on every seed (default: the file's seed). static-best is searched on the
    first seed's arrivals and that vector is then run on every seed; `static` runs `ratios`."""
    import time
    t0 = time.perf_counter()
    seeds = tuple(seeds) or (sc.arrivals.seed,)
    reg = contenders(sc.tick_ms / 1000.0)
    if ratios:
        reg["static"] = Contender("static", "static", ratios=ratios, label=f"fixed ratios {list(ratios)}")
    unknown = [c for c in chosen if c not in reg and c != "static-best"]
    if unknown:
        raise ValueError(f"unknown contender(s) {', '.join(unknown)}; expected some of {', '.join(KNOWN)}")
    runs: dict[str, list[dict]] = {c: [] for c in chosen}
    static: tuple[int, ...] = ()
    if "static-best" in chosen:
        static, n = static_best(sc.with_arrivals(seed=seeds[0]))
        if log:
            log(f"static-best: ratios {static} after {n} search runs on seed {seeds[0]}")
    for seed in seeds:
        s = sc.with_arrivals(seed=seed)
        for c in chosen:
            con = Contender("static-best", "static", ratios=static) if c == "static-best" else reg[c]
            res: RunResult = run(s, con)
            runs[c].append(res.summary())
            if log:
                m = res.summary()
                log(f"  seed {seed} {c:13s} p50 {m['p50']:.3f} p99 {m['p99']:.3f} wall {res.wall:.1f}s")
    return ScenarioResult(sc, seeds, runs, static, time.perf_counter() - t0)
