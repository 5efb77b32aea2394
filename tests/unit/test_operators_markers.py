"""Operators in control (issue 24), in process: `pools[].exclude` read and checked, the hold and pause
markers matched, the planner's holds (tests/e2e/test_operators.py runs them against the emulator)."""

from __future__ import annotations

import pytest

from controller.config.schema import PoolConfig
from controller.model import Action, PoolRef


def test_pools_exclude_is_read_and_checked_naming_the_key():
    from controller.config import yamlfile
    from controller.errors import ConfigError

    base = {"f5": {"host": "192.0.2.1"}, "pools": [{"name": "p", "engine_type": "vllm",
                                                      "exclude": ["10.0.0.1:8000", "/Common/gpu-1:8000"]}]}
    cfg = yamlfile.parse(base, {"F5_PASSWORD": "pw"})
    assert cfg.pools[0].exclude == ("10.0.0.1:8000", "/Common/gpu-1:8000")
    assert cfg.pools[0].excludes("gpu-1:8000", "/Common/gpu-1:8000") and not cfg.pools[0].excludes("10.0.0.2:8000")
    base["pools"][0]["exclude"] = ["10.0.0.1", 7]
    with pytest.raises(ConfigError) as err:
        yamlfile.parse(base, {"F5_PASSWORD": "pw"})
    assert any(p.startswith("pools[0].exclude:") for p in err.value.problems)


@pytest.mark.parametrize(("text", "held"), [
    ("f5-llm-ratio: hold", True), ("admin: pinned for canary; F5-LLM-Ratio:hold", True),
    ("f5-llm-ratio:   HOLD until friday", True), ("f5-llm-ratio: holder", False), ("hold", False),
    ("f5-llm-ratio: score 0.82 q=3 2026-11-23T10:00Z", False), ("", False)])
def test_hold_marker_matching(text, held):
    from controller.model import held_by_admin, paused_by_admin

    assert held_by_admin(text) is held
    assert paused_by_admin(text.replace("hold", "pause").replace("HOLD", "PAUSE")) is held


def test_planner_holds_keep_ratio_and_count_share_and_pause_holds_all():
    from controller.config.schema import ModeConfig
    from controller.model import Member, PoolState, Sample, ScrapeResult
    from controller.policy.planner import plan_pool
    from controller.telemetry.status import shares

    members = tuple(Member(f"10.0.0.{i}:80", "Common", f"10.0.0.{i}", 80, r, description=d)
                    for i, (r, d) in enumerate([(500, "canary; f5-llm-ratio: hold"), (1, ""), (1, "")], start=1))
    scrapes = {m.key: ScrapeResult(m.key, 0.0, Sample(float(i), running=1.0, kv_usage=0.1 * i))
               for i, m in enumerate(members)}
    cfg = PoolConfig(PoolRef("p"), "vllm", mode=ModeConfig("s1"))
    plan, _ = plan_pool(PoolState(PoolRef("p"), "ratio-member", members), scrapes, cfg, {}, 100.0, 0.0)
    held, *others = plan.members
    assert held.action is Action.HELD and held.ratio == 500 and not held.changes and held.sample is not None
    assert all(p.changes for p in others)
    assert shares(plan)["10.0.0.1:80"] > 0.5  # its ratio still counts in the pool's total
    paused = PoolState(PoolRef("p"), "ratio-member", members, description="F5-LLM-RATIO: PAUSE for maintenance")
    plan, _ = plan_pool(paused, scrapes, cfg, {}, 100.0, 0.0)
    assert plan.paused and {p.action for p in plan.members} == {Action.PAUSED} and not plan.writes
    assert "would have planned ratio" in plan.members[1].reason
