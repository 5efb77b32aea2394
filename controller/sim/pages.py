"""Render engine snapshots as the /metrics pages real engines serve (Prometheus text format 0.0.4).

Flavours (metric names, HELP/TYPE lines and label sets copied from the real pages in
shared/fixtures/engines and from the engines' sources, see docs/engine-model.md):

| flavour       | engine                         | load metrics                                                                  |
| ------------- | ------------------------------ | ----------------------------------------------------------------------------- |
| `vllm`        | vLLM 0.10/0.11 (V1)            | vllm:num_requests_waiting/running, vllm:kv_cache_usage_perc; labels model_name, engine |
| `vllm-legacy` | vLLM < 0.10 (V0, e.g. 0.8)     | same names but vllm:gpu_cache_usage_perc, num_requests_swapped; no engine label |
| `vllm-dp`     | vLLM with N data-parallel ranks | one series per rank, engine="0".."N-1"                                        |
| `sglang`      | SGLang with --enable-metrics   | sglang:num_queue_reqs, sglang:num_running_reqs, sglang:token_usage            |
| `trtllm`      | trtllm-serve                   | trtllm_num_requests_waiting/running, trtllm_kv_cache_utilization              |
| `triton`      | TensorRT-LLM backend on Triton | nv_trt_llm_request_metrics{request_type=...}, nv_trt_llm_kv_cache_block_metrics |
| `llamacpp`    | llama.cpp server               | llamacpp:requests_deferred, llamacpp:requests_processing (no KV metric)       |
| `tgi`         | Text Generation Inference      | tgi_queue_size, tgi_batch_current_size (no KV metric, no HELP lines)          |

Python engines (vLLM, SGLang, trtllm-serve) print values the way prometheus_client does ("8.0");
C++/Rust servers (Triton, llama.cpp, TGI) print integers bare ("8") and NaN as "nan".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from prometheus_client.utils import floatToGoString

from controller.sim.engine import EngineSnapshot, HistogramData

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLAVOURS = ("vllm", "vllm-legacy", "vllm-dp", "sglang", "trtllm", "triton", "llamacpp", "tgi")

#: The metrics a controller reads for load, per flavour: the server's "nan" and "missing" faults act on these.
LOAD_METRICS: dict[str, frozenset[str]] = {
    "vllm": frozenset({"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"}),
    "vllm-legacy": frozenset({"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:gpu_cache_usage_perc"}),
    "sglang": frozenset({"sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage"}),
    "trtllm": frozenset({"trtllm_num_requests_waiting", "trtllm_num_requests_running", "trtllm_kv_cache_utilization"}),
    "triton": frozenset({"nv_trt_llm_request_metrics", "nv_trt_llm_kv_cache_block_metrics"}),
    "llamacpp": frozenset({"llamacpp:requests_deferred", "llamacpp:requests_processing"}),
    "tgi": frozenset({"tgi_queue_size", "tgi_batch_current_size"}),
}
LOAD_METRICS["vllm-dp"] = LOAD_METRICS["vllm"]

#: Where each flavour serves its page (trtllm-serve uses /prometheus/metrics).
PATHS: dict[str, str] = {f: "/metrics" for f in FLAVOURS}
PATHS["trtllm"] = "/prometheus/metrics"

#: A fixed process start time so pages are deterministic (2025-10-09T...Z).
DEFAULT_START_TIME = 1_760_000_000.0

Snapshots = EngineSnapshot | Sequence[EngineSnapshot]


def render(snapshots: Snapshots, flavour: str = "vllm", *, ranks: int | None = None,
           model_name: str | None = None, start_time: float = DEFAULT_START_TIME) -> str:
    """One /metrics page for `flavour`.

    `snapshots` is one snapshot, or one per data-parallel rank for "vllm-dp". Given one snapshot and
    `ranks` > 1 (default 2 for "vllm-dp"), the snapshot is split across the ranks with `split_snapshot`.
    `model_name` overrides the snapshot's model name.
    """
    if flavour not in _RENDERERS:
        raise ValueError(f"unknown page flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")
    snaps = [snapshots] if isinstance(snapshots, EngineSnapshot) else list(snapshots)
    if not snaps:
        raise ValueError("render needs at least one snapshot")
    if flavour == "vllm-dp":
        wanted = ranks or (len(snaps) if len(snaps) > 1 else 2)
        if len(snaps) == 1 and wanted > 1:
            snaps = split_snapshot(snaps[0], wanted)
        elif len(snaps) != wanted:
            raise ValueError(f"vllm-dp: got {len(snaps)} snapshots for {wanted} ranks")
    elif len(snaps) > 1:
        raise ValueError(f"{flavour} pages show one engine; got {len(snaps)} snapshots")
    if model_name:
        snaps = [replace(s, model_name=model_name) for s in snaps]
    page = _Page(cpp=flavour in ("triton", "llamacpp", "tgi"))
    _RENDERERS[flavour](page, snaps, start_time)
    return page.text()


def split_snapshot(snap: EngineSnapshot, n: int) -> list[EngineSnapshot]:
    """Share one engine's snapshot among n data-parallel ranks: counts are dealt out as evenly as
    integers allow (lower ranks get the remainder), KV blocks likewise, so each rank's KV usage is
    close to the whole's and the ranks add up to the original."""
    if n < 1:
        raise ValueError("n must be >= 1")
    out = []
    for i in range(n):
        blocks = _share(snap.num_gpu_blocks, n, i)
        used = min(_share(snap.kv_used_blocks, n, i), blocks)
        out.append(replace(
            snap,
            name=f"{snap.name}/{i}",
            waiting=_share(snap.waiting, n, i), running=_share(snap.running, n, i),
            prefilling=_share(snap.prefilling, n, i),
            kv_used_blocks=used, num_gpu_blocks=blocks, kv_usage=used / blocks if blocks else 0.0,
            kv_cache_max_concurrency=snap.kv_cache_max_concurrency * blocks / snap.num_gpu_blocks,
            num_preemptions=_share(snap.num_preemptions, n, i),
            prompt_tokens_total=_share(snap.prompt_tokens_total, n, i),
            generation_tokens_total=_share(snap.generation_tokens_total, n, i),
            request_success={r: _share(c, n, i) for r, c in snap.request_success.items()},
            num_submitted=_share(snap.num_submitted, n, i), num_rejected=_share(snap.num_rejected, n, i),
            num_steps=_share(snap.num_steps, n, i),
            gen_throughput=snap.gen_throughput / n,
            histograms={k: _split_hist(h, n, i) for k, h in snap.histograms.items()},
        ))
    return out


def with_load_values(text: str, flavour: str, value: str = "NaN") -> str:
    """The page with every load metric's sample value replaced (the server's "nan" fault)."""
    names = LOAD_METRICS[flavour]
    return "\n".join(_set_value(line, value) if _sample_name(line) in names else line for line in text.split("\n"))


def without_load_metrics(text: str, flavour: str) -> str:
    """The page with the load metrics' samples and HELP/TYPE lines removed (the server's "missing" fault)."""
    names = LOAD_METRICS[flavour]
    return "\n".join(line for line in text.split("\n") if _sample_name(line) not in names and _comment_name(line) not in names)


# --- writing ----------------------------------------------------------------------------------------


def _cpp_number(v: float) -> str:
    """How prometheus-cpp / llama.cpp / the Rust exporter print numbers: integers bare, NaN as nan."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    # prometheus_client prints labels sorted by name (the vLLM fixtures show engine, le, model_name)
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _go_number(v: float) -> str:
    """floatToGoString, with a shortcut for the small integers that fill most of a page."""
    if type(v) is int and 0 <= v < 1_000_000:
        return f"{v}.0"
    return _float_to_go(v)


def _float_to_go(v: float) -> str:
    """prometheus_client's floatToGoString (the exposition format's numbers), typed."""
    text: str = floatToGoString(v)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    return text


_PREFIXES: dict[tuple[str, tuple[tuple[str, str], ...], tuple[float, ...]], tuple[str, ...]] = {}


def _histogram_prefixes(name: str, labels: Mapping[str, str], buckets: tuple[float, ...]) -> tuple[str, ...]:
    """The text before the value of each line of one histogram series, cached: pages are rendered every scrape."""
    key = (name, tuple(sorted(labels.items())), buckets)
    found = _PREFIXES.get(key)
    if found is None:
        les = [_float_to_go(b) for b in buckets] + ["+Inf"]
        found = tuple(f"{name}_bucket{_labels({**labels, 'le': le})} " for le in les) + (
            f"{name}_count{_labels(labels)} ", f"{name}_sum{_labels(labels)} ")
        if len(_PREFIXES) > 20_000:  # many model names or ranks over a long run: start again
            _PREFIXES.clear()
        _PREFIXES[key] = found
    return found


class _Page:
    def __init__(self, cpp: bool = False):
        self.lines: list[str] = []
        self.num: Callable[[float], str] = _cpp_number if cpp else _go_number

    def head(self, name: str, help_text: str | None, kind: str) -> None:
        if help_text is not None:
            self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {self.num(value)}")

    def metric(self, name: str, help_text: str | None, kind: str, series: Iterable[tuple[Mapping[str, str], float]]) -> None:
        self.head(name, help_text, kind)
        for labels, value in series:
            self.sample(name, labels, value)

    def histogram(self, name: str, help_text: str, series: Iterable[tuple[Mapping[str, str], HistogramData]]) -> None:
        self.head(name, help_text, "histogram")
        num = self.num
        for labels, h in series:
            prefixes = _histogram_prefixes(name, labels, h.buckets)
            values = [*itertools.accumulate(h.counts[:-1]), h.count, h.count, h.sum]
            self.lines.extend(prefix + num(v) for prefix, v in zip(prefixes, values, strict=True))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _share(total: int, n: int, i: int) -> int:
    return total // n + (1 if i < total % n else 0)


def _split_hist(h: HistogramData, n: int, i: int) -> HistogramData:
    counts = tuple(_share(c, n, i) for c in h.counts)
    count = sum(counts)
    return HistogramData(h.buckets, counts, h.sum * count / h.count if h.count else 0.0, count)


def _sample_name(line: str) -> str:
    if not line or line[0] == "#":
        return ""
    end = len(line)
    for stop in ("{", " "):
        pos = line.find(stop)
        if pos != -1:
            end = min(end, pos)
    return line[:end]


def _comment_name(line: str) -> str:
    if line.startswith(("# HELP ", "# TYPE ")):
        return line[7:].split(" ", 1)[0]
    return ""


def _set_value(line: str, value: str) -> str:
    return line[: line.rindex(" ") + 1] + value


def _ones(count: int, buckets: Sequence[float]) -> HistogramData:
    """A histogram of `count` observations of the value 1 (vLLM's request_params_n: n is always 1 here)."""
    counts = (count,) + (0,) * len(buckets)
    return HistogramData(tuple(float(b) for b in buckets), counts, float(count), count)


# --- shared process header (prometheus_client's default collectors) -----------------------------------


def _python_header(page: _Page, snap: EngineSnapshot, start_time: float, minor: str = "12", patch: str = "11") -> None:
    # Plausible numbers that grow with the engine's work, so successive scrapes look alive.
    steps = snap.num_steps
    page.metric("python_gc_objects_collected_total", "Objects collected during gc", "counter",
                [({"generation": "0"}, 7522 + steps // 7), ({"generation": "1"}, 4938 + steps // 50),
                 ({"generation": "2"}, 1250 + steps // 900)])
    page.metric("python_gc_objects_uncollectable_total", "Uncollectable objects found during GC", "counter",
                [({"generation": g}, 0) for g in "012"])
    page.metric("python_gc_collections_total", "Number of times this generation was collected", "counter",
                [({"generation": "0"}, 1690 + steps // 40), ({"generation": "1"}, 153 + steps // 400),
                 ({"generation": "2"}, 9 + steps // 5000)])
    page.metric("python_info", "Python platform information", "gauge",
                [({"implementation": "CPython", "major": "3", "minor": minor, "patchlevel": patch,
                   "version": f"3.{minor}.{patch}"}, 1)])
    page.metric("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", [({}, 1.2624941056e10)])
    page.metric("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
                [({}, 1.897771008e9 + 4096 * (snap.num_submitted % 50_000))])
    page.metric("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge",
                [({}, start_time)])
    page.metric("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
                [({}, round(41.37 + 0.35 * snap.busy_seconds, 2))])
    page.metric("process_open_fds", "Number of open file descriptors.", "gauge", [({}, 63 + min(snap.running, 900))])
    page.metric("process_max_fds", "Maximum number of open file descriptors.", "gauge", [({}, 1048576)])


# --- vLLM ---------------------------------------------------------------------------------------------

_REASONS = ("stop", "length", "abort")


def _vllm_labels(snaps: Sequence[EngineSnapshot], with_engine: bool) -> list[tuple[dict[str, str], EngineSnapshot]]:
    if with_engine:
        return [({"engine": str(i), "model_name": s.model_name}, s) for i, s in enumerate(snaps)]
    return [({"model_name": s.model_name}, s) for s in snaps]


def _vllm_common_histograms(page: _Page, rows: Sequence[tuple[dict[str, str], EngineSnapshot]], tpot_help: str,
                            with_itl: bool) -> None:
    """The request and iteration histograms, in vLLM's registration order."""

    def hist(key: str) -> list[tuple[dict[str, str], HistogramData]]:
        return [(lab, s.histograms[key]) for lab, s in rows]

    page.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", hist("prompt_tokens"))
    page.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", hist("generation_tokens"))
    page.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", hist("iteration_tokens"))
    # Requests carry no max_tokens here: assume each asked for exactly the tokens it generated.
    page.histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.",
                   hist("generation_tokens"))
    page.histogram("vllm:request_params_n", "Histogram of the n request parameter.",
                   [(lab, _ones(s.histograms["generation_tokens"].count, (1, 2, 5, 10, 20))) for lab, s in rows])
    page.histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", hist("generation_tokens"))
    page.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", hist("ttft"))
    page.histogram("vllm:time_per_output_token_seconds", tpot_help, hist("itl"))
    if with_itl:
        page.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", hist("itl"))
        page.histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.",
                       hist("request_tpot"))
    page.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", hist("e2e"))
    page.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", hist("queue"))
    page.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.",
                   hist("inference"))
    page.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", hist("prefill"))
    page.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", hist("decode"))


def _render_vllm(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """vLLM 0.10/0.11 (V1 engine); also the data-parallel page, one series per rank."""
    rows = _vllm_labels(snaps, with_engine=True)
    _python_header(page, snaps[0], start_time)
    page.metric("vllm:num_requests_running", "Number of requests in model execution batches.", "gauge",
                [(lab, s.running) for lab, s in rows])
    page.metric("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "gauge",
                [(lab, s.waiting) for lab, s in rows])
    page.metric("vllm:num_requests_waiting_by_reason", "Number of requests waiting, by reason.", "gauge",
                [({**lab, "reason": "capacity"}, s.waiting) for lab, s in rows])
    page.metric("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge",
                [(lab, s.kv_usage) for lab, s in rows])
    # No prefix caching is modelled: every prompt token is a query and none hits.
    page.metric("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", "counter",
                [(lab, s.prompt_tokens_total) for lab, s in rows])
    page.metric("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", "counter",
                [(lab, 0) for lab, s in rows])
    page.metric("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", "counter",
                [(lab, s.num_preemptions) for lab, s in rows])
    page.metric("vllm:prompt_tokens_total", "Number of prefill tokens processed.", "counter",
                [(lab, s.prompt_tokens_total) for lab, s in rows])
    page.metric("vllm:generation_tokens_total", "Number of generation tokens processed.", "counter",
                [(lab, s.generation_tokens_total) for lab, s in rows])
    page.metric("vllm:request_success_total", "Count of successfully processed requests.", "counter",
                [({**lab, "finished_reason": r}, s.request_success.get(r, 0)) for lab, s in rows for r in _REASONS])
    _vllm_common_histograms(page, rows, "Histogram of time per output token in seconds.", with_itl=True)
    page.metric("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge",
                [(_cache_info_v1(i, s), 1) for i, s in enumerate(snaps)])


def _cache_info_v1(rank: int, s: EngineSnapshot) -> dict[str, str]:
    # The label set of the real vllm_0_11_dp2 fixture.
    return {
        "block_size": str(s.block_size), "cache_dtype": "auto", "calculate_kv_scales": "False", "cpu_offload_gb": "0",
        "enable_prefix_caching": "True", "engine": str(rank), "gpu_memory_utilization": "0.9",
        "kv_cache_max_concurrency": f"{s.kv_cache_max_concurrency:.1f}", "kv_cache_size_tokens": str(s.kv_cache_size_tokens),
        "num_gpu_blocks": str(s.num_gpu_blocks), "prefix_caching_hash_algo": "builtin", "swap_space": "4",
    }


def _render_vllm_legacy(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """vLLM < 0.10 (V0 engine, e.g. 0.8): gpu_cache_usage_perc, swapped requests, no engine label."""
    (s,) = snaps
    lab = {"model_name": s.model_name}
    rows = [(lab, s)]
    _python_header(page, s, start_time)
    page.metric("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge", [({
        "block_size": str(s.block_size), "cache_dtype": "auto", "calculate_kv_scales": "False", "cpu_offload_gb": "0",
        "enable_prefix_caching": "False", "gpu_memory_utilization": "0.9", "is_attention_free": "False",
        "num_cpu_blocks": "2048", "num_gpu_blocks": str(s.num_gpu_blocks), "num_gpu_blocks_override": "None",
        "sliding_window": "None", "swap_space": "4",
    }, 1)])
    page.metric("vllm:num_requests_running", "Number of requests currently running on GPU.", "gauge", [(lab, s.running)])
    page.metric("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "gauge", [(lab, s.waiting)])
    page.metric("vllm:num_requests_swapped", "Number of requests swapped to CPU.", "gauge", [(lab, 0)])
    page.metric("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", "gauge", [(lab, s.kv_usage)])
    page.metric("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", "gauge", [(lab, 0)])
    page.metric("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", "gauge", [(lab, 0)])
    page.metric("vllm:cpu_prefix_cache_hit_rate", "CPU prefix cache block hit rate.", "gauge", [(lab, 0)])
    page.metric("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", "counter",
                [(lab, s.num_preemptions)])
    page.metric("vllm:prompt_tokens_total", "Number of prefill tokens processed.", "counter", [(lab, s.prompt_tokens_total)])
    page.metric("vllm:generation_tokens_total", "Number of generation tokens processed.", "counter",
                [(lab, s.generation_tokens_total)])
    _vllm_common_histograms(page, rows, "Histogram of time per output token in seconds.", with_itl=False)
    page.metric("vllm:request_success_total", "Count of successfully processed requests.", "counter",
                [({**lab, "finished_reason": r}, s.request_success.get(r, 0)) for r in _REASONS])


# --- SGLang, TensorRT-LLM, llama.cpp, TGI -----------------------------------------------------------------


def _render_sglang(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    (s,) = snaps
    lab = {"model_name": s.model_name}
    used_tokens = s.kv_used_blocks * s.block_size
    # The first six are the real fixture, in its order and with its HELP texts.
    page.metric("sglang:num_running_reqs", "The number of running requests.", "gauge", [(lab, s.running)])
    page.metric("sglang:num_used_tokens", "The number of used tokens.", "gauge", [(lab, used_tokens)])
    page.metric("sglang:token_usage", "The token usage", "gauge", [(lab, round(s.kv_usage, 2))])  # SGLang rounds to 2 places
    page.metric("sglang:gen_throughput", "The generation throughput (token/s).", "gauge", [(lab, s.gen_throughput)])
    page.metric("sglang:num_queue_reqs", "The number of requests in the waiting queue", "gauge", [(lab, s.waiting)])
    page.metric("sglang:cache_hit_rate", "The prefix cache hit rate.", "gauge", [(lab, 0.0)])
    page.metric("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", "gauge",
                [(lab, s.kv_cache_size_tokens)])
    page.metric("sglang:prompt_tokens_total", "Number of prefill tokens processed.", "counter", [(lab, s.prompt_tokens_total)])
    page.metric("sglang:generation_tokens_total", "Number of generation tokens processed.", "counter",
                [(lab, s.generation_tokens_total)])
    page.metric("sglang:num_requests_total", "Number of requests processed.", "counter", [(lab, s.num_finished)])


def _render_trtllm(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """trtllm-serve's /prometheus/metrics (tensorrt_llm/metrics/collector.py)."""
    (s,) = snaps
    lab = {"engine_type": "trtllm", "model_name": s.model_name}
    h = s.histograms
    page.metric("trtllm_request_success_total", "Count of successfully processed requests.", "counter",
                [({**lab, "finished_reason": r}, s.request_success.get(r, 0)) for r in ("stop", "length")])
    page.histogram("trtllm_e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", [(lab, h["e2e"])])
    page.histogram("trtllm_time_to_first_token_seconds", "Histogram of time to first token in seconds.", [(lab, h["ttft"])])
    page.histogram("trtllm_time_per_output_token_seconds", "Histogram of time per output token in seconds.",
                   [(lab, h["request_tpot"])])
    page.histogram("trtllm_request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                   [(lab, h["queue"])])
    page.metric("trtllm_prompt_tokens_total", "Cumulative number of prompt (input) tokens processed.", "counter",
                [(lab, s.prompt_tokens_total)])
    page.metric("trtllm_generation_tokens_total", "Cumulative number of generation (output) tokens produced.", "counter",
                [(lab, s.generation_tokens_total)])
    page.metric("trtllm_kv_cache_hit_rate", "KV cache hit rate", "gauge", [(lab, 0.0)])
    page.metric("trtllm_kv_cache_utilization", "KV cache utilization", "gauge", [(lab, s.kv_usage)])
    page.metric("trtllm_num_requests_running", "Number of active requests", "gauge", [(lab, s.running)])
    page.metric("trtllm_num_requests_waiting", "Number of queued requests", "gauge", [(lab, s.waiting)])
    page.metric("trtllm_num_requests_completed_total", "Total number of completed requests across iterations", "counter",
                [(lab, s.num_finished)])
    page.metric("trtllm_max_num_active_requests", "Maximum number of active requests", "gauge", [(lab, s.max_num_seqs)])
    page.metric("trtllm_iteration_latency_seconds", "Iteration latency in seconds", "gauge", [(lab, s.last_step_seconds)])
    page.metric("trtllm_kv_cache_max_blocks", "Maximum number of KV cache blocks", "gauge", [(lab, s.num_gpu_blocks)])
    page.metric("trtllm_kv_cache_free_blocks", "Number of free KV cache blocks", "gauge",
                [(lab, s.num_gpu_blocks - s.kv_used_blocks)])
    page.metric("trtllm_kv_cache_used_blocks", "Number of used KV cache blocks", "gauge", [(lab, s.kv_used_blocks)])
    page.metric("trtllm_kv_cache_tokens_per_block", "Number of tokens per KV cache block", "gauge", [(lab, s.block_size)])
    page.metric("trtllm_num_context_requests", "Number of context (prefill) requests", "gauge", [(lab, s.prefilling)])
    page.metric("trtllm_num_generation_requests", "Number of generation (decode) requests", "gauge",
                [(lab, s.running - s.prefilling)])


def _render_triton(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """Triton with the TensorRT-LLM backend: the fixture's families plus Triton's request counters."""
    (s,) = snaps
    lab = {"model": "tensorrt_llm", "version": "1"}
    page.metric("nv_inference_request_success", "Number of successful inference requests, all batch sizes", "counter",
                [(lab, s.num_finished)])
    page.metric("nv_inference_count", "Number of inferences performed (does not include cached requests)", "counter",
                [(lab, s.num_finished)])
    page.metric("nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution per-model.", "gauge", [(lab, s.waiting)])
    page.metric("nv_trt_llm_request_metrics", "TRT LLM request metrics", "gauge", [
        ({**lab, "request_type": "waiting"}, s.waiting), ({**lab, "request_type": "context"}, s.prefilling),
        ({**lab, "request_type": "scheduled"}, s.running), ({**lab, "request_type": "max"}, s.max_num_seqs),
        ({**lab, "request_type": "active"}, s.running)])
    page.metric("nv_trt_llm_kv_cache_block_metrics", "TRT LLM KV cache block metrics", "gauge", [
        ({**lab, "kv_cache_block_type": "fraction"}, s.kv_usage),
        ({**lab, "kv_cache_block_type": "max"}, s.num_gpu_blocks),
        ({**lab, "kv_cache_block_type": "used"}, s.kv_used_blocks),
        ({**lab, "kv_cache_block_type": "free"}, s.num_gpu_blocks - s.kv_used_blocks),
        ({**lab, "kv_cache_block_type": "tokens_per"}, s.block_size)])


def _render_llamacpp(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """llama.cpp server (--metrics), as the real server prints it (tests/data/llamacpp_real_*.txt): no
    labels, no KV metric; the compute time counters `prompt_seconds_total` (here the requests' prefill
    times) and `tokens_predicted_seconds_total` (their decode times, summed over slots).

    The real `prompt_tokens_seconds` / `predicted_tokens_seconds` gauges are averages since the previous
    read of /metrics and reset at every read; a stateless renderer cannot reset them, so they are the
    averages since the engine started (0 before any work)."""
    (s,) = snaps
    prefill = s.histograms.get("prefill")
    itl = s.histograms.get("itl")
    prompt_s = prefill.sum if prefill is not None else 0.0
    gen_s = itl.sum if itl is not None else 0.0
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", s.prompt_tokens_total),
        ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", 0),
        ("prompt_seconds_total", "Total time spent processing prompts", round(prompt_s, 6)),
        ("tokens_predicted_total", "Number of generation tokens processed", s.generation_tokens_total),
        ("tokens_predicted_seconds_total", "Total time spent generating tokens", round(gen_s, 6)),
        ("n_decode_total", "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding",
         s.num_steps),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", s.max_model_len if s.num_steps else 0),
        ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", 0),
        ("spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model", 0),
        ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps", 0),
    ]
    for name, help_text, value in counters:
        page.metric("llamacpp:" + name, help_text, "counter", [({}, value)])
    busy_slots = s.generation_tokens_total / s.num_steps if s.num_steps else 0.0  # ~ decoding slots per call
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s",
         round(s.prompt_tokens_total / prompt_s, 3) if prompt_s else 0.0),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s",
         round(s.generation_tokens_total / gen_s, 3) if gen_s else 0.0),
        ("requests_processing", "Number of requests processing", s.running),
        ("requests_deferred", "Number of requests deferred", s.waiting),
        ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", round(busy_slots, 5)),
    ]
    for name, help_text, value in gauges:
        page.metric("llamacpp:" + name, help_text, "gauge", [({}, value)])


def _render_tgi(page: _Page, snaps: Sequence[EngineSnapshot], start_time: float) -> None:
    """TGI's Rust exporter prints TYPE lines only."""
    (s,) = snaps
    page.metric("tgi_request_count", None, "counter", [({}, s.num_submitted)])
    page.metric("tgi_request_success", None, "counter", [({}, s.num_finished)])
    page.metric("tgi_queue_size", None, "gauge", [({}, s.waiting)])
    page.metric("tgi_batch_current_size", None, "gauge", [({}, s.running)])
    page.metric("tgi_batch_current_max_tokens", None, "gauge", [({}, s.kv_used_blocks * s.block_size)])


_RENDERERS: dict[str, Callable[[_Page, Sequence[EngineSnapshot], float], None]] = {
    "vllm": _render_vllm,
    "vllm-dp": _render_vllm,
    "vllm-legacy": _render_vllm_legacy,
    "sglang": _render_sglang,
    "trtllm": _render_trtllm,
    "triton": _render_triton,
    "llamacpp": _render_llamacpp,
    "tgi": _render_tgi,
}
