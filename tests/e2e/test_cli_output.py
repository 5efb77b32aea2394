"""What `plan`, `check` and the CLI print, run as a user runs them: the real CLI against the emulator."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from controller import cli
from controller.demo import SUPPORTED_MODES, check_mode, experimental_modes
from tests.e2e_env import Stack, cli_env, merge, seed_config, write_config
from tests.e2e_env import cli as run_cli

# 16 members of unequal load and ratio: the pool size the table must fit in 100 columns
LOADS = [((i * 7) % 13, (i * 11) % 40 + 1, ((i * 37) % 100) / 100) for i in range(16)]
RATIOS = [20 + (i * 29) % 80 for i in range(16)]


@pytest.fixture(scope="module")
def stack():
    s = Stack(LOADS, ratios=RATIOS).start()
    yield s
    s.stop()


@pytest.fixture
def config(stack, tmp_path):
    def make(**changes):
        return str(write_config(tmp_path / "config.yaml", merge(seed_config(stack), changes)))
    return make


def test_plan_table_fits_100_columns_sorted_with_shares_and_nothing_above_it(config):
    r = run_cli("plan", "--config", config(modes=[{"name": "balance"}]))
    assert r.code == 0, r.text
    assert r.err == ""  # no log line at the default level: the table is the output
    lines = r.out.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert lines[0].startswith("pool /Common/llm-pool-1  ratio-least-connections-member  policy balance  16 members")
    assert r.out.count("/Common/llm-pool-1") == 1  # the pool once, as a header
    header = lines[1].split()
    assert header[:7] == ["member", "wait", "run", "kv", "score", "ratio", "share"] and header[-2:] == ["action", "reason"]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[2])]
    cells = [[line[a:b].strip() if i < len(spans) - 1 else line[a:].strip() for i, (a, b) in enumerate(spans)]
             for line in lines[3:19]]
    col = dict(zip(header, range(len(header)), strict=False))
    planned = [int(row[col["ratio"]].split(" -> ")[-1]) for row in cells]
    assert planned == sorted(planned, reverse=True)  # largest planned ratio first
    shares = [float(row[col["share"]].rstrip("%")) for row in cells]
    assert sum(shares) == pytest.approx(100, abs=0.5)
    assert not re.search(r"\d\.\d{4,}", r.out)  # rounded numbers
    assert "q=" not in r.out and "kv=" not in r.out  # the reason does not repeat the columns


def test_plan_json_is_the_documented_shape(config):
    r = run_cli("plan", "--config", config(), "--json")
    assert r.code == 0 and r.err == ""
    doc = json.loads(r.out)
    assert (doc["version"], doc["command"], doc["ok"], doc["dry_run"]) == (1, "plan", True, True)
    assert doc["writes"] >= 0 and doc["errors"] == []
    (pool,) = doc["pools"]
    assert {"name", "partition", "engine_type", "member_count", "members", "full_path", "policy"} <= pool.keys()
    m = pool["members"][0]
    assert {"ip", "port", "score", "percent", "metrics", "ratio", "planned_ratio", "planned_share", "action",
            "reason"} <= m.keys()
    assert {"waiting_queue", "cache_usage", "running_req"} == m["metrics"].keys()


def test_check_json_lists_findings_ignored_keys_and_running(config):
    r = run_cli("check", "--config", config(), "--json")
    doc = json.loads(r.out)
    assert (doc["version"], doc["command"], doc["result"]) == (1, "check", "ready") and r.code == 0
    assert all({"item", "severity", "code", "message"} == f.keys() for f in doc["findings"])
    assert {f["severity"] for f in doc["findings"]} <= {"ok", "info", "warn", "fail"}
    ignored = [f["message"] for f in doc["findings"] if f["code"] == "ignored-key"]
    assert any("api_port" in m for m in ignored) and not any("interval" in m for m in ignored)
    (reload,) = [f for f in doc["findings"] if f["code"] == "config-reload"]  # interval: the file's poll period
    assert reload["severity"] == "info" and "every 5s" in reload["message"]
    members = [f for f in doc["findings"] if f["code"] == "metrics"]
    assert len(members) == 16 and all("running=" in f["message"] for f in members)


@pytest.mark.parametrize("command", ["plan", "check"])
def test_json_on_a_bad_config_is_one_json_object_naming_each_key(config, command, tmp_path):
    bad = merge(json.loads(json.dumps(seed_config(None, port=1))), {"pools": [{"name": "p", "exclude": "nope"}]})
    path = str(write_config(tmp_path / "bad.yaml", bad))
    r = run_cli(command, "--config", path, "--json")
    assert r.code == 2 and "f5-llm-ratio:" in r.err
    doc = json.loads(r.out)  # one JSON object, nothing else on stdout
    assert (doc["version"], doc["command"], doc["ok"], doc["exit_code"]) == (1, command, False, 2)
    keys = {e["key"] for e in doc["errors"]}
    assert all(e["kind"] == "config" and e["message"] for e in doc["errors"])
    assert {"pools[0].engine_type", "pools[0].exclude"} <= keys
    missing = run_cli(command, "--config", str(tmp_path / "absent.yaml"), "--json")
    assert missing.code == 2 and json.loads(missing.out)["errors"][0]["kind"] == "config"


def test_check_json_says_ok_and_exit_code(config):
    doc = json.loads(run_cli("check", "--config", config(), "--json").out)
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["errors"] == []


def test_check_names_the_engine_the_pages_look_like(config):
    r = run_cli("check", "--config", config(pools=[dict(seed_config(None, port=1)["pools"][0], engine_type="sglang")]))
    assert r.code == 1
    assert "look like vLLM" in r.out and "set engine_type: vllm" in r.out
    assert r.out.count("engine_type: vllm") == 1  # said once for the pool, not per member


def test_check_warns_when_the_metrics_path_404s_everywhere(config):
    pool = dict(seed_config(None, port=1)["pools"][0])
    pool["metrics"] = dict(pool["metrics"], path="/nope")
    doc = json.loads(run_cli("check", "--config", config(pools=[pool]), "--json").out)
    (finding,) = [f for f in doc["findings"] if f["code"] == "metrics-path-404"]
    assert "/nope" in finding["message"] and "/prometheus/metrics" in finding["message"]
    assert doc["result"] == "blocked"


def test_log_level_sends_logs_to_stderr_only(config):
    r = run_cli("plan", "--config", config(), "--json", "--log-level", "info")
    json.loads(r.out)  # stdout is the document alone
    assert any(e.get("level") == "info" for e in r.events())  # plan's default (WARNING) would show none


def test_every_option_has_help():
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in [("", parser), *subparsers.items()]:
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"


def test_demo_offers_supported_policies_and_experimental_ones_only_behind_a_flag():
    def ns(mode, experimental=False):
        return SimpleNamespace(mode=mode, experimental=experimental)

    assert SUPPORTED_MODES == ("balance", "s1")
    assert check_mode(ns(None)) is None and check_mode(ns("s1")) is None
    other = experimental_modes()[0]
    assert "--experimental" in check_mode(ns(other))
    assert check_mode(ns(other, True)) is None
    assert "choose balance or s1" in check_mode(ns("nonsense"))
    env = cli_env()
    assert env  # the demo itself refuses before starting anything:
    r = run_cli("demo", "--mode", other, "--duration", "1")
    assert r.code == 2 and "--experimental" in r.err


def test_log_lines_round_floats():
    from controller import logs

    assert logs.round_floats(None, "info", {"kv": 0.40995919881305637, "n": 3, "s": "x"}) == {"kv": 0.41, "n": 3, "s": "x"}
