"""The engine model's data: its description (`EngineSpec`, presets), requests, histograms and snapshots.

`controller.sim.engine` runs the model; this module only describes it (docs/engine-model.md).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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

    def with_(self, **changes: Any) -> EngineSpec:
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


def preset(kind: str, **changes: Any) -> EngineSpec:
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
