"""What each inference engine calls its load figures, and how one /metrics page becomes a `Sample`.

Metric names follow REFERENCE.md ("Inference engines' /metrics"). A metric key is a metric name,
optionally with label matchers in the exposition syntax, e.g.
`nv_trt_llm_request_metrics{request_type="waiting"}`; custom keys from the config may use the same form.

Rules for pages with several series of one metric (vLLM data-parallel ranks, one series per
`engine` label; several models on one Triton):

* identical series (same metric, same labels) count once, and the last one on the page wins, as
  prometheus_client would keep it when building a registry;
* waiting and running are SUMMED over the distinct series: the member's queue is all of its ranks' queues;
* KV-cache use is the MAXIMUM over the series: a request routed to a saturated rank waits (or preempts
  others) whatever the other ranks hold, so the fullest rank is what limits new work on the member.
  An average would call a member with one full and one empty rank "half full" and keep feeding it;
* `ranks` is the number of distinct waiting series; `kv_max_concurrency` is the sum over ranks of the
  `kv_cache_max_concurrency` label of `vllm:cache_config_info`, or None unless every rank reports it.

Values: NaN, ±Inf or a negative number in a metric the score uses is "bad-value" (the engine is
confused; better no number than a wrong one). KV use a little above 1 (float noise, or an engine that
overcommits, e.g. SGLang's token_usage) is clamped to 1.0; above KV_CLAMP_LIMIT (1.5) it is most likely
a percentage (0-100) from a custom key and is "bad-value" rather than silently read as "full".
Values we do not use (llama.cpp's `nan` throughput, Triton's `request_type="max"`) are never checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from controller.config.schema import ENGINE_TYPES, EngineKeys
from controller.engines import exposition
from controller.errors import MetricsError
from controller.model import Sample, SpeedCounters

#: KV use above 1.0 and up to this is clamped to 1.0; above it is a bad value.
KV_CLAMP_LIMIT = 1.5

VLLM_KV = "vllm:kv_cache_usage_perc"  # vLLM >= 0.10
VLLM_KV_LEGACY = "vllm:gpu_cache_usage_perc"  # vLLM < 0.10 (hidden in 0.11, removed in 0.12)
VLLM_CACHE_INFO = "vllm:cache_config_info"


@dataclass(frozen=True)
class EngineSpec:
    """Default metric keys for one engine type. `kv` is a tuple of candidates, first match wins."""

    waiting: str
    running: str | None
    kv: tuple[str, ...] = ()
    info: str | None = None  # vllm:cache_config_info, for kv_max_concurrency
    path: str = "/metrics"  # where the engine serves its page when `metrics.path` is not set


SPECS: dict[str, EngineSpec] = {
    "vllm": EngineSpec("vllm:num_requests_waiting", "vllm:num_requests_running", (VLLM_KV, VLLM_KV_LEGACY), VLLM_CACHE_INFO),
    "sglang": EngineSpec("sglang:num_queue_reqs", "sglang:num_running_reqs", ("sglang:token_usage",)),
    # trtllm-serve serves Prometheus text under /prometheus/metrics (its /metrics is a JSON stats list).
    "trtllm": EngineSpec("trtllm_num_requests_waiting", "trtllm_num_requests_running", ("trtllm_kv_cache_utilization",),
                         path="/prometheus/metrics"),
    # Triton's TensorRT-LLM backend: "running" is request_type="scheduled", the requests in the current
    # in-flight batch (what llm-d's scorer reads). "active" counts requests the batch manager holds
    # and reads 0 in the real capture while a request is scheduled, so it would call a busy member idle.
    "triton": EngineSpec(
        'nv_trt_llm_request_metrics{request_type="waiting"}',
        'nv_trt_llm_request_metrics{request_type="scheduled"}',
        ('nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}',),
    ),
    "llamacpp": EngineSpec("llamacpp:requests_deferred", "llamacpp:requests_processing"),
    "tgi": EngineSpec("tgi_queue_size", "tgi_batch_current_size"),
}
assert set(SPECS) == set(ENGINE_TYPES), "every configurable engine type needs metric names"

#: Human names for `Sample.engine`, e.g. for the `check` command: "recognised as vLLM 0.10+".
FLAVOURS = {
    "vllm": "vLLM 0.10+",
    "vllm-legacy": "vLLM < 0.10 (gpu_cache_usage_perc)",
    "sglang": "SGLang",
    "trtllm": "TensorRT-LLM (trtllm-serve)",
    "triton": "TensorRT-LLM on Triton",
    "llamacpp": "llama.cpp server",
    "tgi": "Text Generation Inference",
}

# Name prefixes that betray an engine even when its queue metric is absent (detect()'s fallback).
_PREFIXES = re.compile(r"^[ \t]*(vllm:|sglang:|trtllm_|nv_trt_llm_|llamacpp:|tgi_)", re.MULTILINE)
_PREFIX_TYPES = {"vllm:": "vllm", "sglang:": "sglang", "trtllm_": "trtllm", "nv_trt_llm_": "triton", "llamacpp:": "llamacpp", "tgi_": "tgi"}

_KEY = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*\Z")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)')


def default_path(engine_type: str) -> str:
    """The /metrics path an engine type serves by default ("vllm_ascend" -> vLLM's); "/metrics" if unknown."""
    spec = SPECS.get(engine_type) or SPECS.get(base_engine_type(engine_type))
    return spec.path if spec is not None else "/metrics"


@dataclass(frozen=True)
class Key:
    """A parsed metric key: a name and the labels a series must carry."""

    text: str
    name: str
    matchers: tuple[tuple[str, str], ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers)


def parse_key(text: str) -> Key:
    """`name` or `name{label="value",...}` -> Key. Raises ValueError (a config error) otherwise."""
    m = _KEY.match(text)
    if m is None:
        raise ValueError(f"not a metric key: {text!r} (want name or name{{label=\"value\"}})")
    matchers: list[tuple[str, str]] = []
    inner = (m.group(2) or "").strip().rstrip(",")
    pos = 0
    while pos < len(inner):
        pair = _MATCHER.match(inner, pos)
        if pair is None:
            raise ValueError(f"bad label matcher in metric key {text!r}")
        matchers.append((pair.group(1), exposition.unescape(pair.group(2))))
        pos = pair.end()
    return Key(text.strip(), m.group(1), tuple(matchers))


@dataclass(frozen=True)
class _Plan:
    waiting: Key
    running: Key | None
    kv: tuple[Key, ...]
    info: str | None

    @property
    def names(self) -> list[str]:
        """The metric names read in the first pass: everything but the fallback KV candidates."""
        keys = [self.waiting, self.running, *self.kv[:1]]
        return [k.name for k in keys if k is not None] + ([self.info] if self.info else [])

    @property
    def lookups(self) -> tuple[str, ...]:
        """Every metric name extract() may read: the first pass's and the fallback KV candidates'."""
        return (*self.names, *(k.name for k in self.kv[1:]))


@lru_cache(maxsize=256)
def base_engine_type(name: str) -> str:
    """The built-in engine type a variant's name starts with ("vllm_ascend" -> "vllm"), or ""."""
    return max((t for t in ENGINE_TYPES if name.startswith(t)), key=len, default="")


@lru_cache(maxsize=256)  # EngineKeys is frozen, so (type, keys) is a good cache key
def _plan(engine_type: str, keys: EngineKeys | None) -> _Plan:
    """The keys to read: the engine's defaults, each replaced by a custom key when one is set.

    A variant from engines_metrics_keys (e.g. "vllm_ascend") falls back to its base engine's names.
    """
    spec = SPECS.get(engine_type) or SPECS.get(base_engine_type(engine_type))
    if spec is None:
        raise ValueError(f"unknown engine type {engine_type!r}; expected one of {', '.join(ENGINE_TYPES)}")
    waiting = keys.waiting_queue if keys and keys.waiting_queue else spec.waiting
    running = keys.running_req if keys and keys.running_req else spec.running
    kv = (keys.cache_usage,) if keys and keys.cache_usage else spec.kv
    return _Plan(parse_key(waiting), parse_key(running) if running else None, tuple(parse_key(k) for k in kv), spec.info)


def extract(text: str, engine_type: str, keys: EngineKeys | None = None) -> Sample:
    """Read one member's load from its /metrics page.

    `keys` (the upstream `engines_metrics_keys`) override the default names field by field; a field
    left None keeps the engine's default. Raises MetricsError with reason "not-prometheus",
    "missing-metric" (no waiting series; no KV series for an engine that has a KV metric) or
    "bad-value". Engines without a KV metric (llama.cpp, TGI) give kv_usage None.
    See the module docstring for how data-parallel ranks and odd values are combined.
    """
    plan = _plan(engine_type, keys)
    speed = _speed_reads(engine_type)
    # One pass finds every line read below: the load figures, the fallback KV names and the speed counters.
    found = exposition.scan(text, plan.lookups + (speed.lookups if speed else ()))
    page = found.select(plan.names)

    waiting_series = _series(page, plan.waiting)
    if not waiting_series:
        raise MetricsError("missing-metric", plan.waiting.text)
    waiting = _total(waiting_series, plan.waiting)
    running_series = _series(page, plan.running) if plan.running else []
    running = _total(running_series, plan.running) if running_series and plan.running else None

    kv_usage, kv_key = None, None
    if plan.kv:
        kv_key, kv_series = _first_present(found, page, plan.kv)
        if kv_key is None:
            raise MetricsError("missing-metric", " or ".join(k.text for k in plan.kv))
        kv_usage = _kv(kv_series, kv_key)

    return Sample(
        waiting=waiting,
        running=running,
        kv_usage=kv_usage,
        kv_max_concurrency=_max_concurrency(page.get(plan.info, [])) if plan.info else None,
        engine="vllm-legacy" if kv_key is not None and kv_key.text == VLLM_KV_LEGACY else engine_type,
        ranks=len(waiting_series),
        counters=_read_speed(found, speed) if speed else None,
    )


def _series(page: dict[str, exposition.Series], key: Key) -> list[float]:
    """The values of the distinct series matching `key`; identical label sets count once, last wins."""
    distinct: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in page.get(key.name, ()):
        if key.matches(labels):
            distinct[tuple(sorted(labels.items()))] = value
    return list(distinct.values())


def _first_present(found: exposition.Scan, page: dict[str, exposition.Series],
                   candidates: tuple[Key, ...]) -> tuple[Key | None, list[float]]:
    """The first candidate key with any series: vLLM 0.10 exports both KV names, and the new one is right.
    Later candidates are parsed only when needed, each on its own as a separate `select` would."""
    for key in candidates:
        if key.name not in page:
            page.update(found.select([key.name]))
        values = _series(page, key)
        if values:
            return key, values
    return None, []


def _check(value: float, key: Key) -> float:
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise MetricsError("bad-value", f"{key.text} = {value}")
    return value


def _total(values: list[float], key: Key) -> float:
    return sum(_check(v, key) for v in values)


def _kv(values: list[float], key: Key) -> float:
    worst = max(_check(v, key) for v in values)
    if worst > KV_CLAMP_LIMIT:
        raise MetricsError("bad-value", f"{key.text} = {worst:g}, expected a fraction 0..1")
    return min(worst, 1.0)


def _max_concurrency(series: exposition.Series) -> float | None:
    """Sum of `kv_cache_max_concurrency` over ranks; None unless every rank gives a usable number."""
    per_rank: dict[tuple[tuple[str, str], ...], str] = {}
    for labels, _value in series:
        per_rank[tuple(sorted(labels.items()))] = labels.get("kv_cache_max_concurrency", "")
    total = 0.0
    for raw in per_rank.values():
        try:
            value = float(raw)
        except ValueError:
            return None
        if not math.isfinite(value) or value <= 0:
            return None
        total += value
    return total if per_rank else None


def detect(text: str) -> str | None:
    """Guess the engine type (one of ENGINE_TYPES) that served `text`; None when nothing fits.

    The queue metric decides; failing that, a metric name prefix (`vllm:`, `sglang:`, ...) does, so a
    page that lacks the queue metric is still recognised and `extract` can say what is missing.
    Never raises. For the flavour (vLLM before/after 0.10) use `extract(...).engine` and FLAVOURS.
    """
    waiting = {engine: parse_key(spec.waiting) for engine, spec in SPECS.items()}
    try:
        page = exposition.select(text, {key.name for key in waiting.values()})
    except MetricsError:
        return None
    for engine, key in waiting.items():
        if _series(page, key):
            return engine
    found = _PREFIXES.search(text)
    return _PREFIX_TYPES[found.group(1)] if found else None


# --- speed signals (controller.engines.capacity learns each member's service rate from these) ---------------


@dataclass(frozen=True)
class SpeedNames:
    """Where one engine type exports its speed signals (REFERENCE.md, "Speed signals on the pages").
    Histograms are named by their base name (`_sum` and `_count` are read); None: not exported."""

    prompt_tokens: str | None = None
    generation_tokens: str | None = None
    requests: str | None = None
    ttft: str | None = None
    itl: tuple[str, ...] = ()  # candidates, first present wins
    gen_throughput: str | None = None
    prompt_seconds: str | None = None
    generation_seconds: str | None = None
    slot_prompt_rate: str | None = None
    slot_gen_rate: str | None = None


SPEED_NAMES: dict[str, SpeedNames] = {
    "vllm": SpeedNames("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
                       "vllm:time_to_first_token_seconds",
                       ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")),
    "sglang": SpeedNames("sglang:prompt_tokens_total", "sglang:generation_tokens_total", "sglang:num_requests_total",
                         "sglang:time_to_first_token_seconds", ("sglang:inter_token_latency_seconds",),
                         gen_throughput="sglang:gen_throughput"),
    "trtllm": SpeedNames(requests="trtllm_request_success_total", ttft="trtllm_time_to_first_token_seconds",
                         itl=("trtllm_time_per_output_token_seconds",)),
    "triton": SpeedNames(),  # the TensorRT-LLM backend's page has no token counters
    # the compute time counters first; the gauges reset at every read and are a fallback for old servers
    "llamacpp": SpeedNames("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
                           prompt_seconds="llamacpp:prompt_seconds_total",
                           generation_seconds="llamacpp:tokens_predicted_seconds_total",
                           slot_prompt_rate="llamacpp:prompt_tokens_seconds",
                           slot_gen_rate="llamacpp:predicted_tokens_seconds"),
    "tgi": SpeedNames("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum", "tgi_request_success"),
}


@dataclass(frozen=True)
class _SpeedReads:
    """What `speed_counters` reads for one engine type: field -> metric name, the ITL candidates'
    histogram bases, and every metric name looked up."""

    fields: tuple[tuple[str, str], ...]
    itl: tuple[str, ...]
    lookups: tuple[str, ...]


@lru_cache(maxsize=64)
def _speed_reads(engine_type: str) -> _SpeedReads | None:
    names = SPEED_NAMES.get(engine_type) or SPEED_NAMES.get(base_engine_type(engine_type))
    if names is None:
        return None
    wanted = {
        "prompt_tokens": names.prompt_tokens, "generation_tokens": names.generation_tokens,
        "requests": names.requests, "gen_throughput": names.gen_throughput,
        "prompt_seconds": names.prompt_seconds, "generation_seconds": names.generation_seconds,
        "slot_prompt_rate": names.slot_prompt_rate, "slot_gen_rate": names.slot_gen_rate,
    }
    if names.ttft:
        wanted.update(ttft_sum=names.ttft + "_sum", ttft_count=names.ttft + "_count")
    fields = tuple((field, name) for field, name in wanted.items() if name)
    lookups = [name for _field, name in fields]
    for base in names.itl:
        lookups += [base + "_sum", base + "_count"]
    if not lookups:
        return None
    return _SpeedReads(fields, names.itl, tuple(lookups))


def speed_counters(text: str, engine_type: str) -> SpeedCounters | None:
    """The speed signals on a page, each summed over its distinct series (data-parallel ranks, finish
    reasons); None when the page has none. Never raises: a missing or odd value is left out (None),
    since speed only refines the neutral ratios and a page good enough for the load figures must not
    be rejected for it. (`extract` reads the same from its own scan of the page.)"""
    speed = _speed_reads(engine_type)
    if speed is None:
        return None
    return _read_speed(exposition.scan(text, speed.lookups), speed)


def _read_speed(found: exposition.Scan, speed: _SpeedReads) -> SpeedCounters | None:
    """`speed_counters` from a scan that looked for `speed.lookups`: their own select, with its own
    series cap, whose errors only make the counters None."""
    try:
        page = found.select(speed.lookups)
    except MetricsError:
        return None
    values = {field: _sum_or_none(page.get(name, [])) for field, name in speed.fields}
    for base in speed.itl:
        itl_sum, itl_count = _sum_or_none(page.get(base + "_sum", [])), _sum_or_none(page.get(base + "_count", []))
        if itl_sum is not None and itl_count is not None:
            values.update(itl_sum=itl_sum, itl_count=itl_count)
            break
    if all(v is None for v in values.values()):
        return None
    return SpeedCounters(**values)


def _sum_or_none(series: exposition.Series) -> float | None:
    """Sum over distinct label sets (last wins); None when absent or any value is NaN, infinite or negative."""
    distinct: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in series:
        distinct[tuple(sorted(labels.items()))] = value
    if not distinct or any(not math.isfinite(v) or v < 0 for v in distinct.values()):
        return None
    return sum(distinct.values())
