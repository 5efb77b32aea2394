"""controller.config.yamlfile: the seed's file unchanged, new keys, secrets, and every problem at once."""

from __future__ import annotations

import pytest

from controller.config.converters import HIDDEN, scrub, secret_values
from controller.config.schema import AppConfig
from controller.config.yamlfile import load, parse
from controller.errors import ConfigError
from controller.model import PoolRef
from tests.configfile_support import (
    ENV,
    EXAMPLE_YAML,
    F5_SECRET,
    METRIC_SECRET,
    SEED_TEXT,
    SEED_YAML,
    minimal,
    problems,
    setting,
)
from tests.conftest import shared_path

# --- the seed's file, unchanged ----------------------------------------------------------------


@pytest.fixture(scope="module")
def seed() -> AppConfig:
    return load(str(SEED_YAML), ENV)


def test_seed_yaml_is_a_verbatim_copy_of_the_seed_example():
    text = shared_path(*SEED_TEXT).read_text(encoding="utf-8")
    block = text.split("### Configuration Example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    assert SEED_YAML.read_text(encoding="utf-8") == block


@pytest.mark.parametrize(
    "get, expected",
    [
        (lambda c: c.f5.host, "192.168.1.100"),
        (lambda c: c.f5.port, 443),
        (lambda c: c.f5.username, "admin"),
        (lambda c: c.f5.password == F5_SECRET, True),
        (lambda c: c.f5.password_source, "env F5_PASSWORD"),
        (lambda c: c.scheduler.tick_seconds, 3.0),
        (lambda c: c.scheduler.pool_fetch_interval, 10.0),
        (lambda c: c.modes[0].name, "s1"),
        (lambda c: (c.modes[0].w_a, c.modes[0].w_b), (0.8, 0.2)),
        (lambda c: [p.ref for p in c.pools], [PoolRef("llm-pool-1", "Common"), PoolRef("llm-pool-2", "tenant-1")]),
        (lambda c: [p.engine_type for p in c.pools], ["vllm", "sglang"]),
        (lambda c: [p.metrics.port for p in c.pools], [None, 9090]),
        (lambda c: [p.metrics.schema for p in c.pools], ["http", "https"]),
        (lambda c: [p.metrics.path for p in c.pools], ["/metrics", "/custom/metrics"]),
        (lambda c: [p.metrics.timeout for p in c.pools], [4.0, 5.0]),
        (lambda c: c.pools[0].metrics.api_key, "your-api-key"),
        (lambda c: c.pools[0].metrics.user, "metrics_user"),
        (lambda c: c.pools[0].metrics.password == METRIC_SECRET, True),
        (lambda c: (c.pools[1].metrics.api_key, c.pools[1].metrics.user, c.pools[1].metrics.password), (None, None, None)),
        (lambda c: [p.mode.w_a for p in c.pools], [0.8, 0.8]),
        (lambda c: c.log_level, "INFO"),
        (lambda c: c.source, str(SEED_YAML)),
    ],
)
def test_seed_file_loads_unchanged(seed, get, expected):
    assert get(seed) == expected


@pytest.mark.parametrize("key", ["global.api_port", "global.api_host"])
def test_seed_request_path_keys_are_noted_not_rejected(seed, key):
    assert any(n.startswith(f"{key} is not used by f5-llm-ratio") and n.endswith("ignored") for n in seed.notes)


def test_seed_interval_is_the_config_files_poll_period(seed):
    # the sideband's hot-reload check interval (seconds) means the same here: the file is polled for changes
    assert seed.reload_interval == 5.0 and not any(n.startswith("global.interval") for n in seed.notes)


def test_minimal_config_has_no_notes():
    assert parse(minimal(), ENV).notes == ()


@pytest.mark.parametrize(
    "dotted, value, note",
    [
        ("modes", [{"name": "s1", "w_a": 0.5, "w_b": 0.5, "w_g": 0.2}], "modes[0].w_g is used only by the s2 modes"),
        ("modes", [{"name": "s1_nonlinear", "power": 3.0}], "modes[0].power is not read by the sideband scheduler either"),
        ("pools[0].model_APIkey", {"path": "/v1/cluster/authorizations"}, "pools[0].model_APIkey is used by the sideband"),
    ],
)
def test_other_unused_keys_are_noted(dotted, value, note):
    cfg = parse(setting(minimal(), dotted, value), ENV)
    assert [n for n in cfg.notes if n.startswith(note)]


def test_example_yaml_loads():
    cfg = load(str(EXAMPLE_YAML), ENV)
    assert cfg.f5.host == "192.0.2.10"
    assert [p.ref.full_path for p in cfg.pools] == ["/Common/llm-pool-1", "/tenant-1/llm/sglang-pool", "/tenant-2/npu/ascend-pool"]
    assert cfg.pools[1].mode.name == "balance" and cfg.pools[1].weights.drive == "both"
    assert cfg.pools[2].engine_type == "vllm_ascend" and cfg.keys_for("vllm_ascend") is not None


# --- file handling -----------------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load(str(tmp_path / "nope.yaml"), ENV)


def test_yaml_syntax_error_names_file_and_line_but_not_the_line_text(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("f5:\n  host: 192.0.2.10\npools:\n  - name: p\n    APIkey: sk-live-123: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(str(path), ENV)
    message = str(info.value)
    assert str(path) in message and "line 5" in message
    assert "sk-live-123" not in message


@pytest.mark.parametrize("text, expected", [("", "empty"), ("- a\n- b\n", "top level")])
def test_empty_or_non_mapping_file(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load(str(path), ENV)


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "f5, environ, expected",
    [
        ({"password_env": "F5_PASSWORD"}, {}, "f5.password_env: the environment variable named here (the name is not shown"),
        ({"password_env": "MY_BIGIP_PW"}, {"MY_BIGIP_PW": ""}, "f5.password_env: the environment variable named here"),
        ({}, {}, "f5.password_env: not configured (nor password_file), and the default environment variable F5_PASSWORD"),
    ],
)
def test_missing_f5_password_names_the_key_and_only_the_default_variable(f5, environ, expected):
    """A name the user gave under a secret key is not repeated (it may be the password typed in the wrong
    place); the built-in default F5_PASSWORD is ours, so it is named."""
    data = minimal()
    data["f5"] = {"host": "192.0.2.10", **f5}
    found = problems(data, environ)
    assert [p for p in found if p.startswith(expected)], found
    given = f5.get("password_env")
    assert not given or given not in " ".join(found)


def test_missing_metric_password_names_the_key_not_the_variable():
    data = setting(minimal(), "pools[0].metrics", {"metric_user": "u", "metric_pwd_env": "METRIC_PWD"})
    [problem] = problems(data, {"F5_PASSWORD": "x"})
    assert problem.startswith("pools[0].metrics.metric_pwd_env: the environment variable named here")
    assert problem.endswith("is not set (or empty)") and "METRIC_PWD" not in problem


def test_metric_pwd_env_without_user_is_a_problem():
    data = setting(minimal(), "pools[0].metrics", {"metric_pwd_env": "METRIC_PWD"})
    assert problems(data) == ["pools[0].metrics.metric_pwd_env: set, but metric_user is not (basic auth needs both)"]


@pytest.mark.parametrize("f5", [{}, {"password_env": None}, {"password_env": None, "password_file": None}])
def test_default_password_env_is_F5_PASSWORD(f5):
    data = setting(minimal(), "f5", {"host": "h", **f5})
    cfg = parse(data, {"F5_PASSWORD": "pw"})
    assert (cfg.f5.password, cfg.f5.password_source) == ("pw", "env F5_PASSWORD")


@pytest.mark.parametrize("content, expected", [("pw\n", "pw"), ("pw\n\n", "pw\n"), ("pw", "pw"), ("pw\r\n", "pw")])
def test_password_file_strips_one_trailing_newline(tmp_path, content, expected):
    (tmp_path / "pw").write_text(content, encoding="utf-8", newline="")
    data = setting(minimal(), "f5", {"host": "h", "password_file": str(tmp_path / "pw")})
    cfg = parse(data, {})
    assert cfg.f5.password == expected
    assert cfg.f5.password_source == f"file {tmp_path / 'pw'}"


def test_password_file_wins_over_password_env(tmp_path):
    (tmp_path / "pw").write_text("from-file\n", encoding="utf-8")
    data = setting(minimal(), "f5", {"host": "h", "password_file": str(tmp_path / "pw"), "password_env": "F5_PASSWORD"})
    assert parse(data, ENV).f5.password == "from-file"


def test_relative_password_file_is_looked_up_in_credentials_directory(tmp_path):
    (tmp_path / "bigip-pw").write_text("cred\n", encoding="utf-8")
    data = setting(minimal(), "f5", {"host": "h", "password_file": "bigip-pw"})
    cfg = parse(data, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert cfg.f5.password == "cred"
    assert cfg.f5.password_source == f"file {tmp_path / 'bigip-pw'}"


def test_implicit_systemd_credential_is_used_when_nothing_is_configured(tmp_path):
    (tmp_path / "f5-password").write_text("implicit\n", encoding="utf-8")
    data = setting(minimal(), "f5", {"host": "h"})
    assert parse(data, {"CREDENTIALS_DIRECTORY": str(tmp_path), "F5_PASSWORD": "env"}).f5.password == "implicit"
    # ... but an explicit password_env still wins
    data = setting(minimal(), "f5", {"host": "h", "password_env": "F5_PASSWORD"})
    assert parse(data, {"CREDENTIALS_DIRECTORY": str(tmp_path), "F5_PASSWORD": "env"}).f5.password == "env"


@pytest.mark.parametrize("content, expected", [(None, "cannot read"), ("\n", "is empty")])
def test_unusable_password_file(tmp_path, content, expected):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    data = setting(minimal(), "f5", {"host": "h", "password_file": str(path)})
    [problem] = problems(data)
    assert problem.startswith("f5.password_file: ") and expected in problem
    assert str(path) not in problem and "pw" not in problem.split(":", 1)[1].replace("password", "")  # not echoed


HUNTER = "hunter2-Zq9-secret"


@pytest.mark.parametrize("where, value", [
    ("f5.passwrd", HUNTER),  # a typo of password: an unknown key
    ("f5.Password", HUNTER),
    ("f5.PWD", HUNTER),
    ("f5.token", HUNTER),
    ("f5.api_key", HUNTER),
    ("f5.secret", HUNTER),
    ("f5.credential", HUNTER),
    ("f5.password_env", HUNTER),  # the password itself typed where a variable name belongs
    ("f5.password_file", HUNTER),  # ... or where a file name belongs
    ("f5.password", HUNTER),
    ("f5.password", [HUNTER]),
    ("f5.password", {"value": HUNTER}),
    ("secret", HUNTER),
    ("pools[0].metrics.apikey", HUNTER),
    ("pools[0].metrics.ApiKey", HUNTER),
    ("pools[0].metrics.APIkey", 98765432123),  # a known secret key with the wrong type
    ("pools[0].metrics.APIkey_file", HUNTER),
    ("pools[0].metrics.metric_pwd", HUNTER),
    ("pools[0].metrics.metric_pwd_env", HUNTER),
    ("pools[0].metrics.metric_pwd_file", HUNTER),
    ("pools[0].metrics.metric_password", HUNTER),
    ("telemetry.auth_token", HUNTER),
    ("weights.secret_key", HUNTER),
])
def test_a_value_under_a_secret_looking_key_is_never_echoed(where, value):
    data = setting(minimal(), where, value)
    data = setting(data, "pools[0].metrics.metric_user", "u")
    with pytest.raises(ConfigError) as info:
        parse(data, {})
    text = str(info.value)
    assert where.split(".")[-1] in text  # the key is named ...
    assert HUNTER not in text and "98765432123" not in text  # ... its value never


def test_secret_values_and_scrub():
    data = {"f5": {"host": "h", "passwrd": HUNTER, "user": "admin"}, "pools": [{"metrics": {"APIkey": 12345}}],
            "engines_metrics_keys": {"vllm": {"waiting": "vllm:num_requests_waiting"}}, "token": {"a": ["abcd"]}}
    assert sorted(secret_values(data)) == sorted([HUNTER, "12345", "abcd"])  # metric names are not secrets
    long = "x" * 60
    assert scrub(f"got {long!r} and {HUNTER}", [HUNTER, long]) == f"got {HIDDEN} and {HIDDEN}"
    assert scrub(f"got {repr(long)[:37]}...", [long]) == f"got {HIDDEN}..."  # the clipped form too
    assert scrub("pools[0] abc", ["abc", "0"]) == "pools[0] abc"  # too short to scrub without mangling text


def test_literal_f5_password_is_refused_without_echoing_it():
    data = setting(minimal(), "f5.password", F5_SECRET)
    [problem] = problems(data)
    assert problem.startswith("f5.password: a password in the config file is not accepted")
    assert F5_SECRET not in problem


def test_secrets_never_in_repr_of_config(tmp_path):
    data = setting(minimal(), "pools[0].metrics", {"APIkey": "api-KEY-s3cr3t", "metric_user": "u", "metric_pwd_env": "METRIC_PWD"})
    cfg = parse(data, ENV)
    assert cfg.f5.password == F5_SECRET and cfg.pools[0].metrics.password == METRIC_SECRET
    text = repr(cfg) + str(cfg)
    for secret in (F5_SECRET, METRIC_SECRET, "api-KEY-s3cr3t"):
        assert secret not in text
    assert set(cfg.secrets()) == {F5_SECRET, METRIC_SECRET, "api-KEY-s3cr3t"}


def test_secrets_never_in_error_text():
    data = setting(minimal(), "pools[0].metrics", {"APIkey": 987654321, "metric_user": "u", "metric_pwd_env": "METRIC_PWD"})
    data = setting(data, "pools[0].engine_type", "vllmm")  # an error elsewhere, with secrets resolved
    with pytest.raises(ConfigError) as info:
        parse(data, ENV)
    message = str(info.value) + repr(info.value)
    assert "pools[0].metrics.APIkey: expected a string (put it in quotes), got an integer" in message
    for secret in (F5_SECRET, METRIC_SECRET, "987654321"):
        assert secret not in message


# --- validation: every problem, with its key path ------------------------------------------------


def test_all_problems_are_collected_in_one_error():
    data = minimal()
    data["scheduler"] = {"metrics_fetch_interval": "fast"}
    data["weights"] = {"scale": 0}
    data["pools"].append({"name": "llm-pool-2", "engine_type": "vllmm", "metrcis": {}})
    assert problems(data) == [
        "scheduler.metrics_fetch_interval: expected an integer (milliseconds), got 'fast'",
        "weights.scale: must be between 1 and 65535, got 0",
        "pools[1].metrcis: unknown key (did you mean 'metrics'?)",
        "pools[1].engine_type: 'vllmm' is not one of vllm, sglang, trtllm, triton, llamacpp, tgi",
    ]


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("f5.host", "https://192.0.2.10", "f5.host: expected a host name or address, not a URL"),
        ("f5.port", 0, "f5.port: must be between 1 and 65535, got 0"),
        ("f5.port", "443", "f5.port: expected an integer, got '443'"),
        ("f5.timeout", 0, "f5.timeout: must be > 0, got 0"),
        ("f5.write_mode", "put", "f5.write_mode: 'put' is not one of patch, transaction"),
        ("f5.write_concurrency", 0, "f5.write_concurrency: must be >= 1, got 0"),
        ("f5.max_writes_per_minute", 1.5, "f5.max_writes_per_minute: expected an integer, got 1.5"),
        ("f5.verfy_tls", True, "f5.verfy_tls: unknown key (did you mean 'verify_tls'?)"),
        ("scheduler.metrics_fetch_interval", "fast", "scheduler.metrics_fetch_interval: expected an integer (milliseconds), got 'fast'"),
        ("scheduler.metrics_fetch_interval", 50, "scheduler.metrics_fetch_interval: must be >= 100, got 50"),
        ("scheduler.metrics_fetch_interval", True, "scheduler.metrics_fetch_interval: expected an integer (milliseconds), got true"),
        ("scheduler.pool_fetch_interval", -1, "scheduler.pool_fetch_interval: must be > 0, got -1"),
        ("scheduler.scrape_concurrency", 0, "scheduler.scrape_concurrency: must be >= 1, got 0"),
        ("scheduler.tick_deadline", 0, "scheduler.tick_deadline: must be > 0, got 0"),
        ("weights.scale", 70000, "weights.scale: must be between 1 and 65535, got 70000"),
        ("weights.floor", 0, "weights.floor: must be between 1 and 65535, got 0"),
        ("weights.floor", 200, "weights.floor: must be between 1 and scale (100), got 200"),
        ("weights.dead_band", 1.5, "weights.dead_band: must be between 0 and 1, got 1.5"),
        ("weights.max_step", 0, "weights.max_step: must be > 0 and <= 1, got 0"),
        ("weights.smoothing", 1, "weights.smoothing: must be >= 0 and < 1, got 1"),
        ("weights.stale_after", 0, "weights.stale_after: must be > 0, got 0"),
        ("weights.max_floor_share", 0, "weights.max_floor_share: must be > 0 and <= 1, got 0"),
        ("weights.limit_headroom", 0, "weights.limit_headroom: must be > 0, got 0"),
        ("weights.max_connections", 0, "weights.max_connections: must be >= 1, got 0"),
        ("weights.drive", "ratios", "weights.drive: 'ratios' is not one of auto, ratio, connection_limit, both"),
        ("weights.describe", "yes", "weights.describe: expected true or false, got 'yes'"),
        ("weights.describe", 1, "weights.describe: expected true or false, got 1"),
        ("telemetry.enabled", "true", "telemetry.enabled: expected true or false, got 'true'"),
        ("telemetry.port", 70000, "telemetry.port: must be between 1 and 65535, got 70000"),
        ("global.log_level", "LOUD", "global.log_level: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("global.log_debug", "yes", "global.log_debug: expected true or false, got 'yes'"),
        ("modes", [{"w_a": 0, "w_b": 0}], "modes[0]: w_a, w_b and w_g are all 0; at least one must be > 0"),
        ("modes", [{"name": "s1_dynamic_waiting", "transition_point": 0}], "modes[0].transition_point: must be > 0, got 0"),
        ("pools[0].fallback.member_running_req_threshold", "many",
         "pools[0].fallback.member_running_req_threshold: expected a number, got 'many'"),
        ("pools[0].fallback.pool_fallback", "yes", "pools[0].fallback.pool_fallback: expected true or false, got 'yes'"),
        ("global.interval", -1, "global.interval: must be >= 0, got -1"),
        ("modes", [{"w_a": -0.1}], "modes[0].w_a: must be >= 0, got -0.1"),
        ("modes", [{"name": "s1"}, {"name": "s1"}], "modes[1].name: duplicate mode name 's1'"),
        ("modes", [], "modes: must list at least one mode"),
        ("pools", [], "pools: must list at least one pool"),
        ("pools", None, "pools: must list at least one pool"),
        ("pools", {"name": "p"}, "pools: expected a list, got a mapping"),
        ("pools[0].name", None, "pools[0].name: expected a string, got null"),
        ("pools[0].name", "Common/p", "pools[0].name: 'Common/p' contains '/'"),
        ("pools[0].name", "/p", "pools[0].name: '/p' is not a full path"),
        ("pools[0].engine_type", "vllmm", "pools[0].engine_type: 'vllmm' is not one of vllm, sglang, trtllm, triton, llamacpp, tgi"),
        ("pools[0].mode", "s9", "pools[0].mode: 's9' is not one of balance"),
        ("pools[0].metrcis", {}, "pools[0].metrcis: unknown key (did you mean 'metrics'?)"),
        ("pools[0].metrics.schema", "ftp", "pools[0].metrics.schema: 'ftp' is not one of http, https"),
        ("pools[0].metrics.port", 0, "pools[0].metrics.port: must be between 1 and 65535, got 0"),
        ("pools[0].metrics.path", "metrics", "pools[0].metrics.path: must start with '/', got 'metrics'"),
        ("pools[0].metrics.timeout", "3s", "pools[0].metrics.timeout: expected a number (seconds), got '3s'"),
        ("pools[0].metrics.timout", 3, "pools[0].metrics.timout: unknown key (did you mean 'timeout'?)"),
        ("pools[0].weights.scael", 3, "pools[0].weights.scael: unknown key (did you mean 'scale'?)"),
        ("pools[0].weights.floor", 101, "pools[0].weights.floor: must be between 1 and scale (100), got 101"),
        ("metrics", {}, "metrics: unknown key (known keys: global, f5, scheduler, modes, pools, engines_metrics_keys, weights, telemetry)"),
        ("f5", ["host"], "f5: expected a mapping, got a list"),
        ("engines_metrics_keys.custom", {"cache_usage": "c"}, "engines_metrics_keys.custom: 'custom' must start with a built-in"),
        ("engines_metrics_keys.vllm_x", None, "engines_metrics_keys.vllm_x: no metric names given"),
        (
            "engines_metrics_keys.vllm_x",
            {"cache_usag": "c"},
            "engines_metrics_keys.vllm_x.cache_usag: unknown key (did you mean 'cache_usage'?)",
        ),
    ],
)
def test_one_problem(dotted, value, expected):
    found = problems(setting(minimal(), dotted, value))
    assert len([p for p in found if p.startswith(expected)]) == 1, found


def test_missing_required_keys():
    assert problems({"f5": {"password_env": "F5_PASSWORD"}, "pools": [{"partition": "Common"}]}) == [
        "f5.host: required (the BIG-IP management address)",
        "pools[0].name: required",
        "pools[0].engine_type: required",
    ]
    assert problems({"f5": {"host": "h"}}) == ["pools: required (at least one pool)"]


@pytest.mark.parametrize(
    "second, expected",
    [
        ({"name": "llm-pool-1", "engine_type": "sglang"}, "pools[1].name: duplicate of pools[0] (/Common/llm-pool-1)"),
        ({"name": "/Common/llm-pool-1", "engine_type": "vllm"}, "pools[1].name: duplicate of pools[0] (/Common/llm-pool-1)"),
    ],
)
def test_duplicate_pools(second, expected):
    data = minimal()
    data["pools"].append(second)
    assert problems(data) == [expected]


def test_same_name_in_other_partition_is_not_a_duplicate():
    data = minimal()
    data["pools"].append({"name": "llm-pool-1", "partition": "tenant-1", "engine_type": "vllm"})
    assert [p.ref.full_path for p in parse(data, ENV).pools] == ["/Common/llm-pool-1", "/tenant-1/llm-pool-1"]


@pytest.mark.parametrize(
    "pool, ref",
    [
        ({"name": "p"}, PoolRef("p", "Common", "")),
        ({"name": "p", "partition": "T1"}, PoolRef("p", "T1", "")),
        ({"name": "p", "partition": "T1", "sub_path": "app"}, PoolRef("p", "T1", "app")),
        ({"name": "/T1/p"}, PoolRef("p", "T1", "")),
        ({"name": "/T1/app/p"}, PoolRef("p", "T1", "app")),
        ({"name": "/T1/a/b/p"}, PoolRef("p", "T1", "a/b")),
        ({"name": "/T1/app/p", "partition": "T1", "sub_path": "app"}, PoolRef("p", "T1", "app")),
    ],
)
def test_pool_names_and_full_paths(pool, ref):
    data = setting(minimal(), "pools", [{"engine_type": "vllm", **pool}])
    assert parse(data, ENV).pools[0].ref == ref


def test_full_path_conflicting_with_partition_is_a_problem():
    data = setting(minimal(), "pools", [{"name": "/T1/p", "partition": "Common", "engine_type": "vllm"}])
    assert problems(data) == ["pools[0].partition: 'Common' conflicts with the full path '/T1/p'"]


@pytest.mark.parametrize(
    "dotted, value, get, expected",
    [
        ("scheduler.metrics_fetch_interval", 3000.0, lambda c: c.scheduler.metrics_fetch_interval_ms, 3000),
        ("scheduler.metrics_fetch_interval", 100, lambda c: c.scheduler.tick_seconds, 0.1),
        ("weights.scale", 65535, lambda c: c.pools[0].weights.scale, 65535),
        ("pools[0].metrics.timeout", 4, lambda c: c.pools[0].metrics.timeout, 4.0),
        ("pools[0].metrics.schema", "HTTPS", lambda c: c.pools[0].metrics.schema, "https"),
        ("global.log_level", "debug", lambda c: c.log_level, "DEBUG"),
        ("global", {"log_debug": True}, lambda c: c.log_level, "DEBUG"),
        ("global", {"log_debug": True, "log_level": "WARNING"}, lambda c: c.log_level, "WARNING"),
        ("global", None, lambda c: c.log_level, "INFO"),
        ("f5.write_mode", "transaction", lambda c: c.f5.write_mode, "transaction"),
        ("f5.login_provider", "ldap", lambda c: c.f5.login_provider, "ldap"),
        ("scheduler.tick_deadline", 2, lambda c: c.scheduler.scrape_deadline, 2.0),
        (
            "telemetry",
            {"enabled": False, "host": "0.0.0.0", "port": 9200},
            lambda c: (c.telemetry.enabled, c.telemetry.port),
            (False, 9200),
        ),
    ],
)
def test_accepted_values(dotted, value, get, expected):
    assert get(parse(setting(minimal(), dotted, value), ENV)) == expected
