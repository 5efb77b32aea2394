"""Simulated /metrics pages: they parse, carry the snapshot's values, and look like the real fixtures."""

from __future__ import annotations

import math
import pathlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.sim import pages
from controller.sim.engine import Engine, EngineSpec, Request
from tests.conftest import shared_path

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def busy():
    """A snapshot mid-run: requests waiting and running, KV partly used, some finished and preempted."""
    spec = EngineSpec(name="gpu1", max_num_seqs=32, kv_capacity_tokens=2000 * 16)
    engine = Engine(spec)
    t = 0.0
    for i in range(300):
        t += 0.02
        engine.submit(Request(200 + (i * 37) % 900, 20 + (i * 53) % 300), t)
    engine.advance(t)
    snap = engine.snapshot()
    assert snap.waiting > 0 and snap.running > 0 and snap.num_finished > 0 and 0 < snap.kv_usage < 1
    return snap


def samples(text):
    """{(sample name, frozenset(labels)): value} and the families, via prometheus_client's parser."""
    fams = list(text_string_to_metric_families(text))
    out = {}
    for fam in fams:
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, {f.name: f for f in fams}


def value(text, name, **labels):
    found = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.mark.parametrize("flavour", pages.FLAVOURS)
def test_every_flavour_parses_and_shows_the_load(busy, flavour):
    text = pages.render(busy, flavour)
    assert text.endswith("\n")
    _, fams = samples(text)
    assert fams
    w, r, kv = {
        "vllm": (("vllm:num_requests_waiting", {"engine": "0"}), ("vllm:num_requests_running", {"engine": "0"}),
                 ("vllm:kv_cache_usage_perc", {"engine": "0"})),
        "vllm-legacy": (("vllm:num_requests_waiting", {}), ("vllm:num_requests_running", {}), ("vllm:gpu_cache_usage_perc", {})),
        "vllm-dp": None,
        "sglang": (("sglang:num_queue_reqs", {}), ("sglang:num_running_reqs", {}), ("sglang:token_usage", {})),
        "trtllm": (("trtllm_num_requests_waiting", {}), ("trtllm_num_requests_running", {}), ("trtllm_kv_cache_utilization", {})),
        "triton": (("nv_trt_llm_request_metrics", {"request_type": "waiting"}),
                   ("nv_trt_llm_request_metrics", {"request_type": "active"}),
                   ("nv_trt_llm_kv_cache_block_metrics", {"kv_cache_block_type": "fraction"})),
        "llamacpp": (("llamacpp:requests_deferred", {}), ("llamacpp:requests_processing", {}), None),
        "tgi": (("tgi_queue_size", {}), ("tgi_batch_current_size", {}), None),
    }[flavour] or (None, None, None)
    if w is None:  # vllm-dp: checked in its own test
        return
    assert value(text, w[0], **w[1]) == busy.waiting
    assert value(text, r[0], **r[1]) == busy.running
    if kv is not None:
        tolerance = 0.005 if flavour == "sglang" else 1e-12  # SGLang rounds token_usage to 2 places
        assert value(text, kv[0], **kv[1]) == pytest.approx(busy.kv_usage, abs=tolerance)


def test_vllm_page_is_the_size_of_a_real_one(busy):
    for snap in (busy, Engine(EngineSpec()).snapshot()):
        size = len(pages.render(snap, "vllm").encode())
        assert 30_000 <= size <= 100_000, size


def test_vllm_counters_and_histograms_match_the_snapshot(busy):
    text = pages.render(busy, "vllm")
    lab = {"engine": "0", "model_name": busy.model_name}
    assert value(text, "vllm:num_preemptions_total", **lab) == busy.num_preemptions
    assert value(text, "vllm:prompt_tokens_total", **lab) == busy.prompt_tokens_total
    assert value(text, "vllm:generation_tokens_total", **lab) == busy.generation_tokens_total
    assert value(text, "vllm:request_success_total", finished_reason="stop", **lab) == busy.request_success["stop"]
    assert value(text, "vllm:request_success_total", finished_reason="abort", **lab) == 0
    for name, key in [("vllm:time_to_first_token_seconds", "ttft"), ("vllm:e2e_request_latency_seconds", "e2e"),
                      ("vllm:request_queue_time_seconds", "queue"), ("vllm:inter_token_latency_seconds", "itl"),
                      ("vllm:time_per_output_token_seconds", "itl"), ("vllm:request_prompt_tokens", "prompt_tokens"),
                      ("vllm:request_generation_tokens", "generation_tokens"), ("vllm:iteration_tokens_total", "iteration_tokens"),
                      ("vllm:request_inference_time_seconds", "inference"), ("vllm:request_prefill_time_seconds", "prefill"),
                      ("vllm:request_decode_time_seconds", "decode")]:
        h = busy.histograms[key]
        assert value(text, name + "_count", **lab) == h.count
        assert value(text, name + "_sum", **lab) == pytest.approx(h.sum)
        buckets = [s for fam in text_string_to_metric_families(text) if fam.name == name for s in fam.samples
                   if s.name == name + "_bucket"]
        assert [float(s.labels["le"]) for s in buckets] == [*h.buckets, math.inf]  # vLLM's real boundaries
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and counts[-1] == h.count and counts[:-1] == h.cumulative()[:-1]
    info = value(text, "vllm:cache_config_info", engine="0", num_gpu_blocks=str(busy.num_gpu_blocks),
                 block_size="16", kv_cache_size_tokens=str(busy.kv_cache_size_tokens))
    assert info == 1.0
    conc = [s.labels["kv_cache_max_concurrency"] for fam in text_string_to_metric_families(text)
            if fam.name == "vllm:cache_config_info" for s in fam.samples]
    assert float(conc[0]) == pytest.approx(busy.kv_cache_max_concurrency, abs=0.05)


def test_vllm_buckets_are_vllms():
    text = pages.render(Engine(EngineSpec()).snapshot(), "vllm")
    les = [s.labels["le"] for fam in text_string_to_metric_families(text) if fam.name == "vllm:time_to_first_token_seconds"
           for s in fam.samples if s.name.endswith("_bucket")]
    assert les[:4] == ["0.001", "0.005", "0.01", "0.02"] and les[-2:] == ["2560.0", "+Inf"]


def test_dp_page_splits_one_snapshot_across_ranks(busy):
    text = pages.render(busy, "vllm-dp", ranks=3)
    waits = [value(text, "vllm:num_requests_waiting", engine=str(i)) for i in range(3)]
    runs = [value(text, "vllm:num_requests_running", engine=str(i)) for i in range(3)]
    assert sum(waits) == busy.waiting and sum(runs) == busy.running and max(waits) - min(waits) <= 1
    for i in range(3):
        assert value(text, "vllm:kv_cache_usage_perc", engine=str(i)) == pytest.approx(busy.kv_usage, abs=0.01)
    total = sum(value(text, "vllm:time_to_first_token_seconds_count", engine=str(i)) for i in range(3))
    assert total == busy.histograms["ttft"].count
    assert "engine=\"3\"" not in text


def test_dp_page_from_one_snapshot_per_rank(busy):
    idle = Engine(EngineSpec()).snapshot()
    text = pages.render([busy, idle], "vllm-dp")
    assert value(text, "vllm:num_requests_waiting", engine="0") == busy.waiting
    assert value(text, "vllm:num_requests_waiting", engine="1") == 0
    assert value(text, "vllm:kv_cache_usage_perc", engine="1") == 0
    with pytest.raises(ValueError):
        pages.render([busy, idle], "vllm")
    with pytest.raises(ValueError):
        pages.render(busy, "vllm-xx")


def test_model_name_override(busy):
    text = pages.render(busy, "vllm", model_name="Qwen/Qwen2.5-Coder-32B-Instruct")
    assert value(text, "vllm:num_requests_waiting", model_name="Qwen/Qwen2.5-Coder-32B-Instruct") == busy.waiting


def test_cpp_servers_print_numbers_like_cpp(busy):
    text = pages.render(Engine(EngineSpec()).snapshot(), "llamacpp")
    assert "llamacpp:predicted_tokens_seconds 0\n" in text  # no work yet: the current server prints 0 (older: nan)
    assert f"llamacpp:requests_deferred {busy.waiting}\n" in pages.render(busy, "llamacpp")
    assert "# HELP" not in pages.render(busy, "tgi")


def test_fault_helpers(busy):
    text = pages.render(busy, "vllm")
    nan = pages.with_load_values(text, "vllm")
    assert math.isnan(value(nan, "vllm:num_requests_waiting"))
    assert value(nan, "vllm:num_preemptions_total") == busy.num_preemptions
    missing = pages.without_load_metrics(text, "vllm")
    names = {fam.name for fam in text_string_to_metric_families(missing)}
    assert not names & {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"}
    assert "vllm:num_requests_waiting_by_reason" in names and "vllm:num_preemptions" in names


# --- the real pages in shared/fixtures/engines ---------------------------------------------------------


FIXTURE_FLAVOURS = [("vllm_0_11_dp2.txt", "vllm-dp"), ("vllm_0_8_legacy.txt", "vllm-legacy"), ("sglang.txt", "sglang"),
                    ("triton_trtllm.txt", "triton"), ("tgi.txt", "tgi"),
                    # llama.cpp as the current server prints it (captured by bench/real); the shared capture is older
                    ("data/llamacpp_real_busy.txt", "llamacpp")]


@pytest.mark.parametrize("fixture,flavour", FIXTURE_FLAVOURS)
def test_pages_carry_every_metric_of_the_real_page(busy, fixture, flavour):
    """Every family of the real page is in ours with the same HELP and TYPE, and every series' label names."""
    real = (DATA.parent / fixture if fixture.startswith("data/") else shared_path("fixtures", "engines", fixture)).read_text()
    ours = pages.render(busy, flavour, ranks=2 if flavour == "vllm-dp" else None)
    _, real_fams = samples(real)
    _, our_fams = samples(ours)
    for name, fam in real_fams.items():
        assert name in our_fams, f"{fixture}: {name} missing"
        assert our_fams[name].type == fam.type, name
        assert our_fams[name].documentation == fam.documentation, name
        our_shapes = {(s.name, frozenset(s.labels) - {"le"}) for s in our_fams[name].samples}
        for s in fam.samples:
            assert (s.name, frozenset(s.labels) - {"le"}) in our_shapes, (fixture, s.name, s.labels)
        our_les = {s.labels.get("le") for s in our_fams[name].samples}
        assert {s.labels.get("le") for s in fam.samples} <= our_les, name
    # and the HELP/TYPE lines are byte-identical
    real_comments = {line for line in real.splitlines() if line.startswith("#")}
    our_comments = set(ours.splitlines())
    assert real_comments <= our_comments, real_comments - our_comments


def test_pages_are_read_by_the_controllers_extractor(busy):
    """Cross-check with controller.engines.specs.extract (the scraper's reader), where it exists."""
    engines = pytest.importorskip("controller.engines.specs")
    for flavour, engine_type in [("vllm", "vllm"), ("vllm-legacy", "vllm"), ("sglang", "sglang"), ("trtllm", "trtllm"),
                                 ("triton", "triton"), ("llamacpp", "llamacpp"), ("tgi", "tgi")]:
        sample = engines.extract(pages.render(busy, flavour), engine_type)
        assert sample.waiting == busy.waiting and sample.running == busy.running, flavour
        if flavour not in ("llamacpp", "tgi"):
            assert sample.kv_usage == pytest.approx(busy.kv_usage, abs=0.005), flavour


def test_llamacpp_page_has_the_real_servers_names(busy):
    """The simulated llama.cpp page carries every series the real server prints (tests/data), so what the
    controller reads from the simulator it also finds on a real engine."""
    real = (DATA / "llamacpp_real_busy.txt").read_text()
    names = lambda text: {f.name for f in text_string_to_metric_families(text)}
    assert names(real) <= names(pages.render(busy, "llamacpp"))
    text = pages.render(busy, "llamacpp")
    assert value(text, "llamacpp:tokens_predicted_seconds_total") > 0
    assert value(text, "llamacpp:prompt_seconds_total") > 0
