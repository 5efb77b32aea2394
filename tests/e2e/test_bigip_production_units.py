"""Issue 22 on the BIG-IP emulator over HTTPS: active/active device groups, accounts that may not read cm/*
or write, `f5.standalone`, the emulator behaving like a real unit in each case, and the token bench
(tests/unit/test_bigip_production.py has the in-process half: priority groups, role checks, targets)."""

from __future__ import annotations

import dataclasses

import pytest

from controller.config.schema import F5Config
from controller.errors import NotActiveError, StateUnreadableError
from controller.loop import preflight
from controller.ltm.failover import FailoverClient
from controller.model import Action, Member, MemberPlan, PoolRef
from controller.sim.bigip import BigIPEmulator, HAPair
from tests.sim_bigip_support import Client

USERS = {"admin": "secret", "audit": "audit-pw", "ops": "ops-pw", "mgr": "mgr-pw"}
ROLES = {"audit": "auditor", "ops": "operator", "mgr": "manager"}
REF = PoolRef("llm")


class Log:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event, **kw):
        self.lines.append((event, kw))

    info = error = warning

    def named(self, event):
        return [kw for e, kw in self.lines if e == event]


@pytest.fixture
def pair():
    p = HAPair(BigIPEmulator(dict(USERS), hostname="a.example.com", roles=dict(ROLES)),
               BigIPEmulator(dict(USERS), hostname="b.example.com", roles=dict(ROLES)))
    p.add_pool("/Common/llm", ["10.0.0.1:8000"])
    p.start()
    yield p
    p.stop()


def ha_client(pair, hosts=None, user="admin", log=None, **kw):
    cfg = F5Config(host=pair.hosts[0], hosts=tuple(hosts or pair.hosts), port=pair.a.port, username=user,
                   password=USERS[user], verify_tls=pair.cert_path, timeout=5, **kw)
    if len(cfg.hosts) == 1:
        cfg = dataclasses.replace(cfg, host=cfg.hosts[0], hosts=())
    return FailoverClient(cfg, log=log or Log(), sleep=lambda s: None)


def _plan(m: Member, ratio: int) -> MemberPlan:
    return MemberPlan(member=m, sample=None, score=None, ratio=ratio, connection_limit=0, action=Action.WRITE)


@pytest.mark.parametrize("floating", [True, False])
def test_active_active_is_read_and_written_on_one_unit_and_synced(pair, floating):
    pair.set_active_active(floating=floating)
    log = Log()
    c = ha_client(pair, log=log)
    assert c.unit() == pair.hosts[0] and c.active_active
    state = c.read_pool(REF)
    result = c.apply(REF, [_plan(state.members[0], 42)])
    assert not result.failed
    assert pair.a.ratios("/Common/llm") == pair.b.ratios("/Common/llm") == {"10.0.0.1:8000": 42}  # auto-sync
    assert [h for h, _ in pair.writes()] == ["a.example.com"]  # one write, on one unit
    assert c.unit() == pair.hosts[0]  # it stays on the unit in use
    rows = preflight.check_units(c)
    assert [r.code for r in rows] == ["unit-active", "unit-active", "active-active"] and not preflight.blocking(rows)
    c.close()


def test_active_active_follows_to_the_other_unit_when_one_leaves(pair):
    pair.set_active_active()
    c = ha_client(pair)
    assert c.unit() == pair.hosts[0]
    pair.a.set_failover_state("standby")
    assert c.unit() == pair.hosts[1] and c.failovers == 1
    c.close()


def test_split_brain_stays_an_error_and_says_which_traffic_group(pair):
    pair.split_brain()
    c = ha_client(pair)
    with pytest.raises(NotActiveError, match="traffic-group-1 active on /Common/a.example.com, /Common/b.example.com"):
        c.unit()
    assert "split brain" in str(pytest.raises(NotActiveError, c.read_pool, REF).value)
    rows = preflight.check_units(c)
    assert rows[-1].code == "split-brain" and preflight.blocking(rows)
    assert pair.writes() == []
    c.close()


def test_active_units_in_no_sync_failover_group_are_not_taken_for_active_active(pair):
    pair.set_active_active()
    for unit in pair.units:
        unit._device_groups = [g for g in unit._device_groups if g["type"] != "sync-failover"]
    c = ha_client(pair)
    with pytest.raises(NotActiveError, match="share no sync-failover device group"):
        c.unit()
    c.close()


def cm_calls(unit: BigIPEmulator) -> list[str]:
    return [r.path for r in unit.request_log if r.path.startswith("/mgmt/tm/cm/")]


@pytest.mark.parametrize("status, plain", [(401, False), (401, True), (403, False), (404, False)])
def test_unreadable_cm_means_nothing_written_with_the_fix_and_one_ask_per_tick(pair, status, plain):
    pair.a.deny_cm("mgr", status, plain=plain)
    c = ha_client(pair, hosts=[pair.hosts[0]], user="mgr")
    for _tick in range(3):
        c.begin_tick(5.0)
        for _call in range(4):  # a tick asks per pool read and per write
            with pytest.raises(StateUnreadableError) as info:
                c.unit()
        c.end_tick()
    text = str(info.value)
    assert "lacks permission to read /mgmt/tm/cm/*" in text and "f5.standalone: true" in text and f"HTTP {status}" in text
    assert len(cm_calls(pair.a)) == 3 * 2  # failover-status and cm/device, once each per tick, never retried
    assert pair.a.logins == 1  # a 401 on cm/* is not taken for an expired token
    assert pair.writes() == []
    rows = preflight.check_units(c)
    assert [r.code for r in rows] == ["cm-unreadable"] and rows[0].status == preflight.FAIL
    c.close()


def test_unreadable_cm_with_a_list_says_why(pair):
    c = ha_client(pair, user="audit")  # Auditor: refused on cm/* on both units
    with pytest.raises(StateUnreadableError, match="lacks permission"):
        c.unit()
    c.close()


def test_standalone_never_asks_cm_and_writes(pair):
    pair.a.deny_cm("mgr", 401)
    c = ha_client(pair, hosts=[pair.hosts[0]], user="mgr", standalone=True)
    state = c.read_pool(REF)
    assert not c.apply(REF, [_plan(state.members[0], 7)]).failed
    assert pair.a.ratios("/Common/llm")["10.0.0.1:8000"] == 7
    assert cm_calls(pair.a) == []
    rows = preflight.check_units(c) + [preflight.check_sync(c)]
    assert [r.code for r in rows] == ["unit-standalone", "config-sync"] and not preflight.blocking(rows)
    assert cm_calls(pair.a) == []
    c.close()


def test_an_operator_patch_is_refused_by_mcpd_and_said_plainly(pair):
    c = ha_client(pair, hosts=[pair.hosts[0]], user="ops")
    state = c.read_pool(REF)
    result = c.apply(REF, [_plan(state.members[0], 9)])
    (_, error), = result.failed
    assert "01070822" in str(error) and "needs the Manager role" in str(error)
    c.close()


@pytest.fixture
def emu():
    with BigIPEmulator(dict(USERS), roles=dict(ROLES)) as e:
        yield e


def test_emulator_takes_the_token_timeout_as_a_string(emu):
    c = Client(emu)
    c.login("admin", "secret")
    token = c.headers["X-F5-Auth-Token"]
    r = c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "36000"})
    assert r.status_code == 200 and r.json()["timeout"] == 36000
    assert c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "36001"}).status_code == 406
    assert c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "soon"}).status_code == 400


def test_emulator_refuses_cm_to_an_auditor_with_f5s_body_and_lists_traffic_groups(emu):
    audit, admin = Client(emu), Client(emu)
    audit.login("audit", "audit-pw")
    admin.login("admin", "secret")
    r = audit("GET", "/mgmt/tm/cm/failover-status")
    body = r.json()
    assert r.status_code == 401 and body["message"].startswith("Authorization failed: user=")
    assert {"code", "message", "referer", "restOperationId", "kind"} <= set(body)
    assert audit("GET", "/mgmt/tm/ltm/pool").status_code == 200  # reads elsewhere are fine
    emu.deny_cm("admin", 401, plain=True)
    assert admin("GET", "/mgmt/tm/cm/device").json()["message"] == "Unauthorized"
    emu.cm_refusals.clear()
    stats = admin("GET", "/mgmt/tm/cm/traffic-group/stats").json()["entries"]
    rows = {(e["nestedStats"]["entries"]["trafficGroup"]["description"],
             e["nestedStats"]["entries"]["failoverState"]["description"]) for e in stats.values()}
    assert rows == {("/Common/traffic-group-1", "active"), ("/Common/traffic-group-local-only", "active")}


def test_a_transient_mcpd_error_on_cm_is_retried_but_a_404_is_not(pair):
    c = ha_client(pair, hosts=[pair.hosts[0]])
    pair.a.fail_next(1, "mcpd", path="failover-status")
    assert c.unit() == pair.hosts[0]  # retried: the unit is still found active
    pair.a.clear_logs()
    pair.a.fail_next(1, "notregistered", path="failover-status")
    c.begin_tick(5.0)
    assert c.unit() == pair.hosts[0]  # from cm/device; the 404 was not asked again
    assert [p for p in cm_calls(pair.a)] == ["/mgmt/tm/cm/failover-status", "/mgmt/tm/cm/device"]
    c.end_tick()
    c.close()


def test_active_active_told_from_failover_status_details_when_traffic_group_stats_are_refused(pair):
    pair.set_active_active()
    for unit in pair.units:  # an older unit, or a role refused the stats: the failover-status details are read
        unit.fail_next(10, (404, {"code": 404, "message": "Object not found", "errorStack": []}),
                       path="traffic-group/stats")
    c = ha_client(pair)
    assert c.unit() == pair.hosts[0] and c.active_active
    pair.split_brain()
    c.begin_tick(5.0)
    with pytest.raises(NotActiveError, match="traffic-group-1 active on 127.0.0.1, 127.0.0.2"):
        c.unit()
    c.end_tick()
    c.close()


@pytest.mark.parametrize("name, logins", [("extend", 3), ("basic", 0)])
def test_bench_tokens_a_day_takes_at_most_3_logins(name, logins):
    """bench/tokens.py's figure, at a coarse step (a tick every 10 simulated minutes) so it runs in seconds."""
    from bench import tokens

    r = tokens.scenario(name, hours=24, step=600)
    assert r["logins"] == logins and r["per_day"] == logins <= tokens.MAX_LOGINS_PER_DAY
    assert r["max_live"] <= 1 and r["live_after"] == 0 and r["failed_ticks"] == 0


def test_a_cm_401_that_looks_like_a_token_problem_costs_one_login_a_tick_and_reads_as_unreadable(pair):
    """A refusal worded like a missing token: one fresh login and one retry, then taken as a refusal."""
    body = {"code": 401, "message": "Authorization failed: no user authentication header or token detected. "
            "Uri:http://localhost:8100/mgmt/tm/cm/failover-status Referrer:127.0.0.1 Sender:127.0.0.1",
            "errorStack": [], "apiError": 1}
    pair.a.fail_next(4, (401, body), path="/mgmt/tm/cm/")
    c = ha_client(pair, hosts=[pair.hosts[0]], user="mgr")
    c.begin_tick(5.0)
    with pytest.raises(StateUnreadableError):
        c.unit()
    with pytest.raises(StateUnreadableError):
        c.unit()  # not asked again this tick
    c.end_tick()
    assert pair.a.logins <= 3 and len(cm_calls(pair.a)) == 4
    c.close()


ROLES = {"audit": "auditor", "ops": "operator", "mgr": "manager"}
