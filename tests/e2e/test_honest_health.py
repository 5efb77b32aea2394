"""Honest health and once-per-fault logs (issue 12, parts 4 and 5).

A blind tick (no active member of a pool with fresh metrics) is not ok; /healthz turns 503 after
`telemetry.blind_ticks` of them and names the pools; the metric and the log line say the same. An
hour-long BIG-IP outage is compressed with a FakeClock: the daemon's tick() is called once per fake
second (ticks it skips while backing off cost nothing), so an hour runs in a few seconds of real time.
"""

from __future__ import annotations

import logging

from controller.clock import FakeClock
from controller.faultlog import QUIET, FaultLog
from controller.model import Reason
from controller.telemetry import Telemetry
from tests.fault_rig import CapLog, daemon_for


def gauge(t: Telemetry, name: str, **labels) -> float | None:
    return t.registry.get_sample_value(f"f5lr_{name}", labels or None)


def test_blind_is_not_ok_healthz_503_within_blind_ticks_names_pools_and_200_one_tick_after(rig_factory):
    rig = rig_factory(pools=2)
    d, t = daemon_for(rig, blind_ticks=2)
    for _ in range(3):
        rig.clock.advance(1)
        d.tick()
    assert t.health()[0] == 200
    for s in rig.servers:
        s.fault = "missing"  # every member's page lacks the load metrics (a wrong metrics path looks the same)
    codes = []
    for _ in range(3):
        rig.clock.advance(1)
        report = d.tick()
        codes.append(t.health()[0])
        assert not report.ok and {o.reason for o in report.outcomes if o.pool} >= {Reason.BLIND}
    assert codes == [200, 503, 503]  # 503 from the 2nd blind tick (telemetry.blind_ticks = 2), within 3
    code, body = t.health()
    assert body["blind_pools"] == ["/Common/llm0", "/Common/llm1"] and "blind" in body["reason"]
    assert gauge(t, "pool_blind", pool="/Common/llm0") == 1 and gauge(t, "blind_ticks") == 3
    blind_lines = rig.log.named("pools_blind")
    assert len(blind_lines) == 1 and blind_lines[0]["pools"] == ["/Common/llm0", "/Common/llm1"]
    for s in rig.servers:
        s.fault = None
    rig.clock.advance(1)
    assert d.tick().ok
    assert t.health()[0] == 200  # within 1 tick of recovery
    assert gauge(t, "pool_blind", pool="/Common/llm0") == 0
    assert len(rig.log.named("pools_sighted")) == 1


def test_run_once_exits_1_and_the_daemon_agrees_when_blind(rig_factory):
    rig = rig_factory()
    d, _ = daemon_for(rig)
    for s in rig.servers:
        s.fault = "garbage"
    rig.clock.advance(1)
    report = d.tick()
    assert report.plans and report.plans[0].blind and not report.ok


def test_an_hour_long_bigip_outage_logs_at_most_two_lines_per_fault(rig_factory, caplog):
    rig = rig_factory(pools=2)
    d, t = daemon_for(rig)
    port = rig.emu.port
    for _ in range(3):
        rig.clock.advance(1)
        d.tick()
    rig.log.events.clear()
    caplog.clear()
    rig.emu.stop()
    with caplog.at_level(logging.INFO):
        ticks = 0
        live = set()
        for _ in range(3600):  # one fake hour, one tick call per fake second
            rig.clock.advance(1)
            if d.tick() is not None:
                ticks += 1
            live.add(t.health()[0])
        assert live == {200} and t.readiness()[0] == 503  # backing off is alive (liveness), not ready
        rig.emu.start(port=port)
        rig.clock.advance(1)
        d.skip_until = 0  # the first tick after BIG-IP returns (the backoff is tested elsewhere)
        report = d.tick()
    assert report is not None and report.ok and ticks >= 100
    events = [e for _, e, _ in rig.log.events] + [r.getMessage() for r in caplog.records if r.name.startswith("controller")]
    per_event = {e: events.count(e) for e in set(events)}
    faults = {"bigip_read_failed": 2, "bigip_read_recovered": 2,  # one line each per pool (2 pools)
              "bigip_unavailable_backoff": 1, "bigip_available_again": 1,
              "bigip_token_refresh_failed": 1, "bigip_login": 1}  # the token ran out during the outage: one new login
    for event, n in per_event.items():
        assert n <= faults.get(event, 0) or event == "ratio_changed", (event, n, per_event)
    assert all(" " not in e for e in per_event), per_event  # every event name is a snake_case key


def test_a_flapping_fault_is_rate_limited_over_an_hour_and_a_fault_that_stays_is_still_logged():
    clock, log = FakeClock(), CapLog()
    faults = FaultLog(log, clock=clock)
    for second in range(3600):  # failing every other second for an hour
        clock.advance(1)
        if second % 2:
            faults.fault("scrape:p|m", "scrape_failed", reason="timeout")
        else:
            faults.clear("scrape:p|m", "scrape_recovered")
    lines = len(log.events)
    assert lines <= 2 * (3600 / QUIET + 1), lines
    assert any("flaps" in f for _, _, f in log.events)
    # now it fails for good: within QUIET the log says so, whatever the last logged line was
    for _ in range(int(QUIET) + 2):
        clock.advance(1)
        faults.fault("scrape:p|m", "scrape_failed", reason="timeout")
    assert log.events[-1][1] == "scrape_failed"


def test_the_clear_line_carries_the_count_and_a_changed_reason_is_logged_again():
    clock, log = FakeClock(), CapLog()
    faults = FaultLog(log, clock=clock)
    for _ in range(5):
        faults.fault("write:p", "write_failed", signature="BigIPTimeout|None", error="no reply within 0.9s", count=2)
    faults.fault("write:p", "write_failed", signature="PermanentBigIPError|400", error="400")
    faults.clear("write:p", "write_recovered")
    assert [e for _, e, _ in log.events] == ["write_failed", "write_failed", "write_recovered"]
    assert log.events[-1][2]["count"] == 11
