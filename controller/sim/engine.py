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
from collections import deque
from collections.abc import Callable, Sequence

from controller.sim.enginedata import (
    HISTOGRAMS,
    ITERATION_TOKEN_BUCKETS,
    PRESETS,
    REQUEST_LATENCY_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    EngineSnapshot,
    EngineSpec,
    Histogram,
    HistogramData,
    Request,
    _stamped,
    build_1_2_5_buckets,
    preset,
)

#: The simulator's one import point: the engines and, re-exported, the data they are described by.
__all__ = [
    "HISTOGRAMS", "ITERATION_TOKEN_BUCKETS", "PRESETS", "REQUEST_LATENCY_BUCKETS", "TPOT_BUCKETS", "TTFT_BUCKETS",
    "Engine", "EngineSnapshot", "EngineSpec", "Histogram", "HistogramData", "RealtimeEngine", "Request",
    "build_1_2_5_buckets", "preset",
]

# --- the engine -------------------------------------------------------------------------------------


class _Seq:
    """A running sequence. While decoding, its length is derived from the engine's decode-step count."""

    __slots__ = ("req", "order", "alive", "decoding", "prefill_left", "blocks", "chunk", "ctx0", "g0", "G0", "key", "fin")

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
        self.fin = 0  # the decode-step count at which it finishes (while decoding)


class _DecodeSet:
    """KV accounting of the decoding sequences in O(block_size), not O(running).

    Every decoding sequence grows by one token a step, so which of them need a new block at a given step
    depends only on its phase (length mod block_size): `cnt` counts the sequences per phase, `G` the
    decode steps run, and a heap of (finish step count, order, seq) gives the next finish in O(log n).
    """

    def __init__(self, block_size: int):
        self.B = block_size
        self.G = 0  # decode steps run so far
        self.cnt = [0] * block_size  # sequences per phase: a sequence with key k needs a block when G % B == k
        self.n = 0  # sequences decoding
        self.fin_sum = 0  # sum over the decode set of the decode-step count at which each finishes
        self.heap: list[tuple[int, int, _Seq]] = []

    def growth_now(self) -> int:
        """Blocks the decode set needs for the next step."""
        return self.cnt[self.G % self.B] if self.n else 0

    def growth(self, k: int, n: int) -> int:
        """Blocks the decode set needs over the next k steps: n per full cycle of B steps, plus the phases hit."""
        B, cnt = self.B, self.cnt
        q, r = divmod(k, B)
        total = q * n
        s = self.G % B
        for j in range(r):
            total += cnt[(s + j) % B]
        return total

    def kv_limit(self, k: int, n: int, free: int) -> int:
        """The largest k' <= k whose KV growth fits in `free` blocks (>= 1: the caller checked one step fits)."""
        B = self.B
        if n * (-(-k // B)) <= free:  # cheap upper bound on the growth
            return k
        q, rem = divmod(free, n)
        cnt, s, m, acc = self.cnt, self.G % B, 0, 0
        while m < B:
            c = cnt[(s + m) % B]
            if acc + c > rem:
                break
            acc += c
            m += 1
        return min(k, q * B + m)

    def next_finish(self) -> int:
        """The decode-step count at which the next sequence finishes."""
        heap = self.heap
        while not heap[0][2].alive:
            heapq.heappop(heap)
        return heap[0][0]

    def blocks(self, seq: _Seq) -> int:
        """The blocks a decoding sequence holds now."""
        return -(-(seq.ctx0 + self.G - seq.G0) // self.B)

    def join(self, seq: _Seq) -> None:
        req = seq.req
        seq.decoding = True
        seq.g0 = req.generated
        seq.ctx0 = req.prompt_tokens + req.generated
        seq.G0 = self.G
        seq.key = (seq.G0 - seq.ctx0) % self.B
        self.cnt[seq.key] += 1
        self.n += 1
        seq.fin = seq.G0 + req.output_tokens - req.generated
        self.fin_sum += seq.fin
        heapq.heappush(self.heap, (seq.fin, seq.order, seq))

    def check(self, decoding: Sequence[_Seq]) -> None:
        """The counts agree with the sequences decoding (tests)."""
        assert self.n == sum(self.cnt) == len(decoding)
        assert self.fin_sum == sum(s.fin for s in decoding)

    def leave(self, seq: _Seq) -> int:
        """Take seq out of the decode set; returns the blocks it held and brings req.generated up to date."""
        seq.alive = False  # its heap entry is dropped lazily
        self.cnt[seq.key] -= 1
        self.n -= 1
        self.fin_sum -= seq.fin
        ctx = seq.ctx0 + self.G - seq.G0
        seq.req.generated = seq.g0 + self.G - seq.G0
        return -(-ctx // self.B)


class _WaitQueue:
    """The FCFS queue of requests waiting to be admitted, with the tokens (prompt, plus what was generated
    before a preemption) and the KV blocks they need to be admitted: admission and predict_ttft read them."""

    def __init__(self, block_size: int):
        self.reqs: deque[Request] = deque()
        self.tokens = 0
        self.blocks = 0
        self._B = block_size

    def append(self, req: Request) -> None:
        self.reqs.append(req)
        self._count(req, 1)

    def appendleft(self, req: Request) -> None:
        self.reqs.appendleft(req)
        self._count(req, 1)

    def popleft(self) -> Request:
        req = self.reqs.popleft()
        self._count(req, -1)
        return req

    def _count(self, req: Request, sign: int) -> None:
        ctx = req.prompt_tokens + req.generated
        self.tokens += sign * ctx
        self.blocks += sign * -(-(ctx + 1) // self._B)


class _StepNoise:
    """Per-step time factors: lognormal with mean 1 and coefficient of variation spec.step_noise (1.0
    without noise), from the spec's seed."""

    def __init__(self, spec: EngineSpec):
        self._cv = spec.step_noise
        self._rng = random.Random(spec.noise_seed) if spec.step_noise > 0 else None
        # the noise factor of a decode run cut short only by `until` (an observer or an arrival elsewhere):
        # the run goes on with it, so looking at the engine does not change what it does
        self.carry: float | None = None

    def factor(self) -> float:
        if self._rng is None:
            return 1.0
        sigma = math.sqrt(math.log1p(self._cv**2))
        return math.exp(self._rng.gauss(-sigma * sigma / 2.0, sigma))


class EngineStats:
    """An engine's metrics page: the counters and histograms over its life that its /metrics page shows
    (`Engine.snapshot`), and the generation throughput from two checkpoints about a second apart."""

    def __init__(self, max_model_len: int, t0: float):
        self.hist = {
            "ttft": Histogram(TTFT_BUCKETS),
            "itl": Histogram(TPOT_BUCKETS),
            "request_tpot": Histogram(TPOT_BUCKETS),
            "e2e": Histogram(REQUEST_LATENCY_BUCKETS),
            "queue": Histogram(REQUEST_LATENCY_BUCKETS),
            "inference": Histogram(REQUEST_LATENCY_BUCKETS),
            "prefill": Histogram(REQUEST_LATENCY_BUCKETS),
            "decode": Histogram(REQUEST_LATENCY_BUCKETS),
            "prompt_tokens": Histogram(build_1_2_5_buckets(max_model_len)),
            "generation_tokens": Histogram(build_1_2_5_buckets(max_model_len)),
            "iteration_tokens": Histogram(ITERATION_TOKEN_BUCKETS),
        }
        self.success: dict[str, int] = {}
        self.num_preemptions = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.num_submitted = 0
        self.num_rejected = 0
        self.num_steps = 0
        self.busy_seconds = 0.0
        self.last_step_seconds = 0.0
        # two checkpoints (time, generation tokens) about a second apart, for gen_throughput
        self._ckpt_prev = (t0, 0)
        self._ckpt = (t0, 0)

    def steps(self, t1: float, dur: float, n_decode: int, k: int, prefill_tokens: int) -> None:
        """k steps of `dur` seconds each, ending at t1."""
        self.num_steps += k
        self.busy_seconds += dur * k
        self.last_step_seconds = dur
        self.hist["iteration_tokens"].observe(n_decode + prefill_tokens, k)
        if t1 - self._ckpt[0] >= 1.0:  # rotate the throughput checkpoints about once a second
            self._ckpt_prev = self._ckpt
            self._ckpt = (t1, self.generation_tokens_total)

    def gen_throughput(self, t: float) -> float:
        t_prev, g_prev = self._ckpt_prev
        dt = t - t_prev
        return (self.generation_tokens_total - g_prev) / dt if dt > 0 else 0.0

    def snapshot(self, spec: EngineSpec, t: float, *, waiting: int, running: int, prefilling: int,
                 used: int) -> EngineSnapshot:
        """The engine as its /metrics page shows it at engine time t, with `used` of its KV blocks in use."""
        total = spec.num_gpu_blocks
        return EngineSnapshot(
            name=spec.name, model_name=spec.model_name, t=t,
            waiting=waiting, running=running, prefilling=prefilling,
            kv_usage=used / total, kv_used_blocks=used, num_gpu_blocks=total,
            block_size=spec.block_size, max_num_seqs=spec.max_num_seqs, max_model_len=spec.max_model_len,
            max_batched_tokens=spec.max_batched_tokens, kv_cache_max_concurrency=spec.kv_cache_max_concurrency,
            num_preemptions=self.num_preemptions, prompt_tokens_total=self.prompt_tokens_total,
            generation_tokens_total=self.generation_tokens_total, request_success=dict(self.success),
            num_submitted=self.num_submitted, num_rejected=self.num_rejected, num_steps=self.num_steps,
            busy_seconds=self.busy_seconds, last_step_seconds=self.last_step_seconds,
            gen_throughput=self.gen_throughput(t),
            histograms={k: h.data() for k, h in self.hist.items()},
        )

    def finished(self, req: Request, t1: float) -> None:
        h = self.hist
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
        self.success[req.finished_reason] = self.success.get(req.finished_reason, 0) + 1


class Engine:
    """One simulated engine. Drive it with `submit(req, now)` and `advance(until)`; read `snapshot()`.

    `advance(until)` runs every whole step that starts at or before `until`, so the engine clock `t`
    may end up to one step past `until` (a request submitted meanwhile waits for the next step, as in
    a real engine). Finished requests carry exact finish times; they are appended to `finished` and
    passed to `on_finish`, possibly up to one step before the driver's clock reaches that time.
    Not thread-safe: `RealtimeEngine` adds the lock.

    The batch scheduler is here; the decode set's KV accounting is a `_DecodeSet`, the metrics page an
    `EngineStats` (`stats`: the counters, e.g. `stats.num_steps`; `num_preemptions` and
    `generation_tokens_total` also read as attributes of the engine).
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
        self._queue = _WaitQueue(B)
        self._waiting = self._queue.reqs  # read directly on the hot path; changed through _queue
        self._running: dict[int, _Seq] = {}  # admission order; popitem() gives the newest (preemption victim)
        self._prefilling: dict[int, _Seq] = {}
        self._order = itertools.count()
        self._dec = _DecodeSet(B)
        self._noise = _StepNoise(self.spec)
        self.stats = EngineStats(self.spec.max_model_len, self.t)

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

    @property
    def num_preemptions(self) -> int:
        return self.stats.num_preemptions

    @property
    def generation_tokens_total(self) -> int:
        return self.stats.generation_tokens_total

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
        self.stats.num_submitted += 1
        if not self.fits(req.prompt_tokens, req.output_tokens):
            req.rejected = True
            self.stats.num_rejected += 1
            return False
        if not self.busy:
            self.t = max(self.t, now)  # an idle engine starts its next step when work arrives
        self._queue.append(req)
        return True

    def predict_ttft(self, prompt_tokens: int) -> float:
        """Seconds until a request of `prompt_tokens` submitted now would get its first token, predicted
        from the engine's exact state: what the benchmark's per-request reference dispatcher knows, and no
        load balancer or controller can (prompt sizes in the queue, prefill backlog, KV blocks).

        Two parts: the wait for a seat (free KV blocks and a slot under `max_num_seqs` for the queue ahead
        and this request; while short, running sequences finish at about n / (2 x mean remaining decode
        steps) per step), then the prefill work ahead of it (the queue's prompts, unfinished prefill chunks,
        its own prompt) in chunks of the step budget left by the decoding sequences. O(1)."""
        spec, B = self.spec, self._B
        n_run, n_dec, waiting = len(self._running), self._dec.n, len(self._waiting)
        ahead = self._queue.tokens + prompt_tokens + sum(s.prefill_left for s in self._prefilling.values())
        chunk = max(1, spec.max_batched_tokens - n_dec)
        batch = min(spec.max_num_seqs, n_run + waiting + 1)
        prefill = math.ceil(ahead / chunk) * spec.step_seconds(batch, min(chunk, ahead))
        need_blocks = self._queue.blocks + -(-(prompt_tokens + 1) // B)
        short_blocks = max(0, need_blocks - self._free())
        short_seats = max(0, waiting + 1 - (spec.max_num_seqs - n_run))
        if not (short_blocks or short_seats) or not n_dec:
            return prefill
        per_seq_blocks = max(1.0, self._used / max(1, n_run))
        short = max(short_seats, math.ceil(short_blocks / per_seq_blocks))
        remaining = max(1.0, (self._dec.fin_sum - n_dec * self._dec.G) / n_dec)  # mean decode steps left
        steps = short * 2.0 * remaining / n_dec
        return prefill + min(steps, 2.0 * remaining) * spec.step_seconds(n_dec)

    def next_event_time(self) -> float:
        """When the next step starts, or +inf when idle (nothing happens until a submit)."""
        return self.t if self.busy else math.inf

    def advance(self, until: float) -> None:
        """Run every step that starts at or before `until`."""
        self._advance(until, strict=False)

    def _advance(self, until: float, strict: bool) -> None:
        while (self._running or self._waiting) and (self.t < until if strict else self.t <= until):
            if self._prefilling or self._dec.growth_now() > self._free() or self._can_admit_head():
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
        return self.stats.snapshot(self.spec, self.t, waiting=len(self._waiting), running=len(self._running),
                                   prefilling=len(self._prefilling), used=self._used)

    def check_invariants(self) -> None:
        """Recompute KV use from scratch and check the scheduler's limits (tests; O(running))."""
        used = 0
        for seq in self._running.values():
            used += self._seq_blocks(seq)
        assert used == self._used, f"KV accounting drifted: {used} != {self._used}"
        assert 0 <= self._used <= self._total, "KV use out of range"
        assert len(self._running) <= self.spec.max_num_seqs, "too many running sequences"
        self._dec.check([s for s in self._running.values() if s.decoding])
        assert set(self._prefilling) == {o for o, s in self._running.items() if not s.decoding}
        assert self._queue.tokens == sum(r.prompt_tokens + r.generated for r in self._waiting)

    # -- scheduling internals --

    def _free(self) -> int:
        return self._total - self._used

    def _can_admit_head(self) -> bool:
        if not self._waiting or len(self._running) >= self.spec.max_num_seqs:
            return False
        req = self._waiting[0]
        need = -(-(req.prompt_tokens + req.generated + 1) // self._B)
        return need <= self._free() - self._dec.growth_now()

    def _seq_blocks(self, seq: _Seq) -> int:
        return self._dec.blocks(seq) if seq.decoding else seq.blocks

    def _general_step(self) -> None:
        """One step with prefill work, admissions or a preemption: O(prefilling + admitted + finished)."""
        spec, B, t0, dec = self.spec, self._B, self.t, self._dec
        self._noise.carry = None
        preempted = False
        while dec.growth_now() > self._free():
            self._preempt_newest(t0)
            preempted = True
        n_decode = dec.n
        self._used += dec.growth_now()
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
                self._queue.popleft()
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
        dur = spec.step_seconds(n_decode + n_prefill, prefill_tokens) * self._noise.factor()
        t1 = t0 + dur
        self.stats.steps(t1, dur, n_decode, 1, prefill_tokens)
        self.t = t1
        if n_decode:
            dec.G += 1
            self.stats.generation_tokens_total += n_decode
            self.stats.hist["itl"].observe(dur, n_decode)
            self._pop_finished_decodes(t1)
        for seq in [s for s in self._prefilling.values() if s.chunk]:
            seq.prefill_left -= seq.chunk
            seq.chunk = 0
            if seq.prefill_left == 0:
                self._prefill_done(seq, t1)

    def _decode_run(self, until: float, strict: bool) -> None:
        """k identical decode-only steps at once, stopping at the next finish, KV limit or `until`."""
        dec = self._dec
        n = dec.n
        noise = self._noise
        factor = noise.carry if noise.carry is not None else noise.factor()  # one draw per run of identical steps
        d = self.spec.step_seconds(n, 0) * factor
        k_until = _steps_starting_by(self.t, until, d, strict)
        k_finish = dec.next_finish() - dec.G
        k = dec.kv_limit(min(k_until, k_finish), n, self._free())
        noise.carry = factor if k == k_until < k_finish and until != math.inf else None
        self._used += dec.growth(k, n)
        dec.G += k
        t1 = self.t + k * d
        self.stats.steps(t1, d, n, k, 0)
        self.t = t1
        self.stats.generation_tokens_total += n * k
        self.stats.hist["itl"].observe(d, n * k)
        self._pop_finished_decodes(t1)

    def _prefill_done(self, seq: _Seq, t1: float) -> None:
        """The step that finished a prefill also sampled a token: the first one (TTFT) or, after a preemption, the next."""
        req, st = seq.req, self.stats
        del self._prefilling[seq.order]
        req.generated += 1
        st.generation_tokens_total += 1
        if req.first_token is None:
            req.first_token = t1
            st.prompt_tokens_total += req.prompt_tokens
            st.hist["ttft"].observe(t1 - _stamped(req.arrival))
        else:
            st.hist["itl"].observe(t1 - (req.last_token if req.last_token is not None else req.first_token))
        if req.generated >= req.output_tokens:
            self._finish(seq, t1, seq.blocks)
        else:
            self._dec.join(seq)

    def _pop_finished_decodes(self, t1: float) -> None:
        dec = self._dec
        heap, G = dec.heap, dec.G
        while heap and (heap[0][0] <= G or not heap[0][2].alive):
            _, _, seq = heapq.heappop(heap)
            if seq.alive:
                self._finish(seq, t1, dec.leave(seq))

    def _preempt_newest(self, t: float) -> None:
        """Recompute preemption of the most recently admitted sequence: free its KV, requeue it first."""
        _, seq = self._running.popitem()
        req = seq.req
        if seq.decoding:
            blocks = self._dec.leave(seq)
            req.last_token = t  # its last token came out at the end of the previous step
        else:
            del self._prefilling[seq.order]
            seq.alive = False
            blocks = seq.blocks
        self._used -= blocks
        self._queue.appendleft(req)
        self.stats.num_preemptions += 1
        req.num_preemptions += 1

    def _finish(self, seq: _Seq, t1: float, blocks: int) -> None:
        req = seq.req
        seq.alive = False
        self._running.pop(seq.order, None)
        self._used -= blocks
        req.generated = req.output_tokens
        req.finish = t1
        self.stats.finished(req, t1)
        if self.keep_finished:
            self.finished.append(req)
        if self.on_finish is not None:
            self.on_finish(req)


def _steps_starting_by(t: float, until: float, d: float, strict: bool) -> int:
    """How many steps of length d, the first starting at t, start at or before `until` (before it, if strict);
    >= 1 here."""
    if until == math.inf:
        return 1 << 62
    if strict:
        return max(1, math.ceil((until - t) / d))
    return int((until - t) // d) + 1


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

    def __exit__(self, *exc: object) -> None:
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
