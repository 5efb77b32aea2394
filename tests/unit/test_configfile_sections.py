"""Config file: engines, modes and weights, verify_tls, robustness, f5.host, metrics.target."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config.schema import EngineKeys, ModeConfig, WeightsConfig
from controller.config.yamlfile import load, parse
from controller.errors import ConfigError
from tests.configfile_support import (
    ENV,
    minimal,
    problems,
    setting,
)

# --- engines -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, engine",
    [
        ("vLLM", "vllm"),
        ("SGLang", "sglang"),
        ("TensorRT-LLM", "trtllm"),
        ("trt-llm", "trtllm"),
        ("trtllm-serve", "trtllm"),
        ("llama.cpp", "llamacpp"),
        ("llama-cpp", "llamacpp"),
        ("TGI", "tgi"),
    ],
)
def test_engine_type_aliases_and_case(given, engine):
    assert parse(setting(minimal(), "pools[0].engine_type", given), ENV).pools[0].engine_type == engine


def test_upstream_engines_metrics_keys():
    data = minimal()
    data["engines_metrics_keys"] = {
        "vllm_ascend": {
            "waiting_queue": "vllm:num_requests_waiting",
            "cache_usage": "vllm:kv_cache_usage_perc",
            "running_req": "vllm:num_requests_running",
        },
        "vllm_musa": {"cache_usage": "vllm:gpu_cache_usage_perc"},
        "VLLM-MLU": {"cache_usage": "vllm:mlu_cache_usage_perc"},
    }
    data["pools"].append({"name": "npu", "engine_type": "vllm_ascend"})
    data["pools"].append({"name": "mlu", "engine_type": "vllm-mlu"})
    cfg = parse(data, ENV)
    assert [name for name, _ in cfg.engine_keys] == ["vllm_ascend", "vllm_musa", "vllm-mlu"]
    assert cfg.keys_for("vllm_ascend").cache_usage == "vllm:kv_cache_usage_perc"
    assert cfg.keys_for("vllm_musa") == EngineKeys("vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc", None)
    assert [p.engine_type for p in cfg.pools] == ["vllm", "vllm_ascend", "vllm-mlu"]


def test_custom_engine_type_listed_in_choice_message():
    data = setting(minimal(), "engines_metrics_keys.vllm_mindie", {"cache_usage": "npu_cache_usage_perc"})
    data = setting(data, "pools[0].engine_type", "mindie")
    assert problems(data) == ["pools[0].engine_type: 'mindie' is not one of vllm, sglang, trtllm, triton, llamacpp, tgi, vllm_mindie"]


@pytest.mark.parametrize(
    "name, entry, expected",
    [
        ("triton_x", {"cache_usage": "kv"}, EngineKeys('nv_trt_llm_request_metrics{request_type="waiting"}', "kv")),
        ("sglang_x", {"running_req": "r"}, EngineKeys("sglang:num_queue_reqs", None, "r")),
        ("vllm", {"cache_usage": "vllm:npu_cache_usage_perc"}, EngineKeys("vllm:num_requests_waiting", "vllm:npu_cache_usage_perc")),
        ("tgi_x", {"waiting_queue": 'q{model="a"}'}, EngineKeys('q{model="a"}')),
    ],
)
def test_engine_variant_keeps_base_defaults(name, entry, expected):
    assert parse(setting(minimal(), f"engines_metrics_keys.{name}", entry), ENV).keys_for(name) == expected


@pytest.mark.parametrize(
    "name, entry, expected",
    [
        ("mindie", {"waiting_queue": "w"}, "engines_metrics_keys.mindie: 'mindie' must start with a built-in engine type"),
        ("vllm_x", {"cache_usage": "bad key{"}, "engines_metrics_keys.vllm_x.cache_usage: not a metric key: 'bad key{'"),
        ("vllm_x", {"waiting_queue": "w{a=b}"}, "engines_metrics_keys.vllm_x.waiting_queue: bad label matcher"),
        ("vllm_x", {"running_req": 5}, "engines_metrics_keys.vllm_x.running_req: expected a string (put it in quotes), got 5"),
    ],
)
def test_bad_engine_variants(name, entry, expected):
    found = problems(setting(minimal(), f"engines_metrics_keys.{name}", entry))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_every_engine_type_a_pool_can_name_is_one_engines_can_read():
    """Variants resolve to a built-in spec by name prefix: specs.extract accepts the variant name itself."""
    from controller.engines import specs

    data = setting(minimal(), "engines_metrics_keys.vllm_ascend", {"cache_usage": "vllm:npu_cache_usage_perc"})
    cfg = parse(data, ENV)
    page = "vllm:num_requests_waiting 3\nvllm:num_requests_running 1\nvllm:npu_cache_usage_perc 0.25\n"
    sample = specs.extract(page, "vllm_ascend", cfg.keys_for("vllm_ascend"))
    assert (sample.waiting, sample.kv_usage) == (3.0, 0.25)


# --- modes and weights ---------------------------------------------------------------------------


def test_pool_mode_defaults_to_first_and_can_name_another():
    data = minimal()
    data["modes"] = [{"name": "s1", "w_a": 0.7, "w_b": 0.3}, {"name": "balance", "w_a": 0.2, "w_b": 0.8}]
    data["pools"].append({"name": "p2", "engine_type": "sglang", "mode": "balance"})
    cfg = parse(data, ENV)
    assert [(p.mode.name, p.mode.w_b) for p in cfg.pools] == [("s1", 0.3), ("balance", 0.8)]


def test_mode_names_are_policies_and_unnamed_means_s1():
    data = minimal()
    data["modes"] = [{"w_a": 0.7, "w_b": 0.3}]
    assert parse(data, ENV).pools[0].mode.name == "s1"
    data["modes"] = [{"name": "s2", "w_g": 0.2}]  # the sideband's modes are policies too
    assert parse(data, ENV).pools[0].mode == ModeConfig("s2", 0.5, 0.5, 0.2)


def test_an_unknown_mode_becomes_s1_with_a_warning_naming_the_supported_modes():
    # as the sideband's config/config_loader.py does (f254c3e, line 240): a warning, then s1 (not exit 2)
    data = minimal()
    data["modes"] = [{"name": "s1_enhanced_high_cache", "w_a": 0.1, "w_b": 0.9}]
    cfg = parse(data, ENV)
    assert cfg.pools[0].mode == ModeConfig("s1", 0.1, 0.9)
    (warning,) = cfg.warnings
    assert warning.startswith("modes[0].name: unsupported mode 's1_enhanced_high_cache', using s1")
    for name in ("s1_enhanced", "s1_dynamic_waiting", "s2_advanced", "balance"):
        assert name in warning
    assert parse(minimal(), ENV).warnings == ()


def test_weights_merge_per_pool():
    data = minimal()
    data["weights"] = {"scale": 1000, "floor": 50, "dead_band": 0.2}
    data["pools"].append({"name": "p2", "engine_type": "vllm", "weights": {"floor": 5, "drive": "both"}})
    a, b = parse(data, ENV).pools
    assert a.weights == WeightsConfig(scale=1000, floor=50, dead_band=0.2)
    assert b.weights == WeightsConfig(scale=1000, floor=5, dead_band=0.2, drive="both")


def test_pool_weights_floor_checked_against_merged_scale():
    data = setting(minimal(), "weights", {"scale": 20})
    data = setting(data, "pools[0].weights", {"floor": 30})
    assert problems(data) == ["pools[0].weights.floor: must be between 1 and scale (20), got 30"]


# --- verify_tls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_verify_tls_booleans(value):
    assert parse(setting(minimal(), "f5.verify_tls", value), ENV).f5.verify_tls is value


def test_verify_tls_ca_bundle_path(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    assert parse(setting(minimal(), "f5.verify_tls", str(bundle)), ENV).f5.verify_tls == str(bundle)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/nonexistent/ca.pem", "f5.verify_tls: CA bundle /nonexistent/ca.pem does not exist"),
        ("false", "f5.verify_tls: expected true or false without quotes, got the string 'false'"),
        (1, "f5.verify_tls: expected true, false or a CA bundle path, got 1"),
    ],
)
def test_verify_tls_bad_values(value, expected):
    assert problems(setting(minimal(), "f5.verify_tls", value)) == [expected]


# --- robustness ----------------------------------------------------------------------------------

_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_sections = st.fixed_dictionaries(
    {},
    optional={k: _yaml_values for k in ("global", "f5", "scheduler", "modes", "pools", "weights", "engines_metrics_keys", "telemetry")},
)


@settings(max_examples=min(300, settings.default.max_examples), deadline=None)
@given(_sections)
def test_any_yaml_shape_gives_config_or_config_error(data):
    try:
        parse(data, ENV)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)


@settings(max_examples=min(200, settings.default.max_examples), deadline=None)
@given(
    st.sampled_from(["f5", "scheduler", "weights", "telemetry", "pools[0]", "pools[0].metrics", "global"]),
    st.sampled_from(
        ["port", "timeout", "scale", "floor", "schema", "path", "engine_type", "log_level", "name", "drive", "enabled", "dead_band"]
    ),
    _yaml_values,
)
def test_any_value_in_a_valid_config_gives_config_or_config_error(section, key, value):
    try:
        parse(setting(minimal(), f"{section}.{key}", value), ENV)
    except ConfigError as exc:
        assert all(p.split(":")[0].strip() for p in exc.problems)


def test_yaml_written_by_safe_dump_round_trips(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(setting(minimal(), "weights.scale", 500)), encoding="utf-8")
    assert load(str(path), ENV).pools[0].weights.scale == 500


@pytest.mark.parametrize(
    "pools, expected",
    [
        ([None, {"name": "p", "engine_type": "vllm"}], ["pools[0]: expected a mapping, got null"]),
        (
            ["p", {"name": "p", "engine_type": "vllm"}, {"name": "p", "engine_type": "vllm"}],
            ["pools[0]: expected a mapping, got a string", "pools[2].name: duplicate of pools[1] (/Common/p)"],
        ),
    ],
)
def test_non_mapping_list_items_are_reported_once(pools, expected):
    assert problems(setting(minimal(), "pools", pools)) == expected


@pytest.mark.parametrize(
    "dotted, expected",
    [("f5.port", "f5.port: must be between 1 and 65535, got 1000"), ("f5.timeout", "f5.timeout: expected a number (seconds), got 1000")],
)
def test_huge_numbers_are_refused_and_clipped_in_messages(dotted, expected):
    [problem] = problems(setting(minimal(), dotted, 10**400))
    assert problem.startswith(expected) and len(problem) < 120


@pytest.mark.parametrize("text", ["f5:\n  port: " + "9" * 5000 + "\n", "a: " + "[" * 5000 + "\n"])
def test_pathological_yaml_is_a_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="c.yaml"):
        load(str(path), ENV)


# --- f5.host: one unit or the device group's units (issue 11) --------------------------------------


def test_f5_host_list_names_every_unit():
    cfg = parse(setting(minimal(), "f5.host", ["10.0.0.1", "bigip-b.example.com", "[2001:db8::2]"]), ENV)
    assert cfg.f5.host == "10.0.0.1" and cfg.f5.units == ("10.0.0.1", "bigip-b.example.com", "2001:db8::2")


def test_f5_host_string_keeps_working():
    cfg = parse(minimal(), ENV)
    assert cfg.f5.host == "192.0.2.10" and cfg.f5.units == ("192.0.2.10",) and cfg.f5.hosts == ()


@pytest.mark.parametrize("value, expected", [
    ("big ip", "f5.host: 'big ip' contains white space"),
    ("10.0.0.1:8443", "f5.host: '10.0.0.1:8443' carries a port"),
    (["10.0.0.1", "[::1"], "f5.host: [1] '[::1' has an unbalanced bracket"),
    (["10.0.0.1", "10.0.0.1"], "f5.host: [1] '10.0.0.1' is listed twice"),
    ([], "f5.host: an empty list"),
    (["10.0.0.1", 7], "f5.host: [1] expected a host name or IP address as a string"),
    ("x" * 300, "f5.host: is 300 characters long"),
])
def test_f5_host_problems_name_the_key(value, expected):
    found = problems(setting(minimal(), "f5.host", value))
    assert any(p.startswith(expected) for p in found), found


# --- metrics.target: where to scrape instead of the member's address:port (issue 11) --------------


def test_metrics_target_template_is_kept_and_filled_per_member():
    from controller.engines.scrape import target_for
    from controller.model import Member

    cfg = parse(setting(minimal(), "pools[0].metrics", {"target": "{address}:9400"}), ENV)
    pool = cfg.pools[0]
    assert pool.metrics.target == "{address}:9400"
    member = Member(name="gpu-node-1:8000", partition="Common", address="10.0.0.7%2", port=8000)
    assert target_for(member, pool, None).url == "http://10.0.0.7:9400/metrics"
    named = parse(setting(minimal(), "pools[0].metrics", {"target": "{node}.metrics.example.com:{port}"}), ENV)
    assert target_for(member, named.pools[0], None).url == "http://gpu-node-1.metrics.example.com:8000/metrics"


@pytest.mark.parametrize("value, expected", [
    ("{addr}:9400", "unknown placeholder(s) addr"),
    ("http://{address}:9400", "must give host:port"),
    ("{address}", "must give host:port"),
    ("{address}:9400/metrics", "must give host:port"),
    ("{address:9400", "'{address:9400'"),
])
def test_metrics_target_problems_name_the_key(value, expected):
    found = problems(setting(minimal(), "pools[0].metrics", {"target": value}))
    assert any(p.startswith("pools[0].metrics.target:") and expected in p for p in found), found


# --- issue 19: global.instance and YAML aliases ---------------------------------------------------


def test_global_instance_is_read_and_a_bad_one_names_the_key():
    assert parse(minimal(), ENV).instance == ""  # default: the host name (daemon.instance_id)
    assert parse(setting(minimal(), "global.instance", "ctl-east.1"), ENV).instance == "ctl-east.1"
    for bad in ("we]ird", "", "a b", "x" * 41, 12):
        found = problems(setting(minimal(), "global.instance", bad))
        assert any(p.startswith("global.instance") for p in found), (bad, found)


def test_a_few_yaml_aliases_are_fine(tmp_path):
    path = tmp_path / "c.yaml"
    # an anchor in one pool, used by the next (what a real config does)
    path.write_text("""
f5: {host: 192.0.2.10, password_env: F5_PASSWORD}
pools:
  - {name: one, engine_type: vllm, metrics: &m {timeout: 2, path: /metrics}}
  - {name: two, engine_type: vllm, metrics: *m}
""")
    cfg = load(str(path), ENV)
    assert [p.metrics.timeout for p in cfg.pools] == [2, 2]


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):  # 9 ** 9 = 387 million strings once expanded
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join(f"*{prev}" for _ in range(9)) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load(str(path), ENV)
    assert "YAML aliases expand the document to more than 100,000 nodes" in str(err.value)


def test_too_many_yaml_aliases_and_a_self_referencing_alias_are_refused(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("a: &a 1\nb: [" + ",".join("*a" for _ in range(101)) + "]\n")
    with pytest.raises(ConfigError, match="more than 100 YAML aliases"):
        load(str(path), ENV)
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="refers to a node that contains it"):
        load(str(path), ENV)
