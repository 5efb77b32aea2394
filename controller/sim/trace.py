"""Load and reshape the Azure LLM inference traces that drive the traffic simulation.

Traces: Azure Public Dataset, AzureLLMInferenceTrace_{conv,code} (2023), CC-BY 4.0.
Attribution: Patel et al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.

`load_trace("conv")` / `load_trace("code")` read the full traces from a `shared/traces` directory
(F5LR_TRACES_DIR, or found by searching upward from this package and from the working directory);
`load_trace("sample")` reads the first 2,000 conversation requests shipped in controller/sim/data, so
the demo works without shared/. Any other argument is a path to a CSV with the same columns
(TIMESTAMP, ContextTokens, GeneratedTokens).
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from controller.sim.engine import Engine, EngineSpec, Request

TRACE_FILES = {"conv": "azure_llm_2023_conv.csv", "code": "azure_llm_2023_code.csv"}
SAMPLE_NAMES = ("sample", "conv-sample")
DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_FILE = DATA_DIR / "azure_conv_sample.csv"
ENV_DIR = "F5LR_TRACES_DIR"


class TraceRequest(NamedTuple):
    """One request: arrival in seconds from the trace's first request, prompt and output lengths in tokens."""

    t: float
    prompt_tokens: int
    output_tokens: int


Trace = list[TraceRequest]


class TraceNotFoundError(FileNotFoundError):
    """The named trace is not where we looked; the message lists the places searched."""


# --- locating and loading -------------------------------------------------------------------------------


def _search_roots() -> list[Path]:
    return [Path(__file__).resolve().parent, Path.cwd().resolve()]


def find_traces_dir() -> Path | None:
    """F5LR_TRACES_DIR if set, else the first `shared/traces` found walking up from the package and the CWD."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env) if Path(env).is_dir() else None
    for root in _search_roots():
        for parent in (root, *root.parents):
            candidate = parent / "shared" / "traces"
            if candidate.is_dir():
                return candidate
    return None


def trace_path(name: str) -> Path:
    """The CSV file for "conv" or "code". Raises TraceNotFoundError saying where it looked."""
    filename = TRACE_FILES[name]
    directory = find_traces_dir()
    if directory is not None and (directory / filename).is_file():
        return directory / filename
    env = os.environ.get(ENV_DIR)
    looked = f"{ENV_DIR}={env}" if env else "shared/traces above " + " and ".join(str(r) for r in _search_roots())
    raise TraceNotFoundError(
        f"trace {name!r} ({filename}) not found; looked in {looked}. "
        f"Set {ENV_DIR} to the directory holding it, or use load_trace('sample') for the built-in 2,000-request sample."
    )


def load_trace(name_or_path: str | os.PathLike[str] = "conv") -> Trace:
    """Read a trace: "conv", "code", "sample", or a path to a CSV with the Azure columns. Sorted by arrival."""
    key = str(name_or_path)
    if key in TRACE_FILES:
        path = trace_path(key)
    elif key in SAMPLE_NAMES:
        path = SAMPLE_FILE
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise TraceNotFoundError(f"no trace file at {path} (names: {', '.join([*TRACE_FILES, *SAMPLE_NAMES])})")
    return read_csv(path)


def read_csv(path: str | os.PathLike[str]) -> Trace:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None:
            return []
        cols = _columns(header, path)
        raw = [(_seconds(r[cols[0]]), int(r[cols[1]]), int(r[cols[2]])) for r in rows if r]
    if not raw:
        return []
    raw.sort(key=lambda r: r[0])
    t0 = raw[0][0]
    return [TraceRequest(t - t0, p, o) for t, p, o in raw]


def _columns(header: Sequence[str], path: str | os.PathLike[str]) -> tuple[int, int, int]:
    names = [h.strip() for h in header]
    try:
        return names.index("TIMESTAMP"), names.index("ContextTokens"), names.index("GeneratedTokens")
    except ValueError:
        raise ValueError(f"{path}: expected columns TIMESTAMP, ContextTokens, GeneratedTokens; got {names}") from None


def _seconds(stamp: str) -> float:
    """'2023-11-16 18:15:46.6805900' -> seconds since 0001-01-01 (7 fractional digits defeat fromisoformat on 3.10)."""
    date, _, clock = stamp.strip().partition(" ")
    hours, minutes, seconds = clock.split(":")
    day = _dt.date.fromisoformat(date).toordinal()
    return day * 86400.0 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# --- reshaping --------------------------------------------------------------------------------------------


def duration(trace: Sequence[TraceRequest]) -> float:
    return trace[-1].t - trace[0].t if trace else 0.0


def mean_rate(trace: Sequence[TraceRequest]) -> float:
    """Requests per second over the trace (n - 1 gaps over its span)."""
    span = duration(trace)
    return (len(trace) - 1) / span if span > 0 else math.inf


def scale_rate(trace: Sequence[TraceRequest], factor: float) -> Trace:
    """Arrivals `factor` times as frequent (times divided by factor): 2.0 doubles the load, 0.5 halves it."""
    if not factor > 0:
        raise ValueError("factor must be > 0")
    return [TraceRequest(r.t / factor, r.prompt_tokens, r.output_tokens) for r in trace]


def scale_to_rate(trace: Sequence[TraceRequest], requests_per_second: float) -> Trace:
    """The trace compressed or stretched to a mean arrival rate."""
    return scale_rate(trace, requests_per_second / mean_rate(trace))


def repeat(trace: Sequence[TraceRequest], times: int) -> Trace:
    """`times` copies back to back; each copy starts one mean gap after the previous one's last arrival."""
    if times < 1:
        raise ValueError("times must be >= 1")
    if not trace:
        return []
    period = duration(trace) + (duration(trace) / (len(trace) - 1) if len(trace) > 1 else 1.0)
    return [TraceRequest(r.t + i * period, r.prompt_tokens, r.output_tokens) for i in range(times) for r in trace]


def window(trace: Sequence[TraceRequest], start: float, duration_s: float) -> Trace:
    """Requests arriving in [start, start + duration_s), times shifted so the window starts at 0."""
    end = start + duration_s
    return [TraceRequest(r.t - start, r.prompt_tokens, r.output_tokens) for r in trace if start <= r.t < end]


def to_request(r: TraceRequest, **fields: Any) -> Request:
    return Request(r.prompt_tokens, r.output_tokens, **fields)


# --- capacity ---------------------------------------------------------------------------------------------


def capacity_estimate(spec: EngineSpec, trace: Sequence[TraceRequest], *, method: str = "sim", sample: int = 2000) -> float:
    """Requests/s one engine sustains for the trace's token mix: its saturated throughput.

    "sim" (default) runs the engine itself on up to `sample` requests drawn evenly from the trace, all
    queued at once, and measures completions per second between the 10th and 90th percentile finish
    (ramp-up and drain excluded). "analytic" uses the closed form in docs/engine-model.md. Use it to
    set load: e.g. scale_to_rate(trace, 0.85 * sum(capacity_estimate(s, trace) for s in specs)).
    Requests that can never fit the engine are left out.
    """
    if method == "analytic":
        return _capacity_analytic(spec, trace)
    if method != "sim":
        raise ValueError("method must be 'sim' or 'analytic'")
    picked = _even_sample(trace, sample)
    engine = Engine(spec, keep_finished=True)
    for r in picked:
        if engine.fits(r.prompt_tokens, r.output_tokens):
            engine.submit(Request(r.prompt_tokens, r.output_tokens), 0.0)
    engine.advance(math.inf)
    finishes = sorted(req.finish for req in engine.finished if req.finish is not None)
    if len(finishes) < 10:
        return _capacity_analytic(spec, trace)
    lo, hi = int(0.1 * len(finishes)), int(0.9 * len(finishes))
    span = finishes[hi] - finishes[lo]
    return (hi - lo) / span if span > 0 else math.inf


def _even_sample(trace: Sequence[TraceRequest], n: int) -> list[TraceRequest]:
    if len(trace) <= n:
        return list(trace)
    step = len(trace) / n
    return [trace[int(i * step)] for i in range(n)]


def _capacity_analytic(spec: EngineSpec, trace: Iterable[TraceRequest]) -> float:
    """Throughput at a full batch: each request costs its prefill plus its share of out decode steps.

    With n sequences decoding, a step of (base + per_seq * n) makes n tokens, so a request's output
    costs out * (base / n + per_seq); n is max_num_seqs or what the KV cache holds at the mean
    in-flight length (prompt + half the output, weighted by time in flight).
    """
    rows = [r for r in trace if r.prompt_tokens + r.output_tokens <= spec.max_model_len]
    if not rows:
        raise ValueError("no request in the trace fits the engine")
    mean_p = sum(r.prompt_tokens for r in rows) / len(rows)
    mean_o = sum(r.output_tokens for r in rows) / len(rows)
    in_flight = sum((r.prompt_tokens + r.output_tokens / 2) * r.output_tokens for r in rows) / sum(r.output_tokens for r in rows)
    n = max(1.0, min(spec.max_num_seqs, spec.kv_cache_size_tokens / in_flight))
    ms = mean_o * (spec.base_ms / n + spec.per_seq_ms) / spec.decode_speed + mean_p * spec.per_prefill_token_ms / spec.prefill_speed
    return 1000.0 * spec.speed / ms
