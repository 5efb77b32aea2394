"""Operators in control (issue 24): per-pool health, hold and pause from BIG-IP descriptions, reasons with
their terms, pool figures on /metrics; against the BIG-IP emulator and engine servers on 127.0.0.1."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.config.schema import PoolConfig
from controller.loop.daemon import Daemon
from controller.model import Action, PoolRef, Reason
from controller.telemetry import Telemetry
from tests.fault_rig import daemon_for


def sample(t: Telemetry, name: str, **labels) -> float | None:
    return t.registry.get_sample_value(f"f5lr_{name}", labels or None)


def tick(rig, d: Daemon):
    rig.clock.advance(1)
    return d.tick()


def plan_of(report, pool: str):
    return next(p for p in report.plans if p.pool.ref.full_path == pool)


# -- 1. health per pool -----------------------------------------------------------------------------

def test_one_missing_pool_keeps_healthz_200_and_readyz_names_it(rig_factory):
    rig = rig_factory()
    missing = PoolConfig(PoolRef("gone"), "vllm")
    d, t = daemon_for(rig, replace(rig.cfg, pools=(*rig.cfg.pools, missing)))
    t.set_pools({p.ref.full_path: p.engine_type for p in rig.cfg.pools})
    for _ in range(4):
        report = tick(rig, d)
        assert report.pool_result("/Common/llm0") == "ok" and report.pool_result("/Common/gone") == "error"
    assert rig.ratios() != [1, 1, 1]  # the good pool keeps being written
    assert t.health()[0] == 200  # liveness: the loop runs
    code, body = t.readiness()
    assert code == 503 and not body["ready"]
    assert [p["pool"] for p in body["not_ready"]] == ["/Common/gone"]
    assert "404" in body["not_ready"][0]["reason"] or "not found" in body["not_ready"][0]["reason"].lower()
    assert sample(t, "pool_ready", pool="/Common/llm0") == 1 and sample(t, "pool_ready", pool="/Common/gone") == 0
    assert sample(t, "pool_ticks_total", pool="/Common/llm0", result="ok") == 4
    assert sample(t, "pool_ticks_total", pool="/Common/gone", result="error") == 4
    assert sample(t, "last_tick_timestamp_seconds") > 0
    code, _, text = t.route("/readyz")  # the HTTP answer, as a probe sees it
    assert code == 503 and b'"pool":"/Common/gone"' in text and t.route("/healthz")[0] == 200
    metrics = t.metrics()[0].decode()
    assert 'f5lr_pool_ready{pool="/Common/gone"} 0.0' in metrics and 'f5lr_pool_ready{pool="/Common/llm0"} 1.0' in metrics
    rig.emu.add_pool("/Common/gone", members=[{"name": m} for m in rig.members])
    rig.rec.cache.clear()
    tick(rig, d)
    assert t.readiness()[0] == 200 and sample(t, "pool_ready", pool="/Common/gone") == 1


def test_healthz_503_only_when_every_pool_is_blind_past_blind_ticks(rig_factory):
    rig = rig_factory(pools=2)
    d, t = daemon_for(rig)
    tick(rig, d)
    for s in rig.servers:
        s.fault = "missing"
    codes = [(tick(rig, d), t.health()[0])[1] for _ in range(3)]
    assert codes == [200, 503, 503]
    assert t.readiness()[1]["not_ready"][0]["result"] == "blind"


# -- 2. hold, pause, exclude, hand edits -----------------------------------------------------------

def test_a_held_member_keeps_its_ratio_and_is_logged_once(rig_factory):
    rig = rig_factory(ratios=[500, 1, 1])  # a canary pinned by hand at 500
    d, t = daemon_for(rig)
    canary = rig.members[0]
    rig.emu.set_member("/Common/llm0", canary, description="admin: pinned for canary; f5-llm-ratio: hold")
    rig.rec.cache.clear()
    for _ in range(4):
        report = tick(rig, d)
    assert rig.ratios()[0] == 500 and rig.patches(canary) == []
    held = next(p for p in plan_of(report, "/Common/llm0").members if p.member.key == canary)
    assert held.action is Action.HELD and "f5-llm-ratio: hold" in held.reason
    assert len(rig.log.named("member_held")) == 1
    member = next(m for m in t.status()["pools"][0]["members"] if m["name"] == canary)
    assert member["action"] == "held" and member["ratio"] == 500
    assert sample(t, "member_held", pool="/Common/llm0", member=canary) == 1
    rig.emu.set_member("/Common/llm0", canary, description="")
    rig.rec.cache.clear()
    tick(rig, d)
    assert len(rig.log.named("member_released")) == 1 and rig.ratios()[0] <= 100


def test_a_paused_pool_gets_no_writes_and_is_not_ready(rig_factory):
    rig = rig_factory()
    d, t = daemon_for(rig)
    rig.emu.set_pool("/Common/llm0", description="maintenance; f5-llm-ratio: pause")
    for _ in range(3):
        report = tick(rig, d)
    assert rig.ratios() == [1, 1, 1] and rig.patches() == []
    assert report.ok and report.pool_result("/Common/llm0") == "paused"
    assert {p.action for p in plan_of(report, "/Common/llm0").members} == {Action.PAUSED}
    assert any(o.reason is Reason.PAUSED for o in report.outcomes)
    assert len(rig.log.named("pool_paused")) == 1
    code, body = t.readiness()
    assert code == 503 and body["not_ready"][0]["result"] == "paused"
    assert sample(t, "pool_paused", pool="/Common/llm0") == 1 and sample(t, "pool_ready", pool="/Common/llm0") == 0
    assert t.health()[0] == 200
    rig.emu.set_pool("/Common/llm0", description="")
    rig.rec.cache.clear()
    tick(rig, d)
    assert len(rig.log.named("pool_resumed")) == 1 and rig.ratios() != [1, 1, 1]


def test_pools_exclude_keeps_a_member_by_name(rig_factory):
    rig = rig_factory()
    pool = replace(rig.cfg.pools[0], exclude=(rig.members[2],))
    d, _ = daemon_for(rig, replace(rig.cfg, pools=(pool,)))
    for _ in range(3):
        report = tick(rig, d)
    assert rig.ratios()[2] == 1 and rig.ratios()[0] != 1
    excluded = plan_of(report, "/Common/llm0").members[2]
    assert excluded.action is Action.EXCLUDED and excluded.sample is not None  # still read and counted
    assert len(rig.log.named("member_excluded")) == 1


def test_a_hand_edit_of_an_owned_ratio_is_logged_once_with_old_and_new(rig_factory):
    rig = rig_factory()
    d, _ = daemon_for(rig)
    for _ in range(4):
        tick(rig, d)
    member = rig.members[0]
    ours = rig.ratios()[0]
    rig.emu.set_member("/Common/llm0", member, ratio=7)
    rig.rec.cache.clear()
    for _ in range(3):
        tick(rig, d)
    lines = rig.log.named("hand_edit_overwritten")
    assert len(lines) == 1
    assert lines[0]["member"] == member and lines[0]["old"] == ours and lines[0]["new"] == 7
    assert "f5-llm-ratio: hold" in lines[0]["hint"]


# -- 3. reasons with their terms -----------------------------------------------------------------

def test_a_step_clipped_change_says_so_with_its_terms(rig_factory):
    rig = rig_factory()
    d, _ = daemon_for(rig)
    report = tick(rig, d)
    rows = {p.member.key: p for p in plan_of(report, "/Common/llm0").members}
    best = rows[rig.members[0]]
    assert best.member.ratio == 1 and best.ratio == 60
    assert "step clip" in best.reason and "target ratio 100" in best.reason
    assert "queue share" in best.reason and "KV" in best.reason and "vs pool" in best.reason
    note = rig.emu.member("/Common/llm0", rig.members[0])["description"]
    assert "step clip" in note and "kv" in note
    changed = rig.log.named("ratio_changed")
    assert any("step clip" in line["reason"] for line in changed)


# -- 7. pool figures ------------------------------------------------------------------------------

def test_pool_figures_on_metrics(rig_factory):
    rig = rig_factory()
    d, t = daemon_for(rig)
    tick(rig, d)
    assert sample(t, "pool_waiting_requests", pool="/Common/llm0") == pytest.approx(4.0)
    assert sample(t, "pool_kv_usage_ratio", pool="/Common/llm0") == pytest.approx(0.5)
    assert sample(t, "pool_ready_members", pool="/Common/llm0") == 3
    assert sample(t, "pool_active_members", pool="/Common/llm0") == 3
    rig.servers[1].fault = "garbage"
    tick(rig, d)
    assert sample(t, "pool_ready_members", pool="/Common/llm0") == 2




def test_a_hand_edit_is_recognised_after_a_restart_from_the_instances_own_note(rig_factory):
    rig = rig_factory(instance="ctl-abc123")
    d, _ = daemon_for(rig)
    for _ in range(4):
        tick(rig, d)
    member = rig.members[0]
    ours = rig.ratios()[0]
    assert f"(ratio {ours}" in rig.emu.member("/Common/llm0", member)["description"]
    rig.rec.bigip.close()
    rig.rec = rig.reconciler()  # a restarted process: no memory of its writes
    d2, _ = daemon_for(rig)
    rig.emu.set_member("/Common/llm0", member, ratio=7)
    for _ in range(3):
        tick(rig, d2)
    lines = rig.log.named("hand_edit_overwritten")
    assert len(lines) == 1 and (lines[0]["old"], lines[0]["new"]) == (ours, 7)






def test_check_warns_about_a_paused_pool_and_names_held_members(rig_factory):
    from controller.loop import preflight

    rig = rig_factory()
    rig.emu.set_pool("/Common/llm0", description="f5-llm-ratio: pause")
    rig.emu.set_member("/Common/llm0", rig.members[0], description="f5-llm-ratio: hold")
    row, state = preflight.check_pool(rig.rec.bigip, rig.cfg.pools[0])
    assert row.code == "pool-paused" and row.status == preflight.WARN and state is not None
    assert "1 held by an admin" in row.detail and rig.members[0] in row.detail
