"""Migrating from the sideband scheduler (issue 20): its shipped config files, `fallback`, the config file
watch, the container's telemetry address (`check` on each of its files against the emulator is in
tests/e2e/test_sideband_migration_check.py).

The config files are the sideband's own (tests/sideband_configs/, from github.com/f5devcentral/
llm-inference-lb at f254c3e, BSD 2-Clause, with f5.host pointed at 127.0.0.1).
"""

from __future__ import annotations

import os
import time

import pytest
import yaml

from controller.config.schema import FallbackConfig, ModeConfig, PoolConfig, WeightsConfig
from controller.config.yamlfile import load, parse
from controller.errors import ConfigError
from controller.loop.daemon import FileWatch
from controller.model import Action, Member, PoolRef, PoolState, Sample, ScrapeResult
from controller.policy import planner, scoring, sideband_modes
from tests.sideband_files import CONFIGS, ENV, SHIPPED


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
    from controller.config.schema import AppConfig, F5Config, SchedulerConfig
    from controller.loop.reconcile import Reconciler
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
    scores = scoring.score({r.member: r.sample for r in results}, mode)
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









