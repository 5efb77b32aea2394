"""Planner: only what BIG-IP would accept and act on is planned as a write (issue 11)."""

from __future__ import annotations

import pytest

from controller import model
from controller.config.schema import PoolConfig, WeightsConfig
from controller.model import Action, Member, PoolRef, PoolState, Sample, ScrapeResult
from controller.policy import planner

REF = PoolRef("llm")


def _pool(mode: str, *members: Member) -> PoolState:
    return PoolState(ref=REF, load_balancing_mode=mode, members=members)


def _member(i: int, **kw) -> Member:
    return Member(name=f"10.0.0.{i}:8000", partition="Common", address=f"10.0.0.{i}", port=8000, **kw)


def _plan(pool: PoolState, drive: str = "ratio"):
    scrapes = {m.key: ScrapeResult(m.key, 0.0, sample=Sample(waiting=i * 5, running=2, kv_usage=0.2 * i,
                                                             kv_max_concurrency=40))
               for i, m in enumerate(pool.members) if m.active}
    cfg = PoolConfig(ref=REF, engine_type="vllm", weights=WeightsConfig(drive=drive, max_connections=50))
    plan, _ = planner.plan_pool(pool, scrapes, cfg, {}, 0.0, 0.0)
    return plan


@pytest.mark.parametrize("mode", ["ratio-member", "ratio-least-connections-member"])
def test_ratio_modes_get_ratio_writes(mode):
    plan = _plan(_pool(mode, _member(1), _member(2), _member(3)))
    assert any("ratio" in p.changes for p in plan.members)
    assert model.mode_problem(plan.pool) == ""


@pytest.mark.parametrize("mode", ["round-robin", "least-connections-member", "ratio-node", "ratio-least-connections-node",
                                  "dynamic-ratio-member", "dynamic-ratio-node", "observed-member", "predictive-member"])
def test_other_modes_get_no_ratio_writes_and_a_reason_with_the_fix(mode):
    plan = _plan(_pool(mode, _member(1), _member(2), _member(3)))
    assert all("ratio" not in p.changes for p in plan.members)
    why = model.mode_problem(plan.pool)
    assert mode in why and "tmsh modify ltm pool /Common/llm load-balancing-mode ratio-least-connections-member" in why


def test_connection_limits_are_written_in_any_mode():
    plan = _plan(_pool("round-robin", _member(1), _member(2)), drive="both")
    changes = [p.changes for p in plan.members if p.changes]
    assert changes and all("ratio" not in c and "connectionLimit" in c for c in changes)


def test_ephemeral_members_are_planned_but_never_written():
    plan = _plan(_pool("ratio-least-connections-member", _member(1), _member(2, ephemeral=True),
                       _member(3, ephemeral=True)), drive="both")
    eph = [p for p in plan.members if p.member.ephemeral]
    assert all(p.changes == {} for p in eph) and any(p.action is Action.NOT_WRITABLE for p in eph)
    assert model.fqdn_problem(plan.pool) == ""


def test_fqdn_template_is_not_active_nor_written_and_all_ephemeral_is_not_steerable():
    template = Member(name="llm.example.com:8000", partition="Common", address="any6", port=8000, state="fqdn-up",
                      fqdn_template=True)
    pool = _pool("ratio-least-connections-member", template, _member(2, ephemeral=True))
    plan = _plan(pool)
    assert not template.active and plan.members[0].action is Action.SKIP_INACTIVE
    assert "FQDN template" in plan.members[0].reason
    assert all(p.changes == {} for p in plan.members)
    assert "ephemeral FQDN members" in model.fqdn_problem(pool)


def test_display_shows_the_name_and_the_address_where_they_differ():
    named = Member(name="gpu-node-1:8000", partition="Common", address="10.0.0.7", port=8000)
    assert named.display == "gpu-node-1:8000 (10.0.0.7)"
    assert _member(1).display == "10.0.0.1:8000"
    rd = Member(name="10.0.0.1%2:8000", partition="Common", address="10.0.0.1%2", port=8000)
    assert rd.display == "10.0.0.1%2:8000"
