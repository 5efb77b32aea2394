"""Migrating from the sideband scheduler (issue 20): its shipped config files, `fallback`, the config file
watch, the container's telemetry address; and `check` on each of its files against the emulator.

The config files are the sideband's own (tests/sideband_configs/, from github.com/f5devcentral/
llm-inference-lb at f254c3e, BSD 2-Clause, with f5.host pointed at 127.0.0.1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from controller import planner, policy, sideband_modes
from controller.config import FallbackConfig, ModeConfig, PoolConfig, WeightsConfig
from controller.configfile import load, parse
from controller.daemon import FileWatch
from controller.errors import ConfigError
from controller.model import Action, Member, PoolRef, PoolState, Sample, ScrapeResult

CONFIGS = Path(__file__).resolve().parent / "sideband_configs"
ENV = {"F5_PASSWORD": "f5-Pa55w0rd-xyzzy"}  # METRIC_PWD unset: the shipped files send their APIkey (Bearer)

# file: ([(pool, mode, pool_fallback, running threshold, waiting threshold)], unsupported pools, warnings)
SHIPPED = {
    "scheduler-config.yaml": (
        [("/Common/example_pool1", "s1_enhanced", False, 100.0, 100.0), ("/Common/example_pool2", "s1_enhanced", True, None, None)],
        [], 0),
    "scheduler-config.yaml.explanation.yaml": (
        [("/Common/example_pool1", "s1", False, None, None), ("/Common/example_pool2", "s1", False, None, None)], [], 1),
    "scheduler-config_xinfer_example.yaml": (
        [("/Common/example_pool2", "s1_enhanced", True, None, None)], ["/Common/example_pool1"], 1),
    "k8s-deployment-configmap.yaml": ([("/Common/example_pool1", "s1_enhanced", False, None, None)], [], 0),
    "readme-example-1.yaml": ([("/Common/llm-pool-1", "s1_enhanced", False, 20.0, 15.0)], [], 0),
    "readme-example-2.yaml": (
        [("/Common/llm-pool-1", "s2", False, 25.0, 20.0), ("/tenant-1/llm-pool-2", "s2", False, 30.0, None)], [], 0),
    "readme-zh-example-1.yaml": ([("/Common/llm-pool-1", "s1", False, 20.0, 15.0)], [], 0),
    "readme-zh-example-2.yaml": (
        [("/Common/llm-pool-1", "s2", False, 25.0, 20.0), ("/tenant-1/llm-pool-2", "s2", False, 30.0, None)], [], 0),
}


def test_the_fixtures_are_the_sidebands_files_with_attribution():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)
    assert "BSD 2-Clause" in (CONFIGS / "LICENSE").read_text() and "F5 DevCentral" in (CONFIGS / "LICENSE").read_text()
    for path in CONFIGS.glob("*.yaml"):
        head = path.read_text().splitlines()[:3]
        assert "f5devcentral/llm-inference-lb at f254c3e" in head[0] and "BSD 2-Clause" in head[1]
        assert yaml.safe_load(path.read_text())["f5"]["host"] == "127.0.0.1"  # never a real-looking address


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_file_loads(name):
    pools, unsupported, warnings = SHIPPED[name]
    cfg = load(str(CONFIGS / name), ENV)
    got = [(p.ref.full_path, p.mode.name, p.fallback.pool_fallback, p.fallback.member_running_req_threshold,
            p.fallback.member_waiting_queue_threshold) for p in cfg.pools]
    assert got == pools
    assert [path for path, _ in cfg.unsupported] == unsupported
    assert len(cfg.warnings) == warnings
    assert cfg.reload_interval == 5.0  # global.interval: 5 in every one of them


def test_the_annotated_file_lists_every_mode_with_its_parameters():
    cfg = load(str(CONFIGS / "scheduler-config.yaml.explanation.yaml"), ENV)
    names = [m.name for m in cfg.modes]
    assert names == ["s1", "s1_enhanced", "s1_ratio", "s1_adaptive", "s1", "s1_nonlinear", "s1_balanced",
                     "s1_adaptive_distribution", "s1_advanced", "s2_advanced", "s1_dynamic_waiting", "s2_dynamic_waiting"]
    dynamic = {m.name: m for m in cfg.modes}["s2_dynamic_waiting"]
    assert (dynamic.w_a, dynamic.w_b, dynamic.w_g, dynamic.transition_point, dynamic.steepness) == (0.4, 0.3, 0.3, 30.0, 1.0)
    assert cfg.modes[4] == ModeConfig("s1", 0.1, 0.9)  # s1_enhanced_high_cache: unknown to the sideband too
    assert any(n.startswith("modes[5].power") for n in cfg.notes)


def test_xinference_alone_is_a_config_error_naming_what_to_do():
    data = yaml.safe_load((CONFIGS / "scheduler-config_xinfer_example.yaml").read_text())
    data["pools"] = data["pools"][:1]
    with pytest.raises(ConfigError) as info:
        parse(data, ENV)
    assert "XInference is not supported" in str(info.value) and "keep the sideband scheduler" in str(info.value)


def test_metric_pwd_env_is_still_required_without_an_apikey():
    data = yaml.safe_load((CONFIGS / "scheduler-config.yaml").read_text())
    del data["pools"][0]["metrics"]["APIkey"]
    with pytest.raises(ConfigError) as info:
        parse(data, ENV)
    assert "pools[0].metrics.metric_pwd_env" in str(info.value)


# -- fallback in the planner ------------------------------------------------------------------------

REF = PoolRef("llm")
NOW, WALL = 1000.0, 1_790_000_000.0


def member(name, ratio=100, limit=0, session="monitor-enabled"):
    addr, port = name.split(":")
    return Member(name, "Common", addr, int(port), ratio, limit, session, "up", "")


def ok(name, waiting, kv, running):
    return ScrapeResult(name, NOW, Sample(waiting, running, kv))


ENHANCED = ModeConfig("s1_enhanced", 0.2, 0.6)


def plan(members, results, fallback, drive="ratio", mode=ENHANCED):
    cfg = PoolConfig(REF, "vllm", mode=mode, weights=WeightsConfig(drive=drive, max_step=1.0), fallback=fallback)
    state = PoolState(REF, "ratio-least-connections-member", tuple(members))
    p, _ = planner.plan_pool(state, {r.member: r for r in results}, cfg, {}, NOW, WALL)
    return {mp.member.key: mp for mp in p.members}, p


def test_pool_fallback_leaves_the_pool_to_bigip_with_equal_ratios():
    members = [member("a:1", 100), member("b:1", 30), member("c:1", 60, session="user-disabled")]
    got, p = plan(members, [ok("a:1", 0, 0.2, 1), ok("b:1", 9, 0.9, 30)], FallbackConfig(pool_fallback=True))
    assert (got["a:1"].ratio, got["b:1"].ratio, got["c:1"].ratio) == (100, 100, 60)  # the disabled one untouched
    assert got["b:1"].action == Action.POOL_FALLBACK and got["c:1"].action == Action.SKIP_INACTIVE
    assert p.note == planner.POOL_FALLBACK_NOTE and [w.member.key for w in p.writes] == ["b:1"]
    # still scored, as the sideband keeps scoring it (its /pools/status shows score and percent)
    assert got["a:1"].score > got["b:1"].score
    equal, p2 = plan([member("a:1", 40), member("b:1", 40)], [ok("a:1", 0, 0.2, 1)], FallbackConfig(pool_fallback=True))
    assert not p2.writes  # already equal: nothing to write
    # limits this controller drives are lifted (0: unlimited); ratios only: an admin's limit stays
    limited = [member("a:1", 40, limit=8), member("b:1", 40, limit=12)]
    lifted, _ = plan(limited, [ok("a:1", 0, 0.2, 1)], FallbackConfig(pool_fallback=True), drive="both")
    assert [mp.connection_limit for mp in lifted.values()] == [0, 0]
    kept, _ = plan(limited, [ok("a:1", 0, 0.2, 1)], FallbackConfig(pool_fallback=True))
    assert [mp.connection_limit for mp in kept.values()] == [8, 12]


@pytest.mark.parametrize(
    "fallback, over",
    [
        (FallbackConfig(member_running_req_threshold=20), {"b:1"}),  # running 30 > 20
        (FallbackConfig(member_waiting_queue_threshold=5), {"b:1"}),  # waiting 9 > 5
        (FallbackConfig(member_waiting_queue_threshold=9), set()),  # strictly above, as the sideband compares
        (FallbackConfig(member_running_req_threshold=0.5, member_waiting_queue_threshold=100), {"a:1", "b:1"}),
        (FallbackConfig(), set()),
    ],
)
def test_a_member_over_a_threshold_takes_no_new_connections(fallback, over):
    members = [member("a:1", 100), member("b:1", 100), member("c:1", 100)]
    got, _ = plan(members, [ok("a:1", 0, 0.2, 1), ok("b:1", 9, 0.9, 30)], fallback, drive="both")
    assert {k for k, mp in got.items() if mp.action == Action.OVER_THRESHOLD} == over
    for key in over:
        assert (got[key].ratio, got[key].connection_limit) == (10, 1)  # floor ratio, limit 1
        assert "no new connections" in got[key].reason and "threshold" in got[key].reason
    assert got["c:1"].action != Action.OVER_THRESHOLD  # no metrics: kept, as the sideband keeps it


def test_over_threshold_with_ratios_only_leaves_the_limit():
    got, _ = plan([member("a:1", 100, limit=0), member("b:1", 100)], [ok("a:1", 50, 0.2, 1), ok("b:1", 0, 0.1, 1)],
                  FallbackConfig(member_waiting_queue_threshold=10))
    assert (got["a:1"].ratio, got["a:1"].connection_limit, got["a:1"].action) == (10, 0, Action.OVER_THRESHOLD)


def test_fallback_is_logged_when_it_starts_and_ends_not_every_tick():
    from controller.clock import FakeClock
    from controller.config import AppConfig, F5Config, SchedulerConfig
    from controller.reconcile import Reconciler
    from tests.fakes import FakeBigIP, FakeScraper, fake_target_for
    from tests.fault_rig import CapLog

    clock, log = FakeClock(), CapLog()
    members = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, 100) for i in (1, 2))
    pools = (PoolConfig(REF, "vllm", mode=ENHANCED, fallback=FallbackConfig(member_running_req_threshold=20)),
             PoolConfig(PoolRef("other"), "vllm", mode=ENHANCED, fallback=FallbackConfig(pool_fallback=True)))
    cfg = AppConfig(F5Config("bigip.example"), pools, SchedulerConfig(metrics_fetch_interval_ms=3000))
    bigip = FakeBigIP(PoolState(REF, "ratio-least-connections-member", members))
    bigip.pools["/Common/other"] = PoolState(PoolRef("other"), "ratio-least-connections-member", members)
    scraper = FakeScraper(clock)
    rec = Reconciler(cfg, bigip, scraper, clock=clock, target_for=fake_target_for, log=log)
    busy = {"10.0.0.1:8000": Sample(0, running=4, kv_usage=0.1), "10.0.0.2:8000": Sample(2, running=30, kv_usage=0.5)}
    scraper.samples = busy
    for _ in range(3):
        rec.tick()
        clock.advance(3)
    (over,) = log.named("member_over_threshold")
    assert over["member"] == "10.0.0.2:8000" and "running 30 > 20" in over["reason"]
    assert len(log.named("pool_fallback", pool="/Common/other")) == 1
    scraper.samples = {**busy, "10.0.0.2:8000": Sample(2, running=5, kv_usage=0.5)}
    rec.tick()
    assert len(log.named("member_under_threshold", member="10.0.0.2:8000")) == 1


# -- the sideband's modes drive ratios through the planner ----------------------------------------

@pytest.mark.parametrize("name", sideband_modes.SIDEBAND_MODES)
def test_each_sideband_mode_plans_ratios_in_score_order(name):
    mode = ModeConfig(name, 0.4, 0.4, 0.2)
    results = [ok("a:1", 0, 0.1, 1), ok("b:1", 4, 0.5, 10), ok("c:1", 20, 0.95, 30)]
    got, _ = plan([member("a:1", 100), member("b:1", 100), member("c:1", 100)], results, FallbackConfig(), mode=mode)
    scores = policy.score({r.member: r.sample for r in results}, mode)
    assert {k: mp.score for k, mp in got.items()} == pytest.approx(scores)
    assert got["a:1"].ratio >= got["b:1"].ratio >= got["c:1"].ratio


# -- the config file watch --------------------------------------------------------------------------

def test_file_watch_sees_content_changes_not_touches(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")
    watch = FileWatch(str(path))
    assert not watch.changed()
    os.utime(path, (time.time() + 5, time.time() + 5))  # touched: new mtime, same bytes
    assert not watch.changed()
    path.write_text("a: 2\n")
    assert watch.changed() and not watch.changed()
    # a ConfigMap update: the file is a symlink whose target is swapped
    target = tmp_path / "..data-2"
    target.write_text("a: 3\n")
    path.unlink()
    path.symlink_to(target)
    assert watch.changed()
    path.unlink()
    assert watch.changed()  # gone: the reload then says why and keeps the old config
    watch.refresh()
    assert not watch.changed()


# -- the container's telemetry address ---------------------------------------------------------------

def test_telemetry_address_from_the_environment_when_the_file_has_none():
    data = yaml.safe_load((CONFIGS / "k8s-deployment-configmap.yaml").read_text())
    cfg = parse(data, {**ENV, "F5LR_TELEMETRY_HOST": "0.0.0.0", "F5LR_TELEMETRY_PORT": "8080"})
    assert (cfg.telemetry.host, cfg.telemetry.port) == ("0.0.0.0", 8080)
    data["telemetry"] = {"host": "127.0.0.1"}  # the file wins
    assert parse(data, {**ENV, "F5LR_TELEMETRY_HOST": "0.0.0.0"}).telemetry.host == "127.0.0.1"
    with pytest.raises(ConfigError) as info:
        parse(data, {**ENV, "F5LR_TELEMETRY_PORT": "http"})
    assert "F5LR_TELEMETRY_PORT" in str(info.value)


# -- `check` and `plan` on every shipped file, against the emulator ------------------------------------

@pytest.fixture(scope="module")
def emulator():
    from bench import sideband_migration as mig

    bigip, servers, _ = mig.start()
    yield mig, bigip
    for s in servers:
        s.stop()
    bigip.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_check_accepts_every_shipped_file(emulator, tmp_path, name):
    mig, bigip = emulator
    path = mig.for_emulator(CONFIGS / name, bigip, tmp_path / name)
    code, doc = mig.cli("check", "--config", str(path))
    assert code in (0, 1), doc  # never 2: the file is accepted
    fails = {f["code"] for f in doc["findings"] if f["severity"] == "fail"}
    warns = [f for f in doc["findings"] if f["code"] == "config-warning"]
    assert len(warns) == SHIPPED[name][2]
    if SHIPPED[name][1]:
        assert "unsupported-engine" in fails
    if name.startswith("readme") and name.endswith("2.yaml"):
        assert fails == {"metrics-refused"}  # its second pool scrapes https://...:9090/custom/metrics: nothing listens
    elif not SHIPPED[name][1]:
        assert code == 0 and not fails


@pytest.mark.e2e
def test_plan_gives_the_sidebands_scores_and_percent(emulator, tmp_path):
    mig, bigip = emulator
    path = mig.for_emulator(CONFIGS / "scheduler-config.yaml", bigip, tmp_path / "s.yaml")
    code, doc = mig.cli("plan", "--config", str(path))
    assert code == 0
    pools = {p["full_path"]: p for p in doc["pools"]}
    ms = pools["/Common/example_pool1"]["members"]
    w, c, r = ([m["metrics"][k] for m in ms] for k in ("waiting_queue", "cache_usage", "running_req"))
    theirs = sideband_modes.scores("s1_enhanced", w, c, r, ModeConfig("s1_enhanced", 0.2, 0.6))
    assert [m["score"] for m in ms] == pytest.approx(theirs, abs=2e-4)  # figures shown to 4 decimals
    assert [m["percent"] for m in ms] == pytest.approx(list(sideband_modes.percents(dict(enumerate(theirs))).values()), abs=0.02)
    assert all(m["ratio_percent"] == 25.0 for m in ms)  # plan writes nothing: the current, equal ratios
    fallback = pools["/Common/example_pool2"]
    assert {m["action"] for m in fallback["members"]} == {"pool-fallback"}
    assert sum(m["percent"] for m in fallback["members"]) == pytest.approx(100.0, abs=0.02)


def _get_json(url: str) -> tuple[int, dict] | None:
    import json
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return None


@pytest.mark.e2e
def test_the_sidebands_configmap_runs_serves_its_api_and_follows_a_configmap_update(tmp_path):
    """`run` on the sideband's own ConfigMap, laid out as the kubelet mounts it (config.yaml -> ..data/config.yaml,
    ..data -> a timestamped directory, swapped on update), with the container's telemetry address from the
    environment: /health answers 200 with the sideband's body, /pools/status gives the sideband's score and
    percent, and a ConfigMap update (the ..data swap, no signal) is reloaded."""
    from bench import sideband_migration as mig
    from tests.e2e_env import Daemon, assert_clean, cli_env, free_port, wait_for

    bigip, servers, _ = mig.start()
    d = None
    try:
        def version(name: str, changes: dict) -> str:
            (tmp_path / name).mkdir()
            path = mig.for_emulator(CONFIGS / "k8s-deployment-configmap.yaml", bigip, tmp_path / name / "config.yaml")
            data = yaml.safe_load(path.read_text())
            data["global"]["interval"] = 0.5  # the file's 5 s, shortened for the test
            for key, value in changes.items():
                data[key] = value
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            return name

        (tmp_path / "..data").symlink_to(version("..2026_12_07_01", {}))
        (tmp_path / "config.yaml").symlink_to("..data/config.yaml")
        port = free_port()
        env = cli_env(F5_PASSWORD=mig.PASSWORD, METRIC_PWD=None, F5LR_TELEMETRY_HOST="127.0.0.1",
                      F5LR_TELEMETRY_PORT=str(port))
        d = Daemon(tmp_path / "config.yaml", env=env)
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _get_json(base + "/health"), 20, what="/health") == (
            200, {"status": "healthy", "message": "Scheduler running normally"})

        def scored(policy_name: str):
            got = _get_json(base + "/pools/status")
            if not got or not got[1].get("pools"):
                return None
            (pool,) = got[1]["pools"]
            ok = pool.get("policy") == policy_name and all(m["score"] is not None for m in pool["members"])
            return pool if ok else None

        pool = wait_for(lambda: scored("s1_enhanced"), 20, what="scores on /pools/status")
        ms = pool["members"]
        w, c, r = ([m["metrics"][k] for m in ms] for k in ("waiting_queue", "cache_usage", "running_req"))
        theirs = sideband_modes.scores("s1_enhanced", w, c, r, ModeConfig("s1_enhanced", 0.2, 0.8))
        assert [m["score"] for m in ms] == pytest.approx(theirs, abs=2e-4)
        assert [m["percent"] for m in ms] == pytest.approx(list(sideband_modes.percents(dict(enumerate(theirs))).values()),
                                                           abs=0.02)

        # the ConfigMap is updated: the kubelet swaps ..data atomically; no signal reaches the process
        (tmp_path / "..data.new").symlink_to(version("..2026_12_07_02", {"modes": [{"name": "s2", "w_a": 0.4, "w_b": 0.3,
                                                                                     "w_g": 0.3}]}))
        os.replace(tmp_path / "..data.new", tmp_path / "..data")
        d.wait_event("config_reloaded", timeout=20)
        pool = wait_for(lambda: scored("s2"), 20, what="s2 scores after the update")
        assert sum(m["percent"] for m in pool["members"]) == pytest.approx(100.0, abs=0.05)
        assert d.stop()[0] == 0
        assert_clean(d.out, d.err, secrets=(mig.PASSWORD, "abcdefdfdsfds"))  # no traceback; neither the password nor the APIkey
    finally:
        if d is not None:
            d.close()
        for s in servers:
            s.stop()
        bigip.stop()
