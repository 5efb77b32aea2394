"""The traffic benchmark (bench/): scenario files, the CLI and its JSON, a small fast scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import experiments, ratios, scenario, simulator, traffic
from bench.scenario import ScenarioError

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "bench" / "scenarios").glob("*.yaml"))
JSON_KEYS = {"p50", "p90", "p99", "mean", "slo_1s", "slo_2s", "writes_per_min"}

TINY = {
    "name": "tiny",
    "duration_s": 60,
    "tick_ms": 1000,
    "arrivals": {"kind": "poisson", "load": 0.8, "seed": 1, "trace": "sample"},
    "members": [
        {"name": "slow", "prefill_speed": 1.0, "decode_speed": 1.0, "kv_tokens": 100_000},
        {"name": "fast", "prefill_speed": 3.0, "decode_speed": 1.7, "kv_tokens": 100_000},
    ],
}


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


# --- the loader ------------------------------------------------------------------------------------------

def test_the_issue_example_loads():
    text = """
name: mix4
duration_s: 600
tick_ms: 1000
arrivals: {kind: poisson, load: 0.85, seed: 1}
members:
  - {name: a100-1, prefill_speed: 1.0, decode_speed: 1.0, kv_tokens: 400000}
  - {name: h100-1, prefill_speed: 3.0, decode_speed: 1.7, kv_tokens: 400000}
slowdowns: [{member: h100-1, at_s: 300, factor: 0.5}]
"""
    sc = scenario.parse(yaml.safe_load(text))
    assert sc.name == "mix4" and sc.duration_s == 600 and sc.arrivals.kind == "poisson"
    assert [m.name for m in sc.members] == ["a100-1", "h100-1"]
    assert sc.slowdowns[0].factor == 0.5
    specs = sc.engine_specs()
    assert specs[1].prefill_speed == 3.0 and specs[1].decode_speed == 1.7 and specs[1].kv_capacity_tokens == 400_000


@pytest.mark.parametrize(("change", "key"), [
    (lambda d: d.pop("name"), "name"),
    (lambda d: d.update(duration_s=-5), "duration_s"),
    (lambda d: d.update(tick_ms="fast"), "tick_ms"),
    (lambda d: d.pop("arrivals"), "arrivals"),
    (lambda d: d["arrivals"].update(kind="uniform"), "arrivals.kind"),
    (lambda d: d["arrivals"].update(load=0), "arrivals.load"),
    (lambda d: d["arrivals"].update(kind="trace", trace="chat"), "arrivals.trace"),
    (lambda d: d["arrivals"].update(seed=1.5), "arrivals.seed"),
    (lambda d: d.update(members=[]), "members"),
    (lambda d: d["members"][1].pop("kv_tokens"), "members[1].kv_tokens"),
    (lambda d: d["members"][0].update(decode_speed=0), "members[0].decode_speed"),
    (lambda d: d["members"][1].update(name="slow"), "members[1].name"),
    (lambda d: d["members"][0].update(colour="red"), "members[0].colour"),
    (lambda d: d.update(slowdowns=[{"member": "nobody", "at_s": 1, "factor": 0.5}]), "slowdowns[0].member"),
    (lambda d: d.update(slowdowns=[{"member": "fast", "at_s": 999, "factor": 0.5}]), "slowdowns[0].at_s"),
    (lambda d: d.update(extra_key=1), "extra_key"),
])
def test_bad_files_name_the_key(change, key):
    data = json.loads(json.dumps(TINY))
    change(data)
    with pytest.raises(ScenarioError) as e:
        scenario.parse(data, "x.yaml")
    assert f"{key}:" in str(e.value)


def test_all_problems_in_one_message():
    data = json.loads(json.dumps(TINY))
    data["duration_s"] = 0
    data["members"][0]["prefill_speed"] = "x"
    msg = str(pytest.raises(ScenarioError, scenario.parse, data).value)
    assert "duration_s:" in msg and "members[0].prefill_speed:" in msg


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_load(path):
    sc = scenario.load(path)
    assert sc.name == path.stem


def test_shipped_scenarios_cover_the_issue_classes():
    names = {p.stem for p in SCENARIOS}
    for stem in ("kvprop", "equalkv", "fastsmallkv", "mml", "degrade", "homo"):
        assert {f"{stem}4", f"{stem}16"} <= names, stem
    assert "three8" in names


# --- arrivals ---------------------------------------------------------------------------------------------

def test_seeds_vary_the_arrivals_and_load_sets_the_rate():
    sc = scenario.parse(TINY)
    a, b, a2 = (scenario.arrivals(sc.with_arrivals(seed=s)) for s in (1, 2, 1))
    assert [r.t for r in a] == [r.t for r in a2]
    assert [r.t for r in a] != [r.t for r in b]
    rate = len(a) / sc.duration_s
    assert rate == pytest.approx(0.8 * scenario.pool_capacity(sc), rel=0.15)
    half = scenario.arrivals(sc.with_arrivals(load=0.4))
    assert len(half) == pytest.approx(len(a) / 2, rel=0.2)


def test_trace_replay_starts_at_a_seeded_offset():
    sc = scenario.parse({**TINY, "arrivals": {"kind": "trace", "trace": "sample", "load": 0.7, "seed": 1}})
    a, b = (scenario.arrivals(sc.with_arrivals(seed=s)) for s in (1, 2))
    assert a and b and [r.t for r in a[:50]] != [r.t for r in b[:50]]
    assert all(0 <= r.t < sc.duration_s for r in a)


# --- running -----------------------------------------------------------------------------------------------

def test_every_request_is_accounted_for_and_the_controller_writes():
    sc = scenario.parse(TINY)
    sim = simulator.Sim(sc, experiments.contenders()["default"])
    res = sim.run()
    assert len(res.ttft) + res.rejected == res.n > 100
    assert not any(sim.outstanding)
    assert res.writes > 0 and res.final_ratios[1] > res.final_ratios[0]  # the fast member gains share


def test_same_seed_same_result():
    sc = scenario.parse(TINY)
    for name in ("sideband", "default"):
        con = experiments.contenders()[name]
        assert simulator.run(sc, con).summary() == simulator.run(sc, con).summary()


def test_static_best_search_tries_class_ratios():
    sc = scenario.parse({**TINY, "duration_s": 30})
    ratios, runs = experiments.static_best(sc)
    assert runs > 1 and max(ratios) == 100 and len(ratios) == 2


def test_cli_json_shape(tmp_path, capsys):
    out = tmp_path / "out.json"
    rc = traffic.main(["--scenario", str(write(tmp_path, {**TINY, "duration_s": 30})), "--json", str(out), "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data) == {"scenario", "contenders"} and data["scenario"] == "tiny"
    assert {"lc", "rr", "sideband", "default", "static-best"} <= set(data["contenders"])
    for figures in data["contenders"].values():
        assert set(figures) == JSON_KEYS
        assert 0 <= figures["slo_1s"] <= figures["slo_2s"] <= 1
        assert figures["p50"] <= figures["p90"] <= figures["p99"]
    assert "static-best" in capsys.readouterr().out


def test_cli_bad_file_exits_2_naming_the_key(tmp_path, capsys):
    data = json.loads(json.dumps(TINY))
    data["arrivals"]["kind"] = "burst"
    assert traffic.main(["--scenario", str(write(tmp_path, data))]) == 2
    err = capsys.readouterr().err
    assert "arrivals.kind" in err and "Traceback" not in err
    assert traffic.main(["--scenario", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    assert traffic.main(["--scenario", str(tmp_path / "bad.yaml")]) == 2


@pytest.mark.parametrize("how", [["-m", "bench.traffic"], ["bench/traffic.py"]])
def test_runs_as_module_and_as_script(tmp_path, how):
    path = write(tmp_path, {**TINY, "duration_s": 20})
    out = tmp_path / "o.json"
    proc = subprocess.run([sys.executable, *how, "--scenario", str(path), "--json", str(out), "--quiet",
                           "--contenders", "lc,default"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(out.read_text())["contenders"]) == {"lc", "default"}


def test_cli_fixed_ratios_run_as_the_static_contender(tmp_path):
    out = tmp_path / "o.json"
    path = write(tmp_path, {**TINY, "duration_s": 20})
    assert traffic.main(["--scenario", str(path), "--json", str(out), "--quiet", "--contenders", "lc",
                         "--ratios", "30,100"]) == 0
    assert set(json.loads(out.read_text())["contenders"]) == {"lc", "static"}
    assert traffic.main(["--scenario", str(path), "--ratios", "1,2,3"]) == 2  # one ratio per member


def test_bench_ratios_prints_the_ratios_through_a_run(tmp_path, capsys):
    path = write(tmp_path, TINY)  # the built-in sample trace: no ../shared needed
    assert ratios.main(["--scenario", str(path), "--seed", "1", "--duration", "40", "--every", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 4 and lines[0].startswith("t=") and "fast" in lines[0] and "slow" in lines[0]
    assert "'p99'" in lines[-1]
    assert any("ttft    -" not in ln for ln in lines[1:-1])  # the controller measured some TTFT


@pytest.mark.parametrize(("args", "says"), [
    (["--scenario", "/nonexistent/s.yaml"], "cannot read"),
    (["--policy", "nope"], "--policy: unknown 'nope'"),
])
def test_bench_ratios_refuses_bad_input_with_a_message(tmp_path, capsys, args, says):
    argv = ["--scenario", str(write(tmp_path, TINY)), *args]
    assert ratios.main(argv) == 2
    assert says in capsys.readouterr().err
