"""engines.extract / detect on every fixture, custom keys, data-parallel rules and bad pages."""

from __future__ import annotations

import re

import pytest

from controller.config.schema import ENGINE_TYPES, EngineKeys
from controller.engines import exposition
from controller.engines.specs import FLAVOURS, SPECS, default_path, detect, extract, parse_key, speed_counters
from controller.errors import MetricsError
from tests.conftest import ENGINE_PAGES, engine_page_text, shared_path


def fixture(name: str) -> str:
    return engine_page_text(name)


# fixture, engine type, waiting, running, kv, ranks, kv_max_concurrency, flavour
TABLE = [
    ("vllm_0_11_dp2", "vllm", 12, 39, 0.9375, 2, 84.2, "vllm"),
    ("vllm_0_8_legacy", "vllm", 2, 5, 0.4312, 1, None, "vllm-legacy"),
    ("sglang", "sglang", 2826, 162, 0.28, 1, None, "sglang"),
    ("triton_trtllm", "triton", 1, 1, 0.4875, 1, None, "triton"),  # running: request_type="scheduled"
    ("llamacpp", "llamacpp", 9, 4, None, 1, None, "llamacpp"),  # its `nan` is in a metric not read
    ("tgi", "tgi", 7, 32, None, 1, None, "tgi"),
]


@pytest.mark.parametrize("name,engine,waiting,running,kv,ranks,maxconc,flavour", TABLE, ids=[t[0] for t in TABLE])
def test_fixture_table(name, engine, waiting, running, kv, ranks, maxconc, flavour):
    s = extract(fixture(name), engine)
    assert (s.waiting, s.running, s.ranks, s.engine) == (waiting, running, ranks, flavour)
    assert s.kv_usage == (pytest.approx(kv) if kv is not None else None)
    assert s.kv_max_concurrency == (pytest.approx(maxconc) if maxconc is not None else None)
    assert detect(fixture(name)) == engine
    assert flavour in FLAVOURS


def test_triton_running_reads_scheduled_not_active():
    """The real capture has active=0 while one request is scheduled: running must be 1 (llm-d reads scheduled)."""
    page = fixture("triton_trtllm")
    assert 'request_type="active",version="1"} 0' in page and 'request_type="scheduled",version="1"} 1' in page
    assert extract(page, "triton").running == 1
    busier = page.replace('request_type="scheduled",version="1"} 1', 'request_type="scheduled",version="1"} 7')
    assert extract(busier, "triton").running == 7


@pytest.mark.parametrize("engine, path", [("vllm", "/metrics"), ("sglang", "/metrics"), ("trtllm", "/prometheus/metrics"),
                                          ("triton", "/metrics"), ("llamacpp", "/metrics"), ("tgi", "/metrics"),
                                          ("vllm_ascend", "/metrics"), ("trtllm_custom", "/prometheus/metrics")])
def test_default_metrics_path_per_engine(engine, path):
    assert default_path(engine) == path


def test_every_fixture_is_covered_and_every_engine_type_has_names():
    assert {p.stem for p in shared_path("fixtures", "engines").glob("*.txt")} == {t[0] for t in TABLE} == set(ENGINE_PAGES)
    assert set(SPECS) == set(ENGINE_TYPES)


def test_crlf_page_reads_the_same():
    assert extract(fixture("vllm_0_11_dp2").replace("\n", "\r\n"), "vllm") == extract(fixture("vllm_0_11_dp2"), "vllm")


def test_trtllm_serve_names():
    page = "trtllm_num_requests_waiting 3\ntrtllm_num_requests_running 8\ntrtllm_kv_cache_utilization 0.5\n"
    s = extract(page, "trtllm")
    assert (s.waiting, s.running, s.kv_usage, s.engine) == (3, 8, 0.5, "trtllm")
    assert detect(page) == "trtllm"


# -- data-parallel and duplicates -------------------------------------------------------------------
def dp_page(kv0="0.2", kv1="0.7", extra="") -> str:
    return (
        'vllm:num_requests_waiting{engine="0"} 1\nvllm:num_requests_waiting{engine="1"} 4\n'
        'vllm:num_requests_running{engine="0"} 2\nvllm:num_requests_running{engine="1"} 3\n'
        f'vllm:kv_cache_usage_perc{{engine="0"}} {kv0}\nvllm:kv_cache_usage_perc{{engine="1"}} {kv1}\n' + extra
    )


def test_dp_sums_queues_and_takes_the_fullest_rank():
    s = extract(dp_page(), "vllm")
    assert (s.waiting, s.running, s.kv_usage, s.ranks) == (5, 5, 0.7, 2)


def test_identical_series_count_once_and_the_last_wins():
    page = dp_page(extra='vllm:num_requests_waiting{engine="1"} 6\nvllm:kv_cache_usage_perc{engine="1"} 0.1\n')
    s = extract(page, "vllm")
    assert (s.waiting, s.kv_usage, s.ranks) == (7, 0.2, 2)


def test_max_concurrency_needs_every_rank():
    info = 'vllm:cache_config_info{engine="%s",kv_cache_max_concurrency="%s"} 1.0\n'
    assert extract(dp_page(extra=info % ("0", "10.5") + info % ("1", "9.5")), "vllm").kv_max_concurrency == 20
    assert extract(dp_page(extra=info % ("0", "10.5") + 'vllm:cache_config_info{engine="1"} 1.0\n'), "vllm").kv_max_concurrency is None
    assert extract(dp_page(extra=info % ("0", "n/a")), "vllm").kv_max_concurrency is None


def test_vllm_0_10_exports_both_kv_names_and_the_new_one_wins():
    page = dp_page() + 'vllm:gpu_cache_usage_perc{engine="0"} 0.99\n'
    s = extract(page, "vllm")
    assert (s.kv_usage, s.engine) == (0.7, "vllm")


def test_running_is_optional():
    s = extract("tgi_queue_size 3\n", "tgi")
    assert (s.waiting, s.running, s.kv_usage) == (3, None, None)


# -- custom keys ------------------------------------------------------------------------------------
def test_custom_keys_override_names_field_by_field():
    page = "vllm:num_requests_waiting 2\nvllm:num_requests_running 1\nvllm:npu_cache_usage_perc 0.6\n"
    s = extract(page, "vllm", EngineKeys(waiting_queue="vllm:num_requests_waiting", cache_usage="vllm:npu_cache_usage_perc"))
    assert (s.waiting, s.running, s.kv_usage, s.engine) == (2, 1, 0.6, "vllm")


def test_custom_keys_for_an_engine_without_kv_add_kv():
    page = "my:queue 4\nmy:busy 2\nmy:kv 0.25\n"
    s = extract(page, "tgi", EngineKeys("my:queue", cache_usage="my:kv", running_req="my:busy"))
    assert (s.waiting, s.running, s.kv_usage) == (4, 2, 0.25)


def test_custom_keys_with_label_matchers():
    page = fixture("triton_trtllm")
    keys = EngineKeys('nv_trt_llm_request_metrics{request_type="scheduled"}', running_req='nv_trt_llm_request_metrics{request_type="max"}')
    s = extract(page, "triton", keys)
    assert (s.waiting, s.running, s.kv_usage) == (1, 512, 0.4875)


def test_parse_key():
    k = parse_key('m{a="x", b="q\\"uote"}')
    assert (k.name, k.matchers) == ("m", (("a", "x"), ("b", 'q"uote')))
    for bad in ["", "two words", 'm{a=x}', "m{", '{a="b"}']:
        with pytest.raises(ValueError):
            parse_key(bad)


def test_unknown_engine_type():
    with pytest.raises(ValueError):
        extract("x 1\n", "nonesuch")


# -- values -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-1", "-0.5"])
@pytest.mark.parametrize("metric", ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"])
def test_bad_values_in_needed_metrics(metric, value):
    page = re.sub(rf'^({re.escape(metric)}{{engine="1"}}) \S+$', rf"\1 {value}", dp_page(), flags=re.MULTILINE)
    with pytest.raises(MetricsError) as err:
        extract(page, "vllm")
    assert err.value.reason == "bad-value" and metric in err.value.detail


@pytest.mark.parametrize("kv,expected", [("1.0000001", 1.0), ("1", 1.0), ("1.3", 1.0), ("0", 0.0), ("-0", 0.0)])
def test_kv_slightly_over_one_is_clamped(kv, expected):
    assert extract(dp_page(kv0="0", kv1=kv), "vllm").kv_usage == expected


@pytest.mark.parametrize("kv", ["1.6", "43.1", "100"])
def test_kv_far_over_one_is_a_bad_value(kv):
    with pytest.raises(MetricsError) as err:
        extract(dp_page(kv1=kv), "vllm")
    assert err.value.reason == "bad-value" and "0..1" in err.value.detail


def test_unread_series_may_hold_anything():
    page = fixture("triton_trtllm").replace('request_type="max",version="1"} 512', 'request_type="max",version="1"} NaN')
    assert extract(page, "triton").waiting == 1


# -- missing metrics and garbage --------------------------------------------------------------------
def test_missing_waiting_metric():
    page = fixture("vllm_0_11_dp2").replace("vllm:num_requests_waiting{", "vllm:num_requests_waiting_old{")
    with pytest.raises(MetricsError) as err:
        extract(page, "vllm")
    assert (err.value.reason, err.value.detail) == ("missing-metric", "vllm:num_requests_waiting")


def test_missing_kv_when_the_engine_has_one():
    page = "\n".join(line for line in fixture("sglang").splitlines() if "token_usage" not in line)
    with pytest.raises(MetricsError) as err:
        extract(page, "sglang")
    assert (err.value.reason, err.value.detail) == ("missing-metric", "sglang:token_usage")
    with pytest.raises(MetricsError) as err:
        extract('vllm:num_requests_waiting{engine="0"} 1\n', "vllm")
    assert (err.value.reason, err.value.detail) == ("missing-metric", "vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc")


def test_triton_without_the_waiting_request_type():
    page = fixture("triton_trtllm").replace('request_type="waiting"', 'request_type="queued"')
    with pytest.raises(MetricsError) as err:
        extract(page, "triton")
    assert err.value.reason == "missing-metric" and 'request_type="waiting"' in err.value.detail


def test_wrong_engine_type_is_missing_metric():
    with pytest.raises(MetricsError) as err:
        extract(fixture("sglang"), "vllm")
    assert err.value.reason == "missing-metric"


@pytest.mark.parametrize("body", ["<html><body>502 Bad Gateway</body></html>", '{"detail":"Not Found"}', "\x00\x01\x02\xff", ""])
def test_garbage_is_not_prometheus(body):
    with pytest.raises(MetricsError) as err:
        extract(body, "vllm")
    assert err.value.reason == "not-prometheus"
    assert detect(body) is None


def test_detect_falls_back_to_name_prefixes():
    assert detect("# TYPE sglang:gen_throughput gauge\nsglang:gen_throughput 1\n") == "sglang"
    assert detect("process_cpu_seconds_total 1\n") is None


def test_a_page_with_50000_waiting_series_is_a_scrape_error_not_a_sum():
    base = dp_page()
    extra = "".join(f'vllm:num_requests_waiting{{engine="{i}",model_name="m"}} 1\n' for i in range(2, 50_000))
    with pytest.raises(MetricsError) as info:
        extract(base + extra, "vllm")
    assert info.value.reason == "too-many-series"
    assert extract(base, "vllm").ranks == 2  # the same page without the flood reads as usual


# -- one scan per page: the same Sample as reading each group of names on its own ---------------------
def _lines(n: int, name: str, value: str = "1") -> str:
    return "".join(f'{name}{{engine="{i}",model_name="m"}} {value}\n' for i in range(2, n + 2))


SPEEDY = dp_page(extra='vllm:generation_tokens_total{engine="0"} 10\nvllm:generation_tokens_total{engine="1"} 5\n'
                       'vllm:time_to_first_token_seconds_sum{engine="0"} 2.5\nvllm:time_to_first_token_seconds_count{engine="0"} 4\n')

# case, page, engine: extract() must give the same Sample (or error) with one scan as with a select per group
ONE_SCAN_TABLE = [
    *((name, None, engine) for name, engine, *_ in TABLE),
    ("speed counters summed over ranks", SPEEDY, "vllm"),
    ("malformed speed line: no counters, load read", SPEEDY + "vllm:generation_tokens_total{x=1} 5\n", "vllm"),
    ("speed names past their own cap: no counters, load read", SPEEDY + _lines(10_001, "vllm:generation_tokens_total"), "vllm"),
    ("6,000 waiting and 6,000 speed lines: each within its own cap",
     SPEEDY + _lines(6_000, "vllm:num_requests_waiting") + _lines(6_000, "vllm:generation_tokens_total"), "vllm"),
    ("waiting past the cap", SPEEDY + _lines(10_001, "vllm:num_requests_waiting"), "vllm"),
    ("malformed waiting line", SPEEDY + "vllm:num_requests_waiting{x=1} 5\n", "vllm"),
    ("malformed legacy KV line, read only as a fallback", 'vllm:num_requests_waiting 1\nvllm:gpu_cache_usage_perc{x=1} 5\n', "vllm"),
    ("legacy KV fallback", 'vllm:num_requests_waiting 1\nvllm:gpu_cache_usage_perc 0.5\n', "vllm"),
    ("bad speed value", SPEEDY.replace("} 10\n", "} NaN\n"), "vllm"),
    ("HTML", "<html>vllm:num_requests_waiting</html>", "vllm"),
]


def _sample_or_error(page: str, engine: str):
    try:
        return extract(page, engine)
    except MetricsError as err:
        return err.reason, err.detail


@pytest.mark.parametrize("case,page,engine", ONE_SCAN_TABLE, ids=[c[0] for c in ONE_SCAN_TABLE])
def test_one_scan_gives_what_a_select_per_group_gives(monkeypatch, case, page, engine):
    page = page if page is not None else fixture(case)
    one_scan = _sample_or_error(page, engine)
    # A Scan that holds nothing reads every group with exposition.select: the per-name path.
    monkeypatch.setattr(exposition, "scan", lambda text, names: exposition.Scan(text, None))
    assert one_scan == _sample_or_error(page, engine)
    if not isinstance(one_scan, tuple):
        assert one_scan.counters == speed_counters(page, engine)


def test_speed_counters_on_pages_that_test_the_caps():
    assert extract(SPEEDY, "vllm").counters.generation_tokens == 15
    assert extract(SPEEDY, "vllm").counters.ttft_sum == 2.5
    assert extract(SPEEDY + "vllm:generation_tokens_total{x=1} 5\n", "vllm").counters is None
    capped = extract(SPEEDY + _lines(10_001, "vllm:generation_tokens_total"), "vllm")
    assert (capped.waiting, capped.counters) == (5, None)
    both = extract(SPEEDY + _lines(6_000, "vllm:num_requests_waiting") + _lines(6_000, "vllm:generation_tokens_total"), "vllm")
    assert (both.waiting, both.ranks, both.counters.generation_tokens) == (5 + 6_000, 6_002, 15 + 6_000)
