"""Each member's service rate, learned online from the speed counters its engine already exports.

Why: `controller.policy.scoring.balance` equalises a pressure (queued share, KV use) that ratio-least-connections
makes look alike on every member, so the loop cannot see speed; what it leaks toward (its *neutral*)
has to carry it. KV capacity does not follow speed (an H100 and an A100-80G hold the same cache; a
smaller `max_model_len` changes `kv_cache_max_concurrency` and not speed), so speed is measured.

Measured per member from the difference between two ticks (`observe`):

* **decode**: generated tokens per second per running request (1 / time per output token), from the
  inter-token-latency histogram (Δcount / Δsum) where the page has one; else Δgeneration tokens /
  (Δt × mean running requests), or Δgenerated tokens / Δgeneration seconds where the engine counts the
  time each request spends generating (llama.cpp `tokens_predicted_seconds_total`, summed over slots);
  else a gauge (SGLang `gen_throughput` / running; llama.cpp's per-read `predicted_tokens_seconds` only
  on servers without the time counters: it resets at every read, so a second scraper takes it away).
* **prefill**: prompt tokens per second of time-to-first-token (Δprompt tokens / ΔTTFT sum). TTFT
  includes the engine's own queue, so this is the speed a prompt becomes a first token *at the load
  the member is given*; else prompt tokens per second of prompt compute (llama.cpp
  `prompt_seconds_total`); else llama.cpp's per-read `prompt_tokens_seconds` gauge (old servers).

Where both rates are compute rates (`timed`: llama.cpp), they are combined by the work a request asks
for instead: rate = 1 / (m / prefill + 1 / decode), m the pool's prompt tokens per generated token, so the
speed is requests of the pool's mix per second (docs/real-engines.md measured this against the engines).

`neutral` combines them into a relative service rate, prefill^w * decode^(1-w) (PREFILL_WEIGHT). Both
rates fall as a member is handed more concurrency (bigger batches, a queue: TTFT includes it), so
following them is negative feedback, not rich-get-richer.

Smoothing: every window's value is weighted by the time it covers times e^(-age/DECAY_S): the estimate
is a time-decayed average, so a member's figures follow what it does now (within a few DECAY_S) whether it
closes a window every tick or every ten seconds. Not weighted by the work measured: after a burst, the
burst's many first tokens would outweigh a quiet member's few for a minute or more.
A quiet member's prefill window closes after DECAY_S with MIN_FIRST_TOKENS_AGED first tokens rather than
waiting for MIN_FIRST_TOKENS (with a per-window EWMA its TTFT lagged a burst by minutes).

Robustness: a counter that goes down (engine restart) starts a new baseline and keeps the estimate;
a window with too little work (fewer than MIN_FIRST_TOKENS first tokens and MIN_DECODE_TOKENS generated
tokens: a quiet or idle member) changes nothing and keeps growing until it holds enough, so the last
estimate stays and a slow trickle is still measured over several ticks; a member
without an estimate yet (just joined, never busy) gets the pool's median (`imputed`); data-parallel
ranks are summed by `controller.engines.specs`, running requests too, so the rates are per request of the
member. Where no member has counters, the neutral falls back to KV capacity, then to equal ratios.
Pure: no clock, no I/O; the caller passes the time and keeps the estimates between ticks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from controller.model import Sample, SpeedCounters

#: weight of one busy window in the running averages (EWMA).
ALPHA = 0.2
#: a window counts for decode only with at least this many generated tokens (inter-token samples).
MIN_DECODE_TOKENS = 64.0
#: a window counts for prefill (and TTFT) only with at least this many first tokens (TTFT samples). 32,
#: not 8: a mean over 8 first tokens under bursts is mostly which member caught the burst; with 32 the
#: default churned half as much on a homogeneous pool of 16 (conv trace, 7 vs 17 writes a minute).
MIN_FIRST_TOKENS = 32.0
#: a window counts for a compute-timed prefill rate only with at least this many prompt tokens.
MIN_PROMPT_TOKENS = 256.0
#: time constant (seconds) of the decayed estimates: a window's weight is its span x e^(-age/DECAY_S).
DECAY_S = 10.0
#: time constant (seconds) of the decayed mean TTFT alone (the speeds keep DECAY_S). A linear mean falls
#: from a burst's TTFT to a quiet one's by e^(-t/tau): from 30x to within 2x takes 3.5 tau, so at 10 s the
#: estimate read more than 2x off a member's last 10 s for 50-74 s of a 600-s run (bench.ttft_lag).
TTFT_DECAY_S = 5.0
#: a prefill window open for DECAY_S or longer closes with this many first tokens (a quiet member).
MIN_FIRST_TOKENS_AGED = 4.0
#: busy windows a member needs before its estimate is used (before that: the pool median).
MIN_WINDOWS = 2
#: weight of the prefill rate (prompt tokens per TTFT-second) against the decode rate (tokens/s per
#: request) in a member's service rate, a geometric blend (docs/policy.md for the choice).
PREFILL_WEIGHT = 1.0
#: the sources a member's neutral can come from.
MEASURED, IMPUTED, KV_CAPACITY, EQUAL = "measured", "imputed", "kv-capacity", "equal"


@dataclass(frozen=True, kw_only=True)
class SpeedEstimate:
    """One member's learned speed and the counter baseline for the next window."""

    at: float
    counters: SpeedCounters  # baseline of the decode window
    running: float = 0.0
    #: baseline of the prefill window, kept apart from the decode one: a member with a few requests a
    #: second crosses MIN_DECODE_TOKENS every tick but MIN_FIRST_TOKENS only every few ticks, and a shared
    #: baseline would throw its first tokens away with each decode window (None: same as `counters`)
    prefill_base: SpeedCounters | None = None
    decode: float | None = None  # generated tokens/s per running request
    prefill: float | None = None  # prompt tokens per second of TTFT
    ttft: float | None = None  # mean time to first token, seconds (decayed mean over prefill windows)
    windows: int = 0  # busy windows that updated the estimate
    prefill_at: float | None = None  # when the prefill window opened (None: `at`)
    decode_span: float = 0.0  # decayed seconds behind `decode` (its weight against a new window)
    prefill_span: float = 0.0  # decayed seconds behind `prefill`
    ttft_span: float = 0.0  # decayed seconds (TTFT_DECAY_S) behind `ttft`
    resets: int = 0  # counter resets seen (engine restarts)
    #: prefill and decode are compute rates (the engine counts the seconds), not per TTFT-second
    timed: bool = False
    mix: float | None = None  # prompt tokens per generated token, over the engine's life (timed only)

    @property
    def ready(self) -> bool:
        return self.windows >= MIN_WINDOWS and (self.decode is not None or self.prefill is not None)


def _ewma(old: float | None, new: float | None, alpha: float) -> float | None:
    if new is None or not math.isfinite(new) or new <= 0:
        return old
    return new if old is None else (1.0 - alpha) * old + alpha * new


def decayed_weight(old_span: float, span: float, alpha: float = ALPHA, decay: float | None = None) -> tuple[float, float]:
    """(weight of a new window, the decayed span behind the estimate after it): the window covers the
    last `span` seconds; the `old_span` seconds the estimate stood for decay by e^(-span/decay) (DECAY_S
    unless given). So every second of the past counts e^(-age/decay). A window of no time falls back to
    `alpha`."""
    if not span > 0:
        return alpha, old_span
    kept = old_span * math.exp(-span / (DECAY_S if decay is None else decay))
    return span / (span + kept), kept + span


def _delta(old: SpeedCounters, new: SpeedCounters, name: str) -> float | None:
    a, b = getattr(old, name), getattr(new, name)
    return None if a is None or b is None else b - a


def _reset(old: SpeedCounters, new: SpeedCounters) -> bool:
    """A cumulative value that went down: the engine restarted (or a rank did)."""
    before = old.values()
    return any(v < before[k] for k, v in new.values().items() if k in before)


def _decode_rate(d: dict[str, float | None], dt: float, running: float, c: SpeedCounters) -> float | None:
    itl_n, itl_s = d["itl_count"], d["itl_sum"]
    if itl_n is not None and itl_s is not None:
        return itl_n / itl_s if itl_n >= MIN_DECODE_TOKENS and itl_s > 0 else None
    gen, gen_s = d["generation_tokens"], d["generation_seconds"]
    if gen is not None and gen_s is not None:
        return gen / gen_s if gen >= MIN_DECODE_TOKENS and gen_s > 0 else None
    if gen is not None and gen >= MIN_DECODE_TOKENS and running > 0 and dt > 0:
        return gen / (dt * running)
    if c.slot_gen_rate is not None and math.isfinite(c.slot_gen_rate) and c.slot_gen_rate > 0:
        return c.slot_gen_rate
    if c.gen_throughput is not None and running > 0 and c.gen_throughput > 0:
        return c.gen_throughput / running
    return None


def _prefill_rate(d: dict[str, float | None], c: SpeedCounters, min_first: float = MIN_FIRST_TOKENS) -> float | None:
    prompt, ttft_n, ttft_s = d["prompt_tokens"], d["ttft_count"], d["ttft_sum"]
    if prompt is not None and ttft_n is not None and ttft_s is not None:
        return prompt / ttft_s if ttft_n >= min_first and prompt > 0 and ttft_s > 0 else None
    prompt_s = d["prompt_seconds"]
    if prompt is not None and prompt_s is not None:
        return prompt / prompt_s if prompt >= MIN_PROMPT_TOKENS and prompt_s > 0 else None
    if c.slot_prompt_rate is not None and math.isfinite(c.slot_prompt_rate) and c.slot_prompt_rate > 0:
        return c.slot_prompt_rate
    return None


def _mean_ttft(d: dict[str, float | None], min_first: float = MIN_FIRST_TOKENS) -> float | None:
    n, total = d["ttft_count"], d["ttft_sum"]
    if n is None or total is None or n < min_first or total <= 0:
        return None
    return total / n


def observe(prev: SpeedEstimate | None, sample: Sample, now: float, alpha: float = ALPHA) -> SpeedEstimate | None:
    """Fold one fresh sample into a member's estimate. None while the member exports no speed signal.

    The decode and prefill windows each keep their own baseline and close on their own: a window with
    too little work (idle, or a slow trickle) is left open and grows until it holds enough."""
    c = sample.counters
    if c is None:
        return prev
    running = sample.running or 0.0
    if prev is None:
        return SpeedEstimate(at=now, counters=c, running=running)
    dt = now - prev.at
    if dt <= 0:
        return prev
    pre_base = prev.prefill_base or prev.counters
    if _reset(prev.counters, c) or _reset(pre_base, c):
        return replace(prev, at=now, counters=c, running=running, prefill_base=None, resets=prev.resets + 1)
    names = ("prompt_tokens", "generation_tokens", "ttft_sum", "ttft_count", "itl_sum", "itl_count",
             "prompt_seconds", "generation_seconds")
    mean_running = (prev.running + running) / 2.0
    decode = _decode_rate({n: _delta(prev.counters, c, n) for n in names}, dt, mean_running, c)
    pd = {n: _delta(pre_base, c, n) for n in names}
    pre_at = prev.at if prev.prefill_at is None else prev.prefill_at
    min_first = MIN_FIRST_TOKENS_AGED if now - pre_at >= DECAY_S else MIN_FIRST_TOKENS
    prefill = _prefill_rate(pd, c, min_first)
    ttft = _mean_ttft(pd, min_first)
    if decode is None and prefill is None:
        return prev
    decode_closed = decode is not None
    a_dec, dec_span = decayed_weight(prev.decode_span, dt, alpha) if decode_closed else (0.0, prev.decode_span)
    a_pre, pre_span = decayed_weight(prev.prefill_span, now - pre_at, alpha) if prefill is not None \
        else (0.0, prev.prefill_span)
    a_ttft, ttft_span = decayed_weight(prev.ttft_span, now - pre_at, alpha, TTFT_DECAY_S) \
        if prefill is not None and ttft is not None else (0.0, prev.ttft_span)
    return replace(
        prev,
        at=now if decode_closed else prev.at,
        counters=c if decode_closed else prev.counters,
        running=running if decode_closed else prev.running,
        prefill_base=c if prefill is not None else pre_base,
        prefill_at=now if prefill is not None else pre_at,
        decode=_ewma(prev.decode, decode, a_dec), prefill=_ewma(prev.prefill, prefill, a_pre),
        ttft=_ewma(prev.ttft, ttft, a_ttft) if prefill is not None else prev.ttft,
        windows=prev.windows + 1, decode_span=dec_span, prefill_span=pre_span, ttft_span=ttft_span,
        timed=c.prompt_seconds is not None and c.generation_seconds is not None,
        mix=_mix(c),
    )


def _mix(c: SpeedCounters) -> float | None:
    """Prompt tokens per generated token since the engine started (compute-timed engines only)."""
    if c.prompt_seconds is None or c.generation_seconds is None or not c.prompt_tokens or not c.generation_tokens:
        return None
    return c.prompt_tokens / c.generation_tokens


def observe_all(prev: Mapping[str, SpeedEstimate | None], samples: Mapping[str, Sample], now: float) -> dict[str, SpeedEstimate]:
    """`observe` for every member with a fresh sample; members without one keep their estimate."""
    out = {k: v for k, v in prev.items() if v is not None}
    for key, sample in samples.items():
        est = observe(prev.get(key), sample, now)
        if est is not None:
            out[key] = est
    return out


@dataclass(frozen=True)
class Neutral:
    """The ratios the loop leaks toward, relative (any scale), and where each one comes from."""

    source: str  # MEASURED, KV_CAPACITY or EQUAL for the pool
    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # per member: MEASURED, IMPUTED, KV_CAPACITY, EQUAL


def service_rates(estimates: Mapping[str, SpeedEstimate], prefill_weight: float | None = None) -> dict[str, float]:
    """Relative service rate of every ready estimate: prefill^w * decode^(1-w), w = PREFILL_WEIGHT.

    A geometric blend: only ratios between members matter, and prefill (prompt tokens per TTFT-second)
    and decode (tokens/s per request) rates differ by orders of magnitude, so a sum would let one
    swamp the other. Only the components every ready member has are used (w becomes 0 or 1), so the
    members are compared on the same footing."""
    w = PREFILL_WEIGHT if prefill_weight is None else prefill_weight
    ready = {k: e for k, e in estimates.items() if e.ready}
    if not ready:
        return {}
    if prefill_weight is None and all(e.timed and e.prefill and e.decode and e.mix for e in ready.values()):
        return _request_rates(ready)
    has_decode = all(e.decode for e in ready.values())
    has_prefill = all(e.prefill for e in ready.values())
    if not (has_decode or has_prefill):
        # no component common to all: compare on the one more members have, leave the others out
        has_decode = sum(1 for e in ready.values() if e.decode) >= sum(1 for e in ready.values() if e.prefill)
        has_prefill = not has_decode
        ready = {k: e for k, e in ready.items() if (e.decode if has_decode else e.prefill)}
    if not has_prefill:
        w = 0.0
    elif not has_decode:
        w = 1.0
    out = {}
    for k, e in ready.items():
        rate = 1.0
        if w > 0:
            rate *= (e.prefill or 0.0) ** w
        if w < 1:
            rate *= (e.decode or 0.0) ** (1.0 - w)
        if rate > 0 and math.isfinite(rate):
            out[k] = rate
    return out


def _request_rates(ready: Mapping[str, SpeedEstimate]) -> dict[str, float]:
    """Requests of the pool's token mix per second (relative), where prefill and decode are compute rates:
    a request of m prompt tokens per generated token costs m/prefill + 1/decode seconds per generated token."""
    mix = statistics.median(e.mix or 0.0 for e in ready.values())
    return {k: 1.0 / (mix / (e.prefill or 1.0) + 1.0 / (e.decode or 1.0)) for k, e in ready.items()}


def ttfts(keys: Iterable[str], estimates: Mapping[str, SpeedEstimate]) -> dict[str, float]:
    """The measured mean time to first token of each of `keys` with a ready estimate."""
    return {k: e.ttft for k in keys if (e := estimates.get(k)) is not None and e.ready and e.ttft}


def neutral(keys: Iterable[str], estimates: Mapping[str, SpeedEstimate], samples: Mapping[str, Sample],
            prefill_weight: float | None = None) -> Neutral:
    """The neutral for the members `keys` (those with fresh samples): measured service rates where any
    member has one (the others get the median, `imputed`); else KV capacity where every member exports
    `kv_max_concurrency`; else equal."""
    keys = list(keys)
    if not keys:
        return Neutral(EQUAL)
    rates = service_rates({k: estimates[k] for k in keys if k in estimates}, prefill_weight)
    if rates:
        mid = statistics.median(rates.values())
        values = {k: rates.get(k, mid) for k in keys}
        return Neutral(MEASURED, values, {k: MEASURED if k in rates else IMPUTED for k in keys})
    caps = {k: samples[k].kv_max_concurrency if k in samples else None for k in keys}
    if all(c and c > 0 for c in caps.values()):
        return Neutral(KV_CAPACITY, {k: float(c or 0.0) for k, c in caps.items()}, dict.fromkeys(keys, KV_CAPACITY))
    return Neutral(EQUAL, dict.fromkeys(keys, 1.0), dict.fromkeys(keys, EQUAL))
