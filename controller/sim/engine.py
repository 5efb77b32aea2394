"""A simulated LLM inference engine that schedules like vLLM V1 (continuous batching, paged KV cache).

One code path serves real time (demo, e2e tests: `RealtimeEngine`) and virtual time (the traffic
benchmark: drive `Engine.submit` / `Engine.advance` from a discrete-event loop). The model and its
parameters are described in docs/engine-model.md; in short:

* requests wait in a FIFO queue; at the start of every step the scheduler admits the queue head while
  fewer than `max_num_seqs` run and the KV cache has free blocks for its whole prompt;
* a step runs one decode token for every decoding sequence plus up to `max_batched_tokens` of
  prefill (chunked prefill); it lasts `(base + per_seq * n + per_prefill_token * prefill) / speed`;
* KV use is the sum over running sequences of ceil((prompt + generated) / block_size) blocks; when a
  decode step needs more blocks than are free, the most recently admitted sequence is preempted
  (recompute: its blocks are freed and it goes back to the front of the queue).

Speed: decode-only stretches are run as "macro-steps". Every decoding sequence grows by one token a
step, so which sequences need a new block at a given step depends only on (length mod block_size);
a 16-entry histogram of those phases gives the blocks needed for k steps in O(block_size), and a
heap keyed on the global decode-step count gives the next finish in O(log n). A stretch of k
identical decode steps therefore costs O(block_size + finished * log n), not O(k * running).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

# --- vLLM's histogram bucket boundaries (vllm/v1/metrics/loggers.py, 0.10/0.11) -------------------

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def build_1_2_5_buckets(max_value: int) -> tuple[int, ...]:
    """1, 2, 5, 10, 20, 50, ... up to max_value, as vLLM builds its token-count buckets."""
    out: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(value)
        exponent += 1


#: Histogram keys kept by the engine; pages.py maps them to each engine's metric names.
HISTOGRAMS = ("ttft", "itl", "request_tpot", "e2e", "queue", "inference", "prefill", "decode",
              "prompt_tokens", "generation_tokens", "iteration_tokens")


# --- the engine's description ---------------------------------------------------------------------


@dataclass(frozen=True)
class EngineSpec:
    """What one simulated engine is. Defaults: Llama-3.1-8B-Instruct bf16 on one A100 (speeds of the
    A100-80GB SXM, the reference engine; the KV cache of the 40 GB card), vLLM defaults.

    Times are milliseconds at speed 1.0. `prefill_speed` divides the prefill part of a step (compute-
    bound: scales with tensor FLOPS), `decode_speed` the rest (memory-bound: scales with HBM
    bandwidth); `speed` divides both (a whole-engine multiplier, e.g. a mid-run slowdown).
    `step_noise` is the coefficient of variation of a lognormal factor (mean 1) drawn per step from a
    generator seeded with `noise_seed`. See docs/engine-model.md for where the numbers come from.
    """

    name: str = "engine"
    model_name: str = "meta-llama/Llama-3.1-8B-Instruct"
    max_num_seqs: int = 256
    kv_capacity_tokens: int = 172_544  # 10,784 blocks of 16: the real vllm_0_11_dp2 fixture's cache_config_info
    block_size: int = 16
    max_model_len: int = 16_384  # the traces' longest request (prompt + output) is under 16k
    speed: float = 1.0
    base_ms: float = 12.0  # a decode step at batch 1 (weights read once per step)
    per_seq_ms: float = 0.2  # added per scheduled sequence (attention over its KV, sampling)
    per_prefill_token_ms: float = 0.08  # prefill cost: 12.5k prompt tokens/s at speed 1
    max_batched_tokens: int = 8192  # chunked-prefill token budget per step
    prefill_speed: float = 1.0  # relative to the reference engine (A100-80GB SXM), prefill part of a step
    decode_speed: float = 1.0  # relative to the reference engine, the per-step and per-sequence part
    step_noise: float = 0.0  # coefficient of variation of the per-step time factor (0 = deterministic)
    noise_seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.max_num_seqs < 1:
            problems.append("max_num_seqs must be >= 1")
        if self.block_size < 1:
            problems.append("block_size must be >= 1")
        if self.kv_capacity_tokens < self.block_size:
            problems.append("kv_capacity_tokens must hold at least one block")
        if self.max_model_len < 2:
            problems.append("max_model_len must be >= 2")
        if not (self.speed > 0 and self.prefill_speed > 0 and self.decode_speed > 0):
            problems.append("speed, prefill_speed and decode_speed must be > 0")
        if not 0 <= self.step_noise <= 1:
            problems.append("step_noise must be within 0..1")
        if not self.base_ms > 0 or self.per_seq_ms < 0 or self.per_prefill_token_ms < 0:
            problems.append("base_ms must be > 0 and the other step costs >= 0")
        if self.max_batched_tokens < self.max_num_seqs:
            # as vLLM requires: every running sequence must fit its decode token in one step
            problems.append("max_batched_tokens must be >= max_num_seqs")
        if problems:
            raise ValueError(f"bad EngineSpec {self.name!r}: " + "; ".join(problems))

    @property
    def num_gpu_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size

    @property
    def kv_cache_size_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    @property
    def kv_cache_max_concurrency(self) -> float:
        """How many max_model_len requests fit in the KV cache at once, as vLLM computes it."""
        return self.kv_cache_size_tokens / self.max_model_len

    def step_seconds(self, num_seqs: int, prefill_tokens: int = 0) -> float:
        """A step's duration without noise: the decode part at decode speed plus the prefill part at prefill speed."""
        decode = (self.base_ms + self.per_seq_ms * num_seqs) / self.decode_speed
        prefill = self.per_prefill_token_ms * prefill_tokens / self.prefill_speed
        return (decode + prefill) / (1000.0 * self.speed)

    def with_(self, **changes) -> EngineSpec:
        return replace(self, **changes)


#: Hardware presets for Llama-3.1-8B bf16, speeds relative to the A100-80GB SXM from the vendors'
#: datasheets (docs/engine-model.md): prefill follows dense BF16 tensor FLOPS, decode HBM bandwidth;
#: KV capacity follows memory, independent of speed.
PRESETS: dict[str, EngineSpec] = {
    "a100-40g": EngineSpec(name="a100-40g", decode_speed=1555 / 2039),  # A100-40GB SXM: 312 TFLOPS, 1,555 GB/s
    "a100-80g": EngineSpec(name="a100-80g", kv_capacity_tokens=400_000),  # 312 TFLOPS, 2,039 GB/s: the reference
    "h100-80g": EngineSpec(name="h100-80g", kv_capacity_tokens=400_000,
                           prefill_speed=989 / 312, decode_speed=3350 / 2039),  # H100 SXM: 989 TFLOPS, 3.35 TB/s
    "l40s-48g": EngineSpec(name="l40s-48g", kv_capacity_tokens=190_000,
                           prefill_speed=362 / 312, decode_speed=864 / 2039),  # L40S: 362 TFLOPS, 864 GB/s
}


def preset(kind: str, **changes) -> EngineSpec:
    """A preset spec, e.g. `preset("h100-80g", name="gpu3")`."""
    try:
        base = PRESETS[kind]
    except KeyError:
        raise ValueError(f"unknown engine preset {kind!r}; expected one of {', '.join(PRESETS)}") from None
    return base.with_(**changes) if changes else base


# --- requests ---------------------------------------------------------------------------------------

_rids = itertools.count(1)


def _between(start: float | None, end: float | None) -> float | None:
    """end - start, or None while either time is not known yet."""
    return None if start is None or end is None else end - start


def _stamped(t: float | None) -> float:
    """A request time the engine has already set by this point of its life (arrival at submit, ...)."""
    if t is None:
        raise RuntimeError("request time used before the engine set it")
    return t


@dataclass(eq=False, slots=True)  # slots: a benchmark keeps hundreds of thousands
class Request:
    """One request and its lifecycle. Times are in the engine's clock (virtual seconds or monotonic).

    `generated` is brought up to date when the request is preempted or finishes, not on every step.
    """

    prompt_tokens: int
    output_tokens: int
    rid: object = None
    finished_reason: str = "stop"  # vLLM's label for an EOS finish; "length" for max_tokens
    arrival: float | None = None
    first_scheduled: float | None = None
    first_token: float | None = None
    finish: float | None = None
    generated: int = 0
    num_preemptions: int = 0
    rejected: bool = False
    engine: str = ""
    last_token: float | None = None  # when it last produced a token before a preemption

    def __post_init__(self) -> None:
        if self.rid is None:
            self.rid = next(_rids)

    @property
    def done(self) -> bool:
        return self.finish is not None

    @property
    def ttft(self) -> float | None:
        return _between(self.arrival, self.first_token)

    @property
    def queue_time(self) -> float | None:
        return _between(self.arrival, self.first_scheduled)

    @property
    def e2e(self) -> float | None:
        return _between(self.arrival, self.finish)

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first; None until finished or with one output token."""
        decode = _between(self.first_token, self.finish)
        if decode is None or self.output_tokens < 2:
            return None
        return decode / (self.output_tokens - 1)


# --- statistics -------------------------------------------------------------------------------------


class Histogram:
    """A Prometheus-style histogram: fixed upper bounds, cumulative over the engine's life."""

    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        """Record `value` n times (macro-steps record one step time for many tokens at once)."""
        self.counts[bisect_left(self.buckets, value)] += n
        self.sum += value * n
        self.count += n

    def data(self) -> HistogramData:
        return HistogramData(self.buckets, tuple(self.counts), self.sum, self.count)


@dataclass(frozen=True)
class HistogramData:
    """An immutable copy of a histogram. `counts` are per bucket (not cumulative), +Inf last."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int

    def cumulative(self) -> list[int]:
        return list(itertools.accumulate(self.counts))

    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan


@dataclass(frozen=True)
class EngineSnapshot:
    """Everything a /metrics page shows, at engine time `t`. Counters and histograms are cumulative."""

    name: str
    model_name: str
    t: float
    waiting: int
    running: int
    prefilling: int  # running sequences still in (chunked) prefill
    kv_usage: float  # 0..1, used blocks / all blocks
    kv_used_blocks: int
    num_gpu_blocks: int
    block_size: int
    max_num_seqs: int
    max_model_len: int
    max_batched_tokens: int
    kv_cache_max_concurrency: float
    num_preemptions: int
    prompt_tokens_total: int
    generation_tokens_total: int
    request_success: Mapping[str, int]  # finished_reason -> count
    num_submitted: int
    num_rejected: int
    num_steps: int
    busy_seconds: float  # sum of step durations
    last_step_seconds: float
    gen_throughput: float  # generation tokens/s over roughly the last second of engine time
    histograms: Mapping[str, HistogramData] = field(default_factory=dict)

    @property
    def kv_cache_size_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    @property
    def num_finished(self) -> int:
        return sum(self.request_success.values())


# --- the engine -------------------------------------------------------------------------------------


class _Seq:
    """A running sequence. While decoding, its length is derived from the engine's decode-step count."""

    __slots__ = ("req", "order", "alive", "decoding", "prefill_left", "blocks", "chunk", "ctx0", "g0", "G0", "key")

    def __init__(self, req: Request, order: int):
        self.req = req
        self.order = order
        self.alive = True
        self.decoding = False
        self.prefill_left = 0
        self.blocks = 0  # blocks reserved while prefilling
        self.chunk = 0  # prefill tokens scheduled in the current step
        self.ctx0 = 0  # KV tokens (prompt + generated) when it joined the decode set
        self.g0 = 0  # tokens generated when it joined the decode set
        self.G0 = 0  # the engine's decode-step count when it joined
        self.key = 0  # (G0 - ctx0) mod block_size: it needs a new block at steps where G % B == key


class Engine:
    """One simulated engine. Drive it with `submit(req, now)` and `advance(until)`; read `snapshot()`.

    `advance(until)` runs every whole step that starts at or before `until`, so the engine clock `t`
    may end up to one step past `until` (a request submitted meanwhile waits for the next step, as in
    a real engine). Finished requests carry exact finish times; they are appended to `finished` and
    passed to `on_finish`, possibly up to one step before the driver's clock reaches that time.
    Not thread-safe: `RealtimeEngine` adds the lock.
    """

    def __init__(self, spec: EngineSpec | None = None, *, on_finish: Callable[[Request], None] | None = None,
                 keep_finished: bool = True, t0: float = 0.0):
        self.spec = spec or EngineSpec()
        self.on_finish = on_finish
        self.keep_finished = keep_finished
        self.finished: list[Request] = []
        self.t = float(t0)
        B = self.spec.block_size
        self._B = B
        self._total = self.spec.num_gpu_blocks
        self._used = 0
        self._waiting: deque[Request] = deque()
        self._running: dict[int, _Seq] = {}  # admission order; popitem() gives the newest (preemption victim)
        self._prefilling: dict[int, _Seq] = {}
        self._order = itertools.count()
        # decode set: phase histogram, size, finish heap of (finish step count, order, seq)
        self._G = 0
        self._cnt = [0] * B
        self._n_decode = 0
        self._heap: list[tuple[int, int, _Seq]] = []
        self._noise = random.Random(self.spec.noise_seed) if self.spec.step_noise > 0 else None
        self._init_stats()

    # -- statistics --

    def _init_stats(self) -> None:
        mml = self.spec.max_model_len
        self._hist = {
            "ttft": Histogram(TTFT_BUCKETS),
            "itl": Histogram(TPOT_BUCKETS),
            "request_tpot": Histogram(TPOT_BUCKETS),
            "e2e": Histogram(REQUEST_LATENCY_BUCKETS),
            "queue": Histogram(REQUEST_LATENCY_BUCKETS),
            "inference": Histogram(REQUEST_LATENCY_BUCKETS),
            "prefill": Histogram(REQUEST_LATENCY_BUCKETS),
            "decode": Histogram(REQUEST_LATENCY_BUCKETS),
            "prompt_tokens": Histogram(build_1_2_5_buckets(mml)),
            "generation_tokens": Histogram(build_1_2_5_buckets(mml)),
            "iteration_tokens": Histogram(ITERATION_TOKEN_BUCKETS),
        }
        self._success: dict[str, int] = {}
        self.num_preemptions = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.num_submitted = 0
        self.num_rejected = 0
        self.num_steps = 0
        self.busy_seconds = 0.0
        self.last_step_seconds = 0.0
        # two checkpoints (time, generation tokens) about a second apart, for gen_throughput
        self._ckpt_prev = (self.t, 0)
        self._ckpt = (self.t, 0)

    # -- public API --

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def busy(self) -> bool:
        return bool(self._running or self._waiting)

    @property
    def kv_usage(self) -> float:
        return self._used / self._total

    def fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request can ever run here (vLLM rejects longer ones with HTTP 400)."""
        total = prompt_tokens + output_tokens
        return prompt_tokens >= 1 and output_tokens >= 1 and total <= self.spec.max_model_len \
            and -(-total // self._B) <= self._total

    def submit(self, req: Request, now: float) -> bool:
        """Queue `req`, arriving at `now`. First runs the steps that start before `now` (a step starting
        exactly at `now` can take it). False (and `req.rejected`) when the request cannot fit in
        max_model_len or in the whole KV cache."""
        self._advance(now, strict=True)
        req.arrival = now
        req.engine = self.spec.name
        self.num_submitted += 1
        if not self.fits(req.prompt_tokens, req.output_tokens):
            req.rejected = True
            self.num_rejected += 1
            return False
        if not self.busy:
            self.t = max(self.t, now)  # an idle engine starts its next step when work arrives
        self._waiting.append(req)
        return True

    def next_event_time(self) -> float:
        """When the next step starts, or +inf when idle (nothing happens until a submit)."""
        return self.t if self.busy else math.inf

    def advance(self, until: float) -> None:
        """Run every step that starts at or before `until`."""
        self._advance(until, strict=False)

    def _advance(self, until: float, strict: bool) -> None:
        while (self._running or self._waiting) and (self.t < until if strict else self.t <= until):
            if self._prefilling or self._growth_now() > self._free() or self._can_admit_head():
                self._general_step()
            else:
                self._decode_run(until, strict)

    def run_until_idle(self, limit: float = math.inf) -> None:
        """Advance until nothing is queued or running (or engine time passes `limit`)."""
        self.advance(limit)

    def drain_finished(self) -> list[Request]:
        out, self.finished = self.finished, []
        return out

    def snapshot(self) -> EngineSnapshot:
        spec = self.spec
        return EngineSnapshot(
            name=spec.name, model_name=spec.model_name, t=self.t,
            waiting=len(self._waiting), running=len(self._running), prefilling=len(self._prefilling),
            kv_usage=self._used / self._total, kv_used_blocks=self._used, num_gpu_blocks=self._total,
            block_size=self._B, max_num_seqs=spec.max_num_seqs, max_model_len=spec.max_model_len,
            max_batched_tokens=spec.max_batched_tokens, kv_cache_max_concurrency=spec.kv_cache_max_concurrency,
            num_preemptions=self.num_preemptions, prompt_tokens_total=self.prompt_tokens_total,
            generation_tokens_total=self.generation_tokens_total, request_success=dict(self._success),
            num_submitted=self.num_submitted, num_rejected=self.num_rejected, num_steps=self.num_steps,
            busy_seconds=self.busy_seconds, last_step_seconds=self.last_step_seconds,
            gen_throughput=self._gen_throughput(),
            histograms={k: h.data() for k, h in self._hist.items()},
        )

    def check_invariants(self) -> None:
        """Recompute KV use from scratch and check the scheduler's limits (tests; O(running))."""
        used = 0
        for seq in self._running.values():
            used += self._seq_blocks(seq)
        assert used == self._used, f"KV accounting drifted: {used} != {self._used}"
        assert 0 <= self._used <= self._total, "KV use out of range"
        assert len(self._running) <= self.spec.max_num_seqs, "too many running sequences"
        assert self._n_decode == sum(self._cnt) == sum(1 for s in self._running.values() if s.decoding)
        assert set(self._prefilling) == {o for o, s in self._running.items() if not s.decoding}

    # -- scheduling internals --

    def _free(self) -> int:
        return self._total - self._used

    def _noise_factor(self) -> float:
        """A lognormal factor with mean 1 and coefficient of variation spec.step_noise (1.0 without noise)."""
        if self._noise is None:
            return 1.0
        sigma = math.sqrt(math.log1p(self.spec.step_noise**2))
        return math.exp(self._noise.gauss(-sigma * sigma / 2.0, sigma))

    def _growth_now(self) -> int:
        """Blocks the decode set needs for the next step."""
        return self._cnt[self._G % self._B] if self._n_decode else 0

    def _can_admit_head(self) -> bool:
        if not self._waiting or len(self._running) >= self.spec.max_num_seqs:
            return False
        req = self._waiting[0]
        need = -(-(req.prompt_tokens + req.generated + 1) // self._B)
        return need <= self._free() - self._growth_now()

    def _seq_blocks(self, seq: _Seq) -> int:
        if not seq.decoding:
            return seq.blocks
        return -(-(seq.ctx0 + self._G - seq.G0) // self._B)

    def _general_step(self) -> None:
        """One step with prefill work, admissions or a preemption: O(prefilling + admitted + finished)."""
        spec, B, t0 = self.spec, self._B, self.t
        preempted = False
        while self._growth_now() > self._free():
            self._preempt_newest(t0)
            preempted = True
        n_decode = self._n_decode
        self._used += self._growth_now()
        budget = spec.max_batched_tokens - n_decode
        prefill_tokens = 0
        n_prefill = 0
        for seq in self._prefilling.values():
            seq.chunk = min(seq.prefill_left, budget)
            budget -= seq.chunk
            prefill_tokens += seq.chunk
            n_prefill += seq.chunk > 0
        if not preempted:  # vLLM V1 admits nothing in a step that had to preempt
            while self._waiting and budget > 0 and len(self._running) < spec.max_num_seqs:
                req = self._waiting[0]
                ctx = req.prompt_tokens + req.generated  # recompute: prefill the prompt and what it had generated
                need = -(-(ctx + 1) // B)  # room for the token the prefill produces
                if need > self._free():
                    break  # FCFS: the head blocks the queue, as in vLLM
                self._waiting.popleft()
                seq = _Seq(req, next(self._order))
                seq.prefill_left = ctx
                seq.blocks = need
                seq.chunk = min(ctx, budget)
                budget -= seq.chunk
                prefill_tokens += seq.chunk
                n_prefill += 1
                self._used += need
                self._running[seq.order] = seq
                self._prefilling[seq.order] = seq
                if req.first_scheduled is None:
                    req.first_scheduled = t0
        dur = spec.step_seconds(n_decode + n_prefill, prefill_tokens) * self._noise_factor()
        t1 = t0 + dur
        self._account_step(t1, dur, n_decode, 1, prefill_tokens)
        if n_decode:
            self._G += 1
            self.generation_tokens_total += n_decode
            self._hist["itl"].observe(dur, n_decode)
            self._pop_finished_decodes(t1)
        for seq in [s for s in self._prefilling.values() if s.chunk]:
            seq.prefill_left -= seq.chunk
            seq.chunk = 0
            if seq.prefill_left == 0:
                self._prefill_done(seq, t1)

    def _decode_run(self, until: float, strict: bool) -> None:
        """k identical decode-only steps at once, stopping at the next finish, KV limit or `until`."""
        n = self._n_decode
        d = self.spec.step_seconds(n, 0) * self._noise_factor()  # one draw per run of identical steps
        k = self._steps_starting_by(until, d, strict)
        k = min(k, self._next_finish_G() - self._G)
        k = self._kv_limit(k, n)
        self._used += self._growth(k, n)
        self._G += k
        t1 = self.t + k * d
        self._account_step(t1, d, n, k, 0)
        self.generation_tokens_total += n * k
        self._hist["itl"].observe(d, n * k)
        self._pop_finished_decodes(t1)

    def _steps_starting_by(self, until: float, d: float, strict: bool) -> int:
        """How many steps of length d start at or before `until` (before it, if strict); >= 1 here."""
        if until == math.inf:
            return 1 << 62
        if strict:
            return max(1, math.ceil((until - self.t) / d))
        return int((until - self.t) // d) + 1

    def _next_finish_G(self) -> int:
        heap = self._heap
        while not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0]

    def _growth(self, k: int, n: int) -> int:
        """Blocks the decode set needs over the next k steps: n per full cycle of B steps, plus the phases hit."""
        B, cnt = self._B, self._cnt
        q, r = divmod(k, B)
        total = q * n
        s = self._G % B
        for j in range(r):
            total += cnt[(s + j) % B]
        return total

    def _kv_limit(self, k: int, n: int) -> int:
        """The largest k' <= k whose KV growth fits in the free blocks (>= 1: the caller checked one step fits)."""
        free = self._free()
        B = self._B
        if n * (-(-k // B)) <= free:  # cheap upper bound on the growth
            return k
        q, rem = divmod(free, n)
        cnt, s, m, acc = self._cnt, self._G % B, 0, 0
        while m < B:
            c = cnt[(s + m) % B]
            if acc + c > rem:
                break
            acc += c
            m += 1
        return min(k, q * B + m)

    def _account_step(self, t1: float, dur: float, n_decode: int, k: int, prefill_tokens: int) -> None:
        self.num_steps += k
        self.busy_seconds += dur * k
        self.last_step_seconds = dur
        self._hist["iteration_tokens"].observe(n_decode + prefill_tokens, k)
        self.t = t1
        if t1 - self._ckpt[0] >= 1.0:  # rotate the throughput checkpoints about once a second
            self._ckpt_prev = self._ckpt
            self._ckpt = (t1, self.generation_tokens_total)

    def _gen_throughput(self) -> float:
        t_prev, g_prev = self._ckpt_prev
        dt = self.t - t_prev
        return (self.generation_tokens_total - g_prev) / dt if dt > 0 else 0.0

    def _join_decode(self, seq: _Seq) -> None:
        req = seq.req
        seq.decoding = True
        seq.g0 = req.generated
        seq.ctx0 = req.prompt_tokens + req.generated
        seq.G0 = self._G
        seq.key = (seq.G0 - seq.ctx0) % self._B
        self._cnt[seq.key] += 1
        self._n_decode += 1
        heapq.heappush(self._heap, (seq.G0 + req.output_tokens - req.generated, seq.order, seq))

    def _leave_decode(self, seq: _Seq) -> int:
        """Take seq out of the decode set; returns the blocks it held and brings req.generated up to date."""
        seq.alive = False  # its heap entry is dropped lazily
        self._cnt[seq.key] -= 1
        self._n_decode -= 1
        ctx = seq.ctx0 + self._G - seq.G0
        seq.req.generated = seq.g0 + self._G - seq.G0
        return -(-ctx // self._B)

    def _prefill_done(self, seq: _Seq, t1: float) -> None:
        """The step that finished a prefill also sampled a token: the first one (TTFT) or, after a preemption, the next."""
        req = seq.req
        del self._prefilling[seq.order]
        req.generated += 1
        self.generation_tokens_total += 1
        if req.first_token is None:
            req.first_token = t1
            self.prompt_tokens_total += req.prompt_tokens
            self._hist["ttft"].observe(t1 - _stamped(req.arrival))
        else:
            self._hist["itl"].observe(t1 - (req.last_token if req.last_token is not None else req.first_token))
        if req.generated >= req.output_tokens:
            self._finish(seq, t1, seq.blocks)
        else:
            self._join_decode(seq)

    def _pop_finished_decodes(self, t1: float) -> None:
        heap, G = self._heap, self._G
        while heap and (heap[0][0] <= G or not heap[0][2].alive):
            _, _, seq = heapq.heappop(heap)
            if seq.alive:
                self._finish(seq, t1, self._leave_decode(seq))

    def _preempt_newest(self, t: float) -> None:
        """Recompute preemption of the most recently admitted sequence: free its KV, requeue it first."""
        _, seq = self._running.popitem()
        req = seq.req
        if seq.decoding:
            blocks = self._leave_decode(seq)
            req.last_token = t  # its last token came out at the end of the previous step
        else:
            del self._prefilling[seq.order]
            seq.alive = False
            blocks = seq.blocks
        self._used -= blocks
        self._waiting.appendleft(req)
        self.num_preemptions += 1
        req.num_preemptions += 1

    def _finish(self, seq: _Seq, t1: float, blocks: int) -> None:
        req = seq.req
        seq.alive = False
        self._running.pop(seq.order, None)
        self._used -= blocks
        req.generated = req.output_tokens
        req.finish = t1
        h = self._hist
        arrival, scheduled, first = _stamped(req.arrival), _stamped(req.first_scheduled), _stamped(req.first_token)
        h["e2e"].observe(t1 - arrival)
        h["queue"].observe(scheduled - arrival)
        h["inference"].observe(t1 - scheduled)
        h["prefill"].observe(first - scheduled)
        h["decode"].observe(t1 - first)
        h["prompt_tokens"].observe(req.prompt_tokens)
        h["generation_tokens"].observe(req.output_tokens)
        if req.output_tokens > 1:
            h["request_tpot"].observe((t1 - first) / (req.output_tokens - 1))
        self._success[req.finished_reason] = self._success.get(req.finished_reason, 0) + 1
        if self.keep_finished:
            self.finished.append(req)
        if self.on_finish is not None:
            self.on_finish(req)


# --- real time --------------------------------------------------------------------------------------


class RealtimeEngine:
    """Runs an `Engine` against a clock: the same code path, advanced to `clock()` on every call.

    `tick()` advances to now; `start()` runs a daemon thread that ticks every `interval` seconds so
    finishes happen (and `on_finish` fires) without anyone asking. `submit` and `snapshot` tick
    first, so a page always shows the engine as of the step in progress. `on_finish` callbacks run
    outside the lock, on whichever thread ticked.
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic, *, interval: float = 0.01,
                 on_finish: Callable[[Request], None] | None = None):
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.on_finish = on_finish
        self._lock = threading.RLock()
        self._pending: list[Request] = []
        engine.on_finish = self._pending.append
        engine.keep_finished = False
        self._finished: deque[Request] = deque(maxlen=100_000)  # bounded: a demo may never drain it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with self._lock:
            if not engine.busy:
                engine.t = max(engine.t, clock())

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def spec(self) -> EngineSpec:
        return self.engine.spec

    def tick(self) -> float:
        now = self.clock()
        with self._lock:
            self.engine.advance(now)
            done = self._take_pending()
        self._dispatch(done)
        return now

    def submit(self, req: Request) -> bool:
        now = self.clock()
        with self._lock:
            ok = self.engine.submit(req, now)
            done = self._take_pending()
        self._dispatch(done)
        return ok

    def snapshot(self) -> EngineSnapshot:
        self.tick()
        with self._lock:
            return self.engine.snapshot()

    def drain_finished(self) -> list[Request]:
        with self._lock:
            out = list(self._finished)
            self._finished.clear()
        return out

    def start(self) -> RealtimeEngine:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"engine-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RealtimeEngine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def _take_pending(self) -> list[Request]:
        done, self._pending[:] = list(self._pending), []
        self._finished.extend(done)
        return done

    def _dispatch(self, done: list[Request]) -> None:
        if self.on_finish is not None:
            for req in done:
                self.on_finish(req)
