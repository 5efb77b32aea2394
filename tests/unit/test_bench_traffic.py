"""The traffic benchmark (bench/): scenario files, the CLI and its JSON, a small fast scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench import experiments, ratios, scenario, simulator, traffic
from bench.scenario import ScenarioError
from tests.traffic_support import TINY, write

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "bench" / "scenarios").glob("*.yaml"))
JSON_KEYS = {"p50", "p90", "p99", "mean", "slo_1s", "slo_2s", "writes_per_min", "goodput_2s", "goodput_1s",
             "goodput_slo", "over_10s", "resets", "unserved", "limit_writes_per_min"}





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
    (lambda d: d.update(pool=[1]), "pool"),
    (lambda d: d.update(pool={"queue_on_connection_limit": "yes"}), "pool.queue_on_connection_limit"),
    (lambda d: d.update(pool={"queue_depth_limit": -1}), "pool.queue_depth_limit"),
    (lambda d: d.update(pool={"queue_time_limit_ms": 2.5}), "pool.queue_time_limit_ms"),
    (lambda d: d.update(pool={"queue_time_limit": 2000}), "pool.queue_time_limit"),
    (lambda d: d.update(slo_s=0), "slo_s"),
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


def test_pool_queue_and_slo_keys_load_with_defaults():
    plain = scenario.parse(TINY)
    assert plain.pool == scenario.PoolQueue() and plain.slo_s == 2.0
    sc = scenario.parse({**TINY, "slo_s": 1.5, "pool": {"queue_on_connection_limit": True, "queue_depth_limit": 100,
                                                        "queue_time_limit_ms": 2000}})
    assert sc.pool == scenario.PoolQueue(True, 100, 2000) and sc.slo_s == 1.5
    assert sc.with_arrivals(load=0.5).pool == sc.pool and sc.with_duration(10).slo_s == 1.5


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


def _limited(pool: dict, limit: int = 4, load: float = 1.3):
    """Both members limited to `limit` connections, arrivals above capacity: LTM's queue decides."""
    sc = scenario.parse({**TINY, "duration_s": 30, "pool": pool, "arrivals": {**TINY["arrivals"], "load": load}})
    con = simulator.Contender("static", "static", ratios=(100, 100), limits=(limit, limit))
    return sc, simulator.run(sc, con)


def test_connection_limits_without_queueing_reject_and_rejections_are_misses():
    sc, res = _limited({})
    assert res.rejected > 0 and res.resets == 0
    m = res.summary()
    assert len(res.ttft) + res.rejected == res.n
    assert m["goodput_2s"] == pytest.approx(sum(1 for x in res.ttft if x <= 2.0) / res.n)
    assert m["goodput_2s"] < m["slo_2s"]  # the served look fine; the arrivals say otherwise
    assert m["unserved"] == pytest.approx(res.rejected / res.n)


def test_queue_on_connection_limit_queues_instead_of_rejecting():
    _, res = _limited({"queue_on_connection_limit": True})
    assert res.rejected == 0 and res.resets == 0 and len(res.ttft) == res.n
    assert max(res.ttft) > 2.0  # they waited in LTM's queue, FIFO


def test_queue_time_limit_resets_and_resets_are_misses():
    _, res = _limited({"queue_on_connection_limit": True, "queue_time_limit_ms": 1000})
    assert res.resets > 0 and res.rejected == 0
    assert len(res.ttft) + res.resets == res.n
    m = res.summary()
    assert m["resets"] == res.resets and m["unserved"] == pytest.approx(res.resets / res.n)
    assert m["goodput_2s"] <= 1 - res.resets / res.n


def test_queue_depth_limit_rejects_past_the_depth():
    _, deep = _limited({"queue_on_connection_limit": True})
    _, shallow = _limited({"queue_on_connection_limit": True, "queue_depth_limit": 3})
    assert deep.rejected == 0 < shallow.rejected


def test_goodput_counts_every_arrival_and_over_10s_counts_the_unserved():
    r = simulator.RunResult("s", "c", 1, 0.5, 60.0, n=10, ttft=[0.5, 1.5, 3.0, 12.0], resets=2, rejected=4, slo_s=3.0)
    m = r.summary()
    assert (m["goodput_1s"], m["goodput_2s"], m["goodput_slo"]) == (0.1, 0.2, 0.3)
    assert m["over_10s"] == pytest.approx(0.7)  # 12 s, 2 resets, 4 rejected
    assert m["p99"] == 12.0 and m["slo_2s"] == 0.5  # the old keys: over the served, as before


def test_references_run_and_account_for_every_request():
    sc = scenario.parse(TINY)
    for name in ("exact", "central"):
        res = simulator.run(sc, experiments.contenders()[name])
        assert len(res.ttft) == res.n > 100, name


def test_default_sets_limits_only_where_the_pool_queues():
    """Above capacity a slow member queues while three fast ones keep up: with queueOnConnectionLimit the
    default writes its limit (running + limit_queue), without it only ratios. (When half the pool queues,
    a pool-wide burst, limits are lifted instead: tests/unit/test_planner.py.)"""
    members = [{"name": "slow", "prefill_speed": 0.2, "decode_speed": 0.2, "kv_tokens": 100_000}]
    members += [{"name": f"fast{i}", "prefill_speed": 3.0, "decode_speed": 1.7, "kv_tokens": 100_000} for i in range(3)]
    base = {**TINY, "duration_s": 40, "members": members, "arrivals": {**TINY["arrivals"], "load": 1.2}}
    con = experiments.contenders()["default"]
    queued = simulator.run(scenario.parse({**base, "pool": {"queue_on_connection_limit": True}}), con)
    plain = simulator.run(scenario.parse(base), con)
    assert queued.limit_writes > 0 and plain.limit_writes == 0
    assert queued.rejected == 0 and len(queued.ttft) == queued.n


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
    assert {"lc", "rr", "sideband", "default", "static-best", "exact", "central"} <= set(data["contenders"])
    for figures in data["contenders"].values():
        assert set(figures) == JSON_KEYS
        assert 0 <= figures["slo_1s"] <= figures["slo_2s"] <= 1
        assert 0 <= figures["goodput_1s"] <= figures["goodput_2s"] <= figures["slo_2s"]
        assert figures["goodput_slo"] == figures["goodput_2s"]  # slo_s defaults to 2
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


def test_default_slo_is_the_controllers_own_queue_time_limit_write():
    """`default-slo` does not set the pool's queueTimeLimit itself: the planner plans it (weights.queue_time_limit:
    slo, the scenario's slo_s) and the run writes it once, as a write like the others."""
    sc = scenario.parse({**TINY, "duration_s": 20, "slo_s": 3})
    sims = {name: simulator.Sim(sc, experiments.contenders()[name]) for name in ("default-slo", "default")}
    results = {name: sim.run() for name, sim in sims.items()}
    slo, plain = sims["default-slo"].pool_view, sims["default"].pool_view
    assert slo.queue_on_connection_limit and slo.queue_time_limit_ms == 1500  # 0.5 x 3 s
    assert plain.queue_time_limit_ms == 0
    assert results["default-slo"].writes >= 1
