"""Azure trace loading and reshaping, and the capacity estimate used to set benchmark load."""

from __future__ import annotations

import math
import time

import pytest

from controller.sim import trace as tr
from controller.sim.engine import Engine, EngineSpec, Request, preset
from tests.conftest import shared_path


@pytest.fixture
def shared_traces(monkeypatch) -> None:
    """The full Azure traces from ../shared/traces (skipped when absent), pointed at the way the package finds them."""
    monkeypatch.setenv(tr.ENV_DIR, str(shared_path("traces", tr.TRACE_FILES["conv"]).parent))


needs_shared = pytest.mark.usefixtures("shared_traces")


@pytest.fixture(scope="module")
def sample():
    return tr.load_trace("sample")


@needs_shared
def test_full_traces_load_with_their_row_counts():
    conv, code = tr.load_trace("conv"), tr.load_trace("code")
    assert len(conv) == 19_366 and len(code) == 8_819
    for trace in (conv, code):
        assert trace[0].t == 0.0 and all(a.t <= b.t for a, b in zip(trace[:-1], trace[1:], strict=True))
        assert 3_400 < tr.duration(trace) < 3_600  # about an hour each
    assert conv[0] == tr.TraceRequest(0.0, 374, 44)
    assert conv[1].t == pytest.approx(4.3145789) and conv[1].prompt_tokens == 396


@needs_shared
def test_the_sample_is_the_head_of_the_conv_trace(sample):
    assert sample == tr.load_trace("conv")[:2000]


def test_builtin_sample_loads_without_shared(sample, tmp_path, monkeypatch):
    monkeypatch.setenv(tr.ENV_DIR, str(tmp_path))  # shared/ "missing"
    assert len(tr.load_trace("sample")) == 2000 == len(sample)
    assert sample[0] == tr.TraceRequest(0.0, 374, 44) and sample[-1].t == pytest.approx(424.2594604)
    with pytest.raises(tr.TraceNotFoundError, match="F5LR_TRACES_DIR.*sample"):
        tr.load_trace("conv")
    assert (tr.DATA_DIR / "README.md").read_text().count("Splitwise") == 1


def test_env_dir_and_explicit_paths(tmp_path, monkeypatch):
    csv_text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 23:59:59.5000000,10,2\n2023-11-17 00:00:01.0000000,20,3\n"
    (tmp_path / "azure_llm_2023_code.csv").write_text(csv_text)
    monkeypatch.setenv(tr.ENV_DIR, str(tmp_path))
    code = tr.load_trace("code")
    assert code == [tr.TraceRequest(0.0, 10, 2), tr.TraceRequest(1.5, 20, 3)]  # across midnight
    assert tr.load_trace(tmp_path / "azure_llm_2023_code.csv") == code
    with pytest.raises(tr.TraceNotFoundError):
        tr.load_trace(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="TIMESTAMP"):
        tr.load_trace(tmp_path / "bad.csv")


def test_scale_repeat_window(sample):
    rate = tr.mean_rate(sample)
    faster = tr.scale_rate(sample, 2.0)
    assert tr.mean_rate(faster) == pytest.approx(2 * rate) and faster[5].prompt_tokens == sample[5].prompt_tokens
    assert tr.mean_rate(tr.scale_to_rate(sample, 40.0)) == pytest.approx(40.0)
    twice = tr.repeat(sample, 2)
    assert len(twice) == 4000 and all(a.t <= b.t for a, b in zip(twice[:-1], twice[1:], strict=True))
    assert twice[2000].t > sample[-1].t and twice[2000][1:] == sample[0][1:]
    win = tr.window(sample, 100.0, 60.0)
    assert win and win[0].t >= 0.0 and win[-1].t < 60.0
    assert len(win) == sum(1 for r in sample if 100.0 <= r.t < 160.0)
    with pytest.raises(ValueError):
        tr.scale_rate(sample, 0)


def test_capacity_estimate_agrees_with_the_closed_form_and_with_speed(sample):
    a100 = tr.capacity_estimate(EngineSpec(), sample)
    closed = tr.capacity_estimate(EngineSpec(), sample, method="analytic")
    assert 2.0 < a100 < 20.0
    assert abs(a100 - closed) / closed < 0.25
    h100 = tr.capacity_estimate(preset("h100-80g"), sample)
    assert h100 > 1.6 * a100


def test_load_below_capacity_is_served_and_above_it_queues(sample):
    spec = EngineSpec()
    cap = tr.capacity_estimate(spec, sample)

    def replay(load):
        engine = Engine(spec)
        trace = tr.scale_to_rate(sample, load * cap)
        for r in trace:
            engine.submit(tr.to_request(r), r.t)
        return engine, trace

    light, trace = replay(0.5)
    light.advance(trace[-1].t)
    assert light.snapshot().histograms["queue"].mean() < 0.1
    heavy, trace = replay(1.5)
    heavy.advance(trace[-1].t)
    assert heavy.snapshot().waiting > 100


def test_replay_is_fast():
    """Virtual time must be cheap: the benchmark replays hours of traffic over many engines."""
    sample = tr.load_trace("sample")
    specs = [EngineSpec(name=f"e{i}") for i in range(4)]
    cap = sum(tr.capacity_estimate(s, sample) for s in specs)
    trace = [r for r in tr.repeat(tr.scale_to_rate(sample, 0.9 * cap), 10) if r.t < 1200]  # 20 minutes
    engines = [Engine(s, keep_finished=False) for s in specs]
    started = time.process_time()
    for i, r in enumerate(trace):
        for e in engines:
            e.advance(r.t)
        engines[i % 4].submit(Request(r.prompt_tokens, r.output_tokens), r.t)
    for e in engines:
        e.advance(math.inf)
    cpu = time.process_time() - started
    assert sum(e.snapshot().num_finished for e in engines) == len(trace)
    assert len(trace) / cpu > 5_000, f"{len(trace) / cpu:.0f} requests per CPU second"
