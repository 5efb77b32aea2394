"""The simulated engine: vLLM-like continuous batching, KV accounting, preemption, virtual and real time."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.sim.engine import (
    PRESETS,
    Engine,
    EngineSpec,
    RealtimeEngine,
    Request,
    build_1_2_5_buckets,
    preset,
)

TINY = EngineSpec(name="tiny", max_num_seqs=8, kv_capacity_tokens=64 * 16, max_model_len=1024, max_batched_tokens=256)


def run(spec: EngineSpec, workload, *, step: float = 0.0, check: bool = True):
    """Submit (arrival, prompt, output) tuples in order, advancing in `step` slices between arrivals; run dry."""
    engine = Engine(spec)
    reqs = []
    for arrival, prompt, output in workload:
        if step:
            t = engine.t
            while t < arrival:
                t = min(arrival, t + step)
                engine.advance(t)
                if check:
                    engine.check_invariants()
        req = Request(prompt, output)
        assert engine.submit(req, arrival)
        reqs.append(req)
        if check:
            engine.check_invariants()
    engine.advance(math.inf)
    if check:
        engine.check_invariants()
    return engine, reqs


def poisson(seed: int, n: int, rate: float, prompt=(20, 600), output=(1, 300)):
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append((t, rng.randint(*prompt), rng.randint(*output)))
    return out


# --- a naive reference: the same policy, one step at a time, every sequence's length kept explicitly ---------


class Reference:
    """Token-by-token implementation of the scheduling policy, to check the macro-step engine against."""

    def __init__(self, spec: EngineSpec):
        self.spec, self.t, self.B = spec, 0.0, spec.block_size
        self.total, self.used = spec.num_gpu_blocks, 0
        self.waiting: deque = deque()
        self.running: list = []  # dicts in admission order
        self.preemptions = 0

    def blocks(self, tokens):
        return -(-tokens // self.B)

    def submit(self, req, now):
        while (self.running or self.waiting) and self.t < now:
            self.step()
        req.arrival = now
        if not (self.running or self.waiting):
            self.t = max(self.t, now)
        self.waiting.append(req)

    def advance(self, until):
        while (self.running or self.waiting) and self.t <= until:
            self.step()

    def step(self):
        spec, t0 = self.spec, self.t
        decode = lambda: [s for s in self.running if s["left"] == 0]
        need = lambda: sum(1 for s in decode() if s["ctx"] % self.B == 0)
        preempted = False
        while need() > self.total - self.used:
            s = self.running.pop()
            self.used -= self.blocks(s["ctx"]) if s["left"] == 0 else s["res"]
            if s["left"] == 0:
                s["req"].generated = s["ctx"] - s["req"].prompt_tokens
            self.waiting.appendleft(s["req"])
            self.preemptions += 1
            preempted = True
        self.used += need()
        dec = decode()
        budget = spec.max_batched_tokens - len(dec)
        pre = [s for s in self.running if s["left"] > 0]
        for s in pre:
            s["chunk"] = min(s["left"], budget)
            budget -= s["chunk"]
        if not preempted:
            while self.waiting and budget > 0 and len(self.running) < spec.max_num_seqs:
                req = self.waiting[0]
                ctx = req.prompt_tokens + req.generated
                res = self.blocks(ctx + 1)
                if res > self.total - self.used:
                    break
                self.waiting.popleft()
                s = {"req": req, "ctx": ctx, "left": ctx, "res": res, "chunk": min(ctx, budget)}
                budget -= s["chunk"]
                self.used += res
                self.running.append(s)
                pre.append(s)
                if req.first_scheduled is None:
                    req.first_scheduled = t0
        prefill = sum(s["chunk"] for s in pre)
        t1 = t0 + spec.step_seconds(len(dec) + sum(1 for s in pre if s["chunk"]), prefill)
        for s in dec:
            s["ctx"] += 1
            if s["ctx"] - s["req"].prompt_tokens == s["req"].output_tokens:
                self.finish(s, t1, self.blocks(s["ctx"]))
        for s in pre:
            s["left"] -= s["chunk"]
            s["chunk"] = 0
            if s["left"] == 0 and s["chunk"] == 0 and "done_prefill" not in s:
                s["done_prefill"] = True
                s["ctx"] += 1
                if s["req"].first_token is None:
                    s["req"].first_token = t1
                if s["ctx"] - s["req"].prompt_tokens == s["req"].output_tokens:
                    self.finish(s, t1, s["res"])
        self.t = t1

    def finish(self, s, t1, blocks):
        self.running.remove(s)
        self.used -= blocks
        s["req"].finish = t1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spec", [TINY, TINY.with_(kv_capacity_tokens=40 * 16, block_size=16), TINY.with_(block_size=4),
                                  EngineSpec(max_num_seqs=32, max_batched_tokens=512)], ids=["tiny", "tinier", "b4", "mid"])
def test_macro_steps_match_a_step_by_step_reference(spec, seed):
    work = poisson(seed, 120, rate=40.0, prompt=(10, 400), output=(1, 200))
    engine, reqs = run(spec, work, check=False)
    ref = Reference(spec)
    ref_reqs = []
    for arrival, prompt, output in work:
        r = Request(prompt, output)
        ref.submit(r, arrival)
        ref_reqs.append(r)
    ref.advance(math.inf)
    assert engine.num_preemptions == ref.preemptions
    for a, b in zip(reqs, ref_reqs, strict=True):
        assert a.first_scheduled == pytest.approx(b.first_scheduled, abs=1e-9)
        assert a.first_token == pytest.approx(b.first_token, abs=1e-9)
        assert a.finish == pytest.approx(b.finish, abs=1e-9)


# --- invariants -----------------------------------------------------------------------------------------------


@settings(max_examples=min(40, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    max_num_seqs=st.integers(1, 12),
    kv_blocks=st.integers(8, 200),
    block_size=st.sampled_from([1, 4, 16]),
    budget=st.integers(16, 600),
    n=st.integers(1, 60),
    slice_s=st.sampled_from([0.0, 0.003, 0.05]),
)
def test_invariants_hold_and_every_request_finishes(seed, max_num_seqs, kv_blocks, block_size, budget, n, slice_s):
    kv_tokens = kv_blocks * block_size
    spec = EngineSpec(max_num_seqs=max_num_seqs, kv_capacity_tokens=kv_tokens, block_size=block_size,
                      max_model_len=max(2, kv_tokens), max_batched_tokens=max(budget, max_num_seqs))
    rng = random.Random(seed)
    work, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(30.0)
        total = rng.randint(2, min(spec.max_model_len, kv_tokens))
        prompt = rng.randint(1, total - 1)
        work.append((t, prompt, total - prompt))
    engine, reqs = run(spec, work, step=slice_s)
    snap = engine.snapshot()
    assert snap.waiting == snap.running == 0 and snap.kv_used_blocks == 0
    assert snap.num_finished == n == snap.histograms["e2e"].count
    for r in reqs:
        assert r.done and r.generated == r.output_tokens
        assert r.arrival <= r.first_scheduled < r.first_token <= r.finish
        assert r.ttft >= r.queue_time
    assert snap.generation_tokens_total == sum(r.output_tokens for r in reqs)
    assert snap.prompt_tokens_total == sum(r.prompt_tokens for r in reqs)


def test_running_never_exceeds_max_num_seqs_and_queue_is_fifo():
    spec = EngineSpec(max_num_seqs=4)
    engine = Engine(spec)
    reqs = [Request(100, 50) for _ in range(10)]
    for r in reqs:
        engine.submit(r, 0.0)
    engine.advance(0.0)
    snap = engine.snapshot()
    assert (snap.running, snap.waiting) == (4, 6)
    engine.advance(math.inf)
    starts = [r.first_scheduled for r in reqs]
    assert starts == sorted(starts)


def test_single_request_timing_is_exact():
    spec = EngineSpec()
    engine = Engine(spec)
    req = Request(1000, 10)
    engine.submit(req, 5.0)
    engine.advance(math.inf)
    prefill = spec.step_seconds(1, 1000)
    assert req.first_scheduled == 5.0
    assert req.ttft == pytest.approx(prefill)
    assert req.e2e == pytest.approx(prefill + 9 * spec.step_seconds(1))
    assert req.tpot == pytest.approx(spec.step_seconds(1))


def test_long_prompts_are_prefilled_in_chunks():
    spec = EngineSpec(max_model_len=32_768, max_batched_tokens=8192)
    engine = Engine(spec)
    req = Request(20_000, 2)
    engine.submit(req, 0.0)
    engine.advance(math.inf)
    chunks = spec.step_seconds(1, 8192) * 2 + spec.step_seconds(1, 20_000 - 2 * 8192)
    assert req.ttft == pytest.approx(chunks)
    assert engine.snapshot().histograms["iteration_tokens"].count == 4  # 3 prefill chunks and 1 decode step


def test_kv_usage_is_blocks_of_prompt_plus_generated():
    spec = EngineSpec(block_size=16)
    engine = Engine(spec)
    engine.submit(Request(100, 1000), 0.0)
    engine.advance(0.0)  # the prefill step: 100 tokens + the first output token = 7 blocks
    assert engine.snapshot().kv_used_blocks == 7
    engine.advance(engine.t + 12 * spec.step_seconds(1) - 1e-9)  # 12 more steps: 113 tokens = 8 blocks
    snap = engine.snapshot()
    assert snap.kv_used_blocks == 8
    assert snap.kv_usage == pytest.approx(8 / spec.num_gpu_blocks)


def test_preemption_when_kv_is_tiny_and_requests_resume():
    spec = EngineSpec(max_num_seqs=16, kv_capacity_tokens=40 * 16, max_model_len=640)
    engine, reqs = run(spec, [(0.0, 120, 300)] * 6)
    assert engine.num_preemptions > 0
    assert any(r.num_preemptions for r in reqs)
    assert all(r.done and r.generated == 300 for r in reqs)
    # a preempted request recomputes: it is prefilled again and keeps its first TTFT
    victim = next(r for r in reqs if r.num_preemptions)
    assert victim.first_token < victim.finish
    assert engine.snapshot().num_preemptions == engine.num_preemptions


def test_requests_that_can_never_fit_are_rejected():
    spec = EngineSpec(max_model_len=2048)
    engine = Engine(spec)
    req = Request(2000, 100)
    assert engine.submit(req, 0.0) is False
    assert req.rejected and engine.snapshot().num_rejected == 1 and not engine.busy
    assert engine.submit(Request(0, 10), 0.0) is False


def test_faster_engine_has_lower_ttft():
    work = poisson(3, 400, rate=6.0, prompt=(200, 3000), output=(20, 400))
    slow, _ = run(EngineSpec(speed=1.0), work, check=False)
    fast, _ = run(EngineSpec(speed=2.0), work, check=False)
    assert fast.snapshot().histograms["ttft"].mean() < slow.snapshot().histograms["ttft"].mean()
    assert fast.snapshot().histograms["e2e"].mean() < slow.snapshot().histograms["e2e"].mean()


def test_step_time_grows_with_batch_size():
    spec = EngineSpec()
    assert spec.step_seconds(64) > spec.step_seconds(8) > spec.step_seconds(1)
    assert 0.020 <= spec.step_seconds(64) <= 0.030  # ~20-30 ms at batch 64 (docs/engine-model.md)
    alone, _ = run(spec, [(0.0, 100, 200)])
    crowd, _ = run(spec, [(0.0, 100, 200)] * 64)
    assert crowd.snapshot().histograms["itl"].mean() > 1.5 * alone.snapshot().histograms["itl"].mean()


def test_virtual_time_is_deterministic():
    work = poisson(11, 300, rate=8.0)
    a, ra = run(TINY.with_(kv_capacity_tokens=200 * 16), work, step=0.01, check=False)
    b, rb = run(TINY.with_(kv_capacity_tokens=200 * 16), work, step=0.01, check=False)
    assert a.snapshot() == b.snapshot()
    assert [(r.first_token, r.finish, r.num_preemptions) for r in ra] == [(r.first_token, r.finish, r.num_preemptions) for r in rb]


def test_advance_runs_steps_that_start_by_until():
    spec = EngineSpec()
    engine = Engine(spec)
    engine.submit(Request(10, 100), 0.0)
    assert engine.next_event_time() == 0.0
    engine.advance(0.5)
    d = spec.step_seconds(1)
    assert 0.5 < engine.t <= 0.5 + d + 1e-12
    assert engine.next_event_time() == engine.t
    engine.advance(math.inf)
    assert engine.next_event_time() == math.inf
    # arriving at an idle engine starts work at the arrival, not at the last step's end
    req = Request(10, 1)
    engine.submit(req, 100.0)
    engine.advance(100.0)
    assert req.first_scheduled == 100.0


def test_on_finish_callback_and_drain():
    seen = []
    engine = Engine(EngineSpec(), on_finish=seen.append)
    reqs = [Request(50, 5) for _ in range(3)]
    for r in reqs:
        engine.submit(r, 0.0)
    engine.advance(math.inf)
    assert seen == engine.drain_finished() and set(map(id, seen)) == set(map(id, reqs))
    assert engine.drain_finished() == []


def test_snapshot_counters_and_cache_figures():
    spec = EngineSpec(kv_capacity_tokens=172_544, max_model_len=4096)
    assert spec.num_gpu_blocks == 10_784 and spec.kv_cache_max_concurrency == pytest.approx(42.125)
    engine, reqs = run(spec, [(0.0, 300, 40), (0.1, 200, 1)])
    snap = engine.snapshot()
    assert snap.request_success == {"stop": 2}
    assert snap.histograms["prompt_tokens"].sum == 500 and snap.histograms["ttft"].count == 2
    assert snap.histograms["request_tpot"].count == 1  # one-token requests have no TPOT
    assert snap.histograms["prompt_tokens"].buckets == tuple(float(b) for b in build_1_2_5_buckets(4096))
    assert build_1_2_5_buckets(100) == (1, 2, 5, 10, 20, 50, 100)


def test_presets_and_spec_validation():
    h100 = preset("h100-80g")
    assert h100.prefill_speed == pytest.approx(3.17, abs=0.01) and h100.decode_speed == pytest.approx(1.64, abs=0.01)
    assert h100.kv_capacity_tokens == preset("a100-80g").kv_capacity_tokens  # KV follows memory, not speed
    assert preset("a100-40g", name="x").name == "x"
    assert set(PRESETS) >= {"a100-40g", "h100-80g"}
    with pytest.raises(ValueError):
        preset("tpu")
    with pytest.raises(ValueError):
        EngineSpec(max_batched_tokens=16, max_num_seqs=256)
    with pytest.raises(ValueError):
        EngineSpec(speed=0)


# --- real time ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_realtime_engine_advances_with_the_clock():
    clock = Clock()
    done = []
    rt = RealtimeEngine(Engine(EngineSpec()), clock=clock, on_finish=done.append)
    req = Request(500, 20)
    assert rt.submit(req)
    assert req.arrival == 1000.0
    snap = rt.snapshot()
    assert snap.running == 1 and not done
    clock.now += 0.05
    rt.tick()
    assert not req.done
    clock.now += 1.0
    rt.tick()
    assert req.done and done == [req] and rt.drain_finished() == [req]
    assert rt.snapshot().running == 0 and 1000.0 < req.finish <= 1001.05


def test_realtime_thread_finishes_requests_on_its_own():
    rt = RealtimeEngine(Engine(EngineSpec(speed=20.0)), interval=0.005)
    finished = threading.Event()
    rt.on_finish = lambda r: finished.set()
    with rt:
        rt.submit(Request(100, 20))
        assert finished.wait(5.0)
    assert rt.engine.snapshot().num_finished == 1


def test_realtime_submit_is_thread_safe():
    rt = RealtimeEngine(Engine(EngineSpec(speed=50.0)), interval=0.002).start()
    try:
        def client():
            for _ in range(25):
                rt.submit(Request(50, 5))
        threads = [threading.Thread(target=client) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        deadline = time.monotonic() + 5
        while rt.snapshot().num_finished < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rt.snapshot().num_finished == 100
        rt.engine.check_invariants()
    finally:
        rt.stop()


def test_prefill_and_decode_speeds_scale_their_own_part_of_a_step():
    spec = EngineSpec(prefill_speed=3.0, decode_speed=1.5)
    ref = EngineSpec()
    decode_only, prefill_only = ref.step_seconds(10), ref.step_seconds(10, 4000) - ref.step_seconds(10)
    assert spec.step_seconds(10) == pytest.approx(decode_only / 1.5)
    assert spec.step_seconds(10, 4000) == pytest.approx(decode_only / 1.5 + prefill_only / 3.0)


def test_step_noise_varies_step_times_with_mean_one_and_is_seeded():
    def tpots(seed):
        engine = Engine(EngineSpec(step_noise=0.2, noise_seed=seed))
        for i in range(40):
            engine.submit(Request(200, 60), 0.0 + i * 0.05)
        engine.advance(math.inf)
        return [r.tpot for r in engine.finished]
    a, b, c = tpots(1), tpots(1), tpots(2)
    assert a == b and a != c
    quiet = Engine(EngineSpec())
    for i in range(40):
        quiet.submit(Request(200, 60), 0.0 + i * 0.05)
    quiet.advance(math.inf)
    mean_noisy, mean_quiet = sum(a) / len(a), sum(r.tpot for r in quiet.finished) / 40
    assert mean_noisy == pytest.approx(mean_quiet, rel=0.1)
    with pytest.raises(ValueError):
        EngineSpec(step_noise=2.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_looking_at_a_noisy_engine_does_not_change_what_it_does(seed):
    """A scrape advances the engine to the scrape time, cutting a run of decode steps in two. The cut
    run must go on with the same noise draw: otherwise a benchmark contender that scrapes every tick
    (the controller) would see other engines than one that does not (least-connections)."""
    spec = EngineSpec(max_num_seqs=16, step_noise=0.2, noise_seed=seed)
    work = poisson(seed, 200, 6.0)
    plain, plain_reqs = run(spec, work, check=False)
    looked, looked_reqs = run(spec, work, step=0.37, check=False)
    assert [r.first_token for r in looked_reqs] == pytest.approx([r.first_token for r in plain_reqs], abs=1e-9)
    assert looked.t == pytest.approx(plain.t, abs=1e-9)
    assert looked.generation_tokens_total == plain.generation_tokens_total
