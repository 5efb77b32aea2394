"""Scenario files for the traffic benchmark (`python bench/traffic.py --scenario FILE.yaml`).

    name: mix4
    duration_s: 600                # simulated seconds of arrivals (the run then drains)
    tick_ms: 1000                  # the controller's scrape/plan interval
    arrivals: {kind: poisson, load: 0.85, seed: 1}      # or {kind: trace, trace: conv|code, load: 0.85, seed: 1}
    members:
      - {name: a100-1, prefill_speed: 1.0, decode_speed: 1.0, kv_tokens: 400000}
      - {name: h100-1, prefill_speed: 3.0, decode_speed: 1.7, kv_tokens: 400000, max_model_len: 8192}
    slowdowns: [{member: h100-1, at_s: 300, factor: 0.5}]   # optional; optional until_s
    step_noise: 0.05               # optional: coefficient of variation of engine step times (default 0.05)
    tokens: conv                   # optional for poisson: whose token mix (conv or code; default conv)
    pool: {queue_on_connection_limit: true, queue_depth_limit: 0, queue_time_limit_ms: 0}   # optional: LTM's queue
    slo_s: 2                       # optional: the TTFT target of `goodput_slo` (default 2 s)

Speeds are relative to the reference engine, Llama-3.1-8B bf16 on an A100-80GB SXM under vLLM
(docs/engine-model.md). `load` is a share of the pool's capacity: the sum over members of the
requests/s each sustains when saturated with the arrivals' token mix (`trace.capacity_estimate`).
A seed varies the arrivals: Poisson draws its inter-arrival times and token sizes from it; trace
replay starts at a seed-chosen offset of the trace.

`pool` sets the pool's connection queue as BIG-IP has it (`queueOnConnectionLimit`, `queueDepthLimit`,
`queueTimeLimit`; 0 = unlimited, as on BIG-IP): with queueing on, a request that finds every member at its
connection limit waits in the pool's FIFO queue; past `queue_time_limit_ms` it is reset (counted in
`resets`, a miss for goodput); with a full queue or queueing off it is rejected. Problems are collected and reported with the key
they concern (`ScenarioError`); nothing else reads the raw YAML.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from controller.sim import trace as tr
from controller.sim.engine import EngineSpec

TRACES = ("conv", "code", "sample")  # "sample": the conv excerpt shipped in controller/sim/data (tests)
KINDS = ("poisson", "trace")
DEFAULT_NOISE = 0.05


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names every bad key."""


@dataclass(frozen=True)
class MemberSpec:
    name: str
    prefill_speed: float
    decode_speed: float
    kv_tokens: int
    max_model_len: int = 16_384


@dataclass(frozen=True)
class Slowdown:
    member: str
    at_s: float
    factor: float
    until_s: float | None = None


@dataclass(frozen=True)
class Arrivals:
    kind: str
    load: float
    seed: int = 1
    trace: str = "conv"  # the trace replayed, or whose token sizes Poisson draws from


@dataclass(frozen=True)
class PoolQueue:
    """The pool's connection queue, as BIG-IP's pool settings (0 = unlimited)."""

    queue_on_connection_limit: bool = False
    queue_depth_limit: int = 0
    queue_time_limit_ms: int = 0


DEFAULT_SLO_S = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    tick_ms: float
    arrivals: Arrivals
    members: tuple[MemberSpec, ...]
    slowdowns: tuple[Slowdown, ...] = ()
    step_noise: float = DEFAULT_NOISE
    path: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    pool: PoolQueue = PoolQueue()
    slo_s: float = DEFAULT_SLO_S

    def with_arrivals(self, **changes: Any) -> Scenario:
        """The same scenario with other arrivals (load, seed): the matrix sweeps these."""
        fields = {**self.arrivals.__dict__, **changes}
        return replace(self, arrivals=Arrivals(**fields))

    def with_pool(self, **changes: Any) -> Scenario:
        """The same scenario with other pool queue settings (the matrix's queueing points)."""
        return replace(self, pool=replace(self.pool, **changes))

    def with_duration(self, duration_s: float) -> Scenario:
        """The same scenario over another duration; slowdown times scale with it (same share of the run)."""
        k = duration_s / self.duration_s
        slow = tuple(Slowdown(s.member, s.at_s * k, s.factor, None if s.until_s is None else s.until_s * k)
                     for s in self.slowdowns)
        return replace(self, duration_s=duration_s, slowdowns=slow)

    def engine_specs(self, seed: int | None = None) -> list[EngineSpec]:
        """One engine per member; step noise is seeded from the arrivals' seed and the member's index."""
        base = self.arrivals.seed if seed is None else seed
        return [EngineSpec(name=m.name, prefill_speed=m.prefill_speed, decode_speed=m.decode_speed,
                           kv_capacity_tokens=m.kv_tokens, max_model_len=m.max_model_len,
                           step_noise=self.step_noise, noise_seed=base * 1000 + i)
                for i, m in enumerate(self.members)]


# --- loading and validation ------------------------------------------------------------------------

_TOP = {"name", "duration_s", "tick_ms", "arrivals", "members", "slowdowns", "step_noise", "description", "pool",
        "slo_s"}
_POOL = {"queue_on_connection_limit", "queue_depth_limit", "queue_time_limit_ms"}
_MEMBER = {"name", "prefill_speed", "decode_speed", "kv_tokens", "max_model_len"}


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, msg: str) -> None:
        self.items.append(f"{key}: {msg}")

    def number(self, data: Mapping, key: str, where: str, *, lo: float = 0.0, hi: float = math.inf,
               integer: bool = False, required: bool = True, default: float | None = None,
               open_lo: bool = True) -> float | None:
        full = f"{where}.{key}" if where else key
        if key not in data:
            if required:
                self.add(full, "required")
            return default
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.add(full, f"must be a number, got {v!r}")
            return default
        if integer and int(v) != v:
            self.add(full, f"must be a whole number, got {v!r}")
            return default
        if (v <= lo if open_lo else v < lo) or v > hi:
            bound = f"> {lo:g}" if open_lo else f">= {lo:g}"
            self.add(full, f"must be {bound}" + (f" and <= {hi:g}" if hi < math.inf else "") + f", got {v!r}")
            return default
        return int(v) if integer else float(v)


def load(path: str | Path) -> Scenario:
    """Read and validate one scenario file. Raises ScenarioError naming every bad key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    return parse(data, str(path))


def parse(data: Any, path: str = "<scenario>") -> Scenario:
    pr = _Problems()
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping of keys (name, duration_s, tick_ms, arrivals, members)")
    for k in data:
        if k not in _TOP:
            pr.add(str(k), f"unknown key (expected {', '.join(sorted(_TOP))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        pr.add("name", "required, a non-empty string")
        name = "?"
    duration = pr.number(data, "duration_s", "", hi=7 * 86400, default=600.0)
    tick = pr.number(data, "tick_ms", "", lo=10, hi=600_000, open_lo=False, default=1000.0)
    noise = pr.number(data, "step_noise", "", lo=0, hi=1, open_lo=False, required=False, default=DEFAULT_NOISE)
    arrivals = _arrivals(data.get("arrivals"), pr)
    members = _members(data.get("members"), pr)
    slowdowns = _slowdowns(data.get("slowdowns", []), {m.name for m in members}, duration, pr)
    pool = _pool(data.get("pool"), pr)
    slo = pr.number(data, "slo_s", "", hi=3600, required=False, default=DEFAULT_SLO_S)
    if pr.items:
        raise ScenarioError(f"{path}: " + "; ".join(pr.items))
    assert duration is not None and tick is not None and noise is not None and arrivals is not None
    assert slo is not None
    extra = {"description": str(data["description"])} if "description" in data else {}
    return Scenario(name.strip(), duration, tick, arrivals, tuple(members), tuple(slowdowns), noise, path, extra,
                    pool, slo)


def _pool(p: Any, pr: _Problems) -> PoolQueue:
    if p is None:
        return PoolQueue()
    if not isinstance(p, dict):
        pr.add("pool", f"must be a mapping of {', '.join(sorted(_POOL))}, got {p!r}")
        return PoolQueue()
    for k in p:
        if k not in _POOL:
            pr.add(f"pool.{k}", f"unknown key (expected {', '.join(sorted(_POOL))})")
    queue = p.get("queue_on_connection_limit", False)
    if not isinstance(queue, bool):
        pr.add("pool.queue_on_connection_limit", f"must be true or false, got {queue!r}")
        queue = False
    depth = pr.number(p, "queue_depth_limit", "pool", lo=0, integer=True, required=False, default=0, open_lo=False)
    limit = pr.number(p, "queue_time_limit_ms", "pool", lo=0, integer=True, required=False, default=0, open_lo=False)
    return PoolQueue(queue, int(depth or 0), int(limit or 0))


def _arrivals(a: Any, pr: _Problems) -> Arrivals | None:
    if a is None:
        pr.add("arrivals", "required: {kind: poisson|trace, load: 0..1, seed: N}")
        return None
    if not isinstance(a, dict):
        pr.add("arrivals", f"must be a mapping, got {a!r}")
        return None
    for k in a:
        if k not in {"kind", "load", "seed", "trace"}:
            pr.add(f"arrivals.{k}", "unknown key (expected kind, load, seed, trace)")
    kind = a.get("kind")
    if kind not in KINDS:
        pr.add("arrivals.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    load_ = pr.number(a, "load", "arrivals", hi=2.0, default=0.5)
    seed = pr.number(a, "seed", "arrivals", lo=0, integer=True, required=False, default=1, open_lo=False)
    trace = a.get("trace", "conv")
    if kind == "trace" and "trace" not in a:
        pr.add("arrivals.trace", f"required for kind trace: one of {', '.join(TRACES)}")
    elif trace not in TRACES:
        pr.add("arrivals.trace", f"must be one of {', '.join(TRACES)}, got {trace!r}")
    return Arrivals(str(kind), float(load_ or 0.5), int(seed or 0), str(trace))


def _members(ms: Any, pr: _Problems) -> list[MemberSpec]:
    if not isinstance(ms, list) or not ms:
        pr.add("members", "required: a non-empty list of {name, prefill_speed, decode_speed, kv_tokens}")
        return []
    out, seen = [], set()
    for i, m in enumerate(ms):
        where = f"members[{i}]"
        if not isinstance(m, dict):
            pr.add(where, f"must be a mapping, got {m!r}")
            continue
        for k in m:
            if k not in _MEMBER:
                pr.add(f"{where}.{k}", f"unknown key (expected {', '.join(sorted(_MEMBER))})")
        name = m.get("name")
        if not isinstance(name, str) or not name:
            pr.add(f"{where}.name", "required, a non-empty string")
            name = f"m{i}"
        elif name in seen:
            pr.add(f"{where}.name", f"duplicate member name {name!r}")
        seen.add(name)
        ps = pr.number(m, "prefill_speed", where, hi=100, default=1.0)
        ds = pr.number(m, "decode_speed", where, hi=100, default=1.0)
        kv = pr.number(m, "kv_tokens", where, lo=1024, integer=True, open_lo=False, default=100_000)
        mml = pr.number(m, "max_model_len", where, lo=2, integer=True, required=False, default=16_384, open_lo=False)
        if kv is not None and mml is not None and kv < 16:
            pr.add(f"{where}.kv_tokens", "must hold at least one block")
        out.append(MemberSpec(name, float(ps or 1.0), float(ds or 1.0), int(kv or 100_000), int(mml or 16_384)))
    return out


def _slowdowns(sl: Any, names: set[str], duration: float | None, pr: _Problems) -> list[Slowdown]:
    if sl is None:
        return []
    if not isinstance(sl, list):
        pr.add("slowdowns", f"must be a list of {{member, at_s, factor}}, got {sl!r}")
        return []
    out = []
    for i, s in enumerate(sl):
        where = f"slowdowns[{i}]"
        if not isinstance(s, dict):
            pr.add(where, f"must be a mapping, got {s!r}")
            continue
        for k in s:
            if k not in {"member", "at_s", "factor", "until_s"}:
                pr.add(f"{where}.{k}", "unknown key (expected member, at_s, factor, until_s)")
        member = s.get("member")
        if member not in names:
            pr.add(f"{where}.member", f"{member!r} is not a member name")
        at = pr.number(s, "at_s", where, lo=0, open_lo=False, default=0.0)
        factor = pr.number(s, "factor", where, hi=100, default=1.0)
        until = pr.number(s, "until_s", where, lo=0, required=False, default=None)
        if until is not None and at is not None and until <= at:
            pr.add(f"{where}.until_s", f"must be after at_s ({at:g})")
        if duration is not None and at is not None and at >= duration:
            pr.add(f"{where}.at_s", f"must be within duration_s ({duration:g})")
        out.append(Slowdown(str(member), float(at or 0.0), float(factor or 1.0), until))
    return out


# --- arrivals ----------------------------------------------------------------------------------------

_TRACE_CACHE: dict[str, list[tr.TraceRequest]] = {}
_CAP_CACHE: dict[tuple, float] = {}


def base_trace(name: str) -> list[tr.TraceRequest]:
    if name not in _TRACE_CACHE:
        _TRACE_CACHE[name] = tr.load_trace(name)
    return _TRACE_CACHE[name]


def member_capacities(sc: Scenario) -> list[float]:
    """Requests/s each member sustains saturated with the arrivals' token mix (`trace.capacity_estimate`,
    noise-free, cached per distinct member spec)."""
    out = []
    for spec in sc.engine_specs():
        key = (sc.arrivals.trace, spec.prefill_speed, spec.decode_speed, spec.kv_capacity_tokens, spec.max_model_len)
        if key not in _CAP_CACHE:
            _CAP_CACHE[key] = tr.capacity_estimate(spec.with_(name="x", step_noise=0.0), base_trace(sc.arrivals.trace))
        out.append(_CAP_CACHE[key])
    return out


def pool_capacity(sc: Scenario) -> float:
    """Requests/s the pool sustains saturated with the arrivals' token mix: the sum over its members."""
    return sum(member_capacities(sc))


def arrivals(sc: Scenario) -> list[tr.TraceRequest]:
    """The requests of one run: `load` x pool capacity for `duration_s` seconds, varied by the seed.

    poisson: exponential inter-arrival times; each request's (prompt, output) sizes drawn from the
    trace. trace: the trace compressed in time to the target mean rate, repeated to fill the run, and
    started at an offset chosen by the seed (burstiness and token mix kept)."""
    a = sc.arrivals
    base = base_trace(a.trace)
    rate = a.load * pool_capacity(sc)
    rng = random.Random(a.seed)
    if a.kind == "poisson":
        out, t = [], 0.0
        while True:
            t += rng.expovariate(rate)
            if t >= sc.duration_s:
                return out
            r = base[rng.randrange(len(base))]
            out.append(tr.TraceRequest(t, r.prompt_tokens, r.output_tokens))
    factor = rate / tr.mean_rate(base)
    span = tr.duration(base) / factor  # seconds one copy of the trace lasts at the target rate
    offset = rng.uniform(0.0, span)
    copies = max(1, math.ceil((sc.duration_s + offset) / span) + 1)
    scaled = tr.scale_rate(tr.repeat(base, copies), factor)
    return tr.window(scaled, offset, sc.duration_s)


def overload_share(reqs: list[tr.TraceRequest], duration: float, capacity: float, window: float = 10.0) -> float:
    """Share of requests arriving in a `window`-second window whose rate is above pool capacity: how
    much of a run measures the drain of an overload rather than latency."""
    n = max(1, int(duration // window))
    counts = [0] * n
    for r in reqs:
        i = int(r.t // window)
        if i < n:
            counts[i] += 1
    over = sum(c for c in counts if c / window > capacity)
    return over / max(1, sum(counts))
