"""How much cheaper is reading three gauges with `specs.extract` than parsing the page in full?

    python bench/scrape.py                      # a synthetic ~44 KB vLLM 0.11 page, 2 data-parallel ranks
    python bench/scrape.py --page metrics.txt   # a page you saved with curl (engine detected, or --engine)

The synthetic page carries what a real vLLM page carries: per-rank gauges, counters and full histograms
(TTFT, TPOT, inter-token latency, e2e latency, queue time, prompt and
generation tokens, request parameter n, iteration tokens), with vLLM's own bucket boundaries.
Both readers must agree on the values; the figure is the time per page and the ratio (target >= 30x).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/scrape.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families

from controller.engines import specs

TARGET_RATIO = 30.0
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

# Bucket boundaries as vLLM v1 (vllm/v1/metrics/loggers.py) declares them.
TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
TPOT = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
TOKENS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 131072]
ITERATION = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
PARAMS_N = [1, 2, 5, 10, 20]

COUNTERS = [
    ("vllm:prefix_cache_queries", "Prefix cache queries"),
    ("vllm:prefix_cache_hits", "Prefix cache hits"),
    ("vllm:num_preemptions", "Cumulative number of preemption"),
    ("vllm:prompt_tokens", "Number of prefill tokens processed."),
    ("vllm:generation_tokens", "Number of generation tokens processed."),
]
HISTOGRAMS = [
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT),
    ("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", TPOT),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", TPOT),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", LATENCY),
    ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", LATENCY),
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKENS),
    ("vllm:request_generation_tokens", "Number of generation tokens processed.", TOKENS),
    ("vllm:request_params_n", "Histogram of the n request parameter.", PARAMS_N),
    ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ITERATION),
]


def _labels(rank: int, model: bool = True, **extra: str) -> str:
    pairs = {"engine": str(rank), **({"model_name": MODEL} if model else {}), **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"


def synthetic_page(ranks: int = 2, seed: int = 7) -> str:
    """A vLLM 0.11 page in prometheus_client's own layout (HELP, TYPE, then the samples)."""
    rnd = random.Random(seed)
    out = [
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        *(f'python_gc_objects_collected_total{{generation="{g}"}} {rnd.randint(100, 9000)}.0' for g in range(3)),
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {rnd.randint(10**9, 10**10)}.0",
    ]

    def gauge(name: str, doc: str, values) -> None:
        out.extend([f"# HELP {name} {doc}", f"# TYPE {name} gauge"])
        out.extend(f"{name}{_labels(r)} {v!r}" for r, v in enumerate(values))

    per_rank = range(ranks)
    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", [float(rnd.randint(0, 64)) for _ in per_rank])
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", [float(rnd.randint(0, 20)) for _ in per_rank])
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", [round(rnd.random(), 4) for _ in per_rank])
    for name, doc in COUNTERS:
        out.extend([f"# HELP {name}_total {doc}", f"# TYPE {name}_total counter"])
        out.extend(f"{name}_total{_labels(r)} {float(rnd.randint(0, 10**7))}" for r in range(ranks))
    out.extend(["# HELP vllm:request_success_total Count of successfully processed requests.", "# TYPE vllm:request_success_total counter"])
    for r in range(ranks):
        for reason in ("stop", "length", "abort"):
            out.append(f"vllm:request_success_total{_labels(r, finished_reason=reason)} {float(rnd.randint(0, 5000))}")
    for name, doc, buckets in HISTOGRAMS:
        out.extend([f"# HELP {name} {doc}", f"# TYPE {name} histogram"])
        for r in range(ranks):
            count = 0
            for le in buckets:
                count += rnd.randint(0, 50)
                out.append(f"{name}_bucket{_labels(r, le=str(float(le)))} {float(count)}")
            out.append(f"{name}_bucket{_labels(r, le='+Inf')} {float(count)}")
            out.append(f"{name}_count{_labels(r)} {float(count)}")
            out.append(f"{name}_sum{_labels(r)} {rnd.random() * count * 3}")
    out.extend(["# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig", "# TYPE vllm:cache_config_info gauge"])
    for r in range(ranks):
        info = {"block_size": "16", "cache_dtype": "auto", "enable_prefix_caching": "True", "gpu_memory_utilization": "0.9",
                "kv_cache_max_concurrency": "42.1", "num_gpu_blocks": "10784", "swap_space": "4"}
        out.append(f"vllm:cache_config_info{_labels(r, model=False, **info)} 1.0")
    return "\n".join(out) + "\n"


def full_parse(text: str) -> dict:
    """What a scraper built on prometheus_client does: parse everything, then pick the gauges."""
    picked: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            picked.setdefault(s.name, []).append(s.value)
    return picked


def per_page(fn, text: str, budget: float) -> float:
    """Median seconds per call over batches, within roughly `budget` seconds."""
    fn(text)
    t0 = time.perf_counter()
    fn(text)
    once = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(0.05 / once))
    samples = []
    stop = time.perf_counter() + budget
    while time.perf_counter() < stop or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn(text)
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def agree(text: str, engine: str) -> bool:
    """extract() must report what the full parse holds for the same page."""
    sample = specs.extract(text, engine)
    spec = specs.SPECS[engine]
    full = full_parse(text)
    waiting = specs.parse_key(spec.waiting)
    if waiting.matchers:  # label-selected engines (Triton) are covered by the tests, not here
        return True
    ok = math.isclose(sum(full.get(waiting.name, [math.nan])), sample.waiting)
    kv_names = [k for k in spec.kv if k in full]
    if kv_names:
        ok = ok and math.isclose(min(max(full[kv_names[0]]), 1.0), sample.kv_usage)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", type=Path, help="a saved /metrics page instead of the synthetic one")
    ap.add_argument("--engine", choices=sorted(specs.SPECS), help="engine type of --page (default: detected)")
    ap.add_argument("--ranks", type=int, default=2, help="data-parallel ranks of the synthetic page")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    args = ap.parse_args(argv)

    if args.page:
        text, origin = args.page.read_text(encoding="utf-8", errors="replace"), str(args.page)
    else:
        text, origin = synthetic_page(args.ranks), f"synthetic vLLM 0.11, {args.ranks} ranks, full histograms"
    engine = args.engine or specs.detect(text)
    if engine is None:
        print("could not recognise the engine; pass --engine", file=sys.stderr)
        return 2

    full = per_page(full_parse, text, args.seconds)
    fast = per_page(lambda t: specs.extract(t, engine), text, args.seconds)
    ratio = full / fast
    same = agree(text, engine)
    sample = specs.extract(text, engine)
    verdict = "PASS" if ratio >= TARGET_RATIO and same else "FAIL"

    print("=" * 66)
    print(" /metrics read cost: prometheus_client full parse vs specs.extract")
    print("=" * 66)
    print(f" page               {origin}")
    print(f"                    {len(text.encode()) / 1024:.1f} KB, {text.count(chr(10))} lines, engine {engine}")
    print(f" full parse         {full * 1e3:8.3f} ms/page   (prometheus_client.parser)")
    print(f" extract()          {fast * 1e3:8.3f} ms/page   (exposition.scan + engines)")
    print(f" speed-up           {ratio:8.1f} x        (target >= {TARGET_RATIO:.0f}x)")
    print(f" values agree       {'yes' if same else 'NO'}            {sample}")
    print(f" verdict            {verdict}")
    print("=" * 66)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
