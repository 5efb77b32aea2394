"""Issue 22: BIG-IP as production runs it.

Priority groups, active/active device groups, accounts that may not read cm/* or write, route-domain
member names in scrape targets, and the emulator behaving like a real unit in each case. Token churn
(36,000 s tokens, `f5.auth: basic`) is in tests/test_token.py; the CLI side is at the end of this file.
"""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import requests

from controller import planner, preflight
from controller.config import F5Config, ModeConfig, PoolConfig, WeightsConfig
from controller.configfile import parse
from controller.errors import ConfigError, NotActiveError, StateUnreadableError
from controller.failover import FailoverClient
from controller.model import Action, Member, MemberPlan, PoolRef, PoolState, Sample, ScrapeResult, groups_in_use
from controller.sim.bigip import BigIPEmulator, HAPair
from controller.telemetry import status as views
from tests.sim_bigip_support import Client

USERS = {"admin": "secret", "audit": "audit-pw", "ops": "ops-pw", "mgr": "mgr-pw"}
ROLES = {"audit": "auditor", "ops": "operator", "mgr": "manager"}
REF = PoolRef("llm")
NOW, WALL = 1000.0, 1_790_000_000.0


class Log:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event, **kw):
        self.lines.append((event, kw))

    info = error = warning

    def named(self, event):
        return [kw for e, kw in self.lines if e == event]


# ----------------------------------------------------------------------------------------- priority groups


def member(name, ratio=50, group=0, session="monitor-enabled", state="up"):
    addr, port = name.rsplit(":", 1)
    return Member(name, "Common", addr, int(port), ratio, 0, session, state, priority_group=group)


def ok(name, waiting, kv=0.2):
    return ScrapeResult(name, NOW, Sample(waiting, 2, kv))


def plan(state, results):
    cfg = PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=WeightsConfig(max_step=1.0))
    p, _ = planner.plan_pool(state, {r.member: r for r in results}, cfg, {}, NOW, WALL)
    return p


@pytest.mark.parametrize("groups, min_active, used", [
    ([(10, True), (10, True), (0, True)], 1, {10}),
    ([(10, True), (10, False), (0, True)], 2, {10, 0}),  # one of group 10 down: group 0 joins
    ([(10, False), (10, False), (0, True)], 1, {0}),  # group 10 all down
    ([(10, True), (5, True), (0, True)], 2, {10, 5}),
    ([(10, False), (0, False)], 1, {10, 0}),  # nothing available: every group (LTM has nobody to send to)
])
def test_groups_in_use_follow_ltm(groups, min_active, used):
    assert groups_in_use(groups, min_active) == used
    assert groups_in_use(groups, 0) is None  # minActiveMembers 0: activation off


def test_an_idle_group_gets_share_0_no_score_and_no_write():
    """The issue's pool: minActiveMembers 1, members in groups 10 and 0; the group-0 member is idle."""
    state = PoolState(REF, "ratio-least-connections-member",
                      (member("10.0.0.1:80", 1, 10), member("10.0.0.2:80", 1, 10), member("10.0.0.3:80", 1, 0)),
                      min_active_members=1)
    p = plan(state, [ok("10.0.0.1:80", 0), ok("10.0.0.2:80", 8), ok("10.0.0.3:80", 0, 0.0)])
    by = {m.member.key: m for m in p.members}
    idle = by["10.0.0.3:80"]
    assert idle.action is Action.IDLE_GROUP and not idle.changes and idle.score is None
    assert "priority group 0 idle" in idle.reason
    assert by["10.0.0.1:80"].changes and by["10.0.0.1:80"].ratio == 100  # normalised within group 10 alone
    shares = views.shares(p)
    assert shares["10.0.0.3:80"] == 0.0 and shares["10.0.0.1:80"] + shares["10.0.0.2:80"] == pytest.approx(1.0)
    view = views.pool_view(p, "vllm", "s1", dry_run=True)
    assert view["priority_groups"] == [{"group": 10, "members": 2, "available": 2, "in_use": True},
                                       {"group": 0, "members": 1, "available": 1, "in_use": False}]
    assert {m["name"]: (m["priority_group"], m["planned_share"]) for m in view["members"]}["10.0.0.3:80"] == (0, 0.0)


def test_a_lower_group_is_planned_once_the_higher_one_goes_down():
    state = PoolState(REF, "ratio-least-connections-member",
                      (member("10.0.0.1:80", 50, 10, state="down"), member("10.0.0.2:80", 1, 0),
                       member("10.0.0.3:80", 1, 0)), min_active_members=1)
    p = plan(state, [ok("10.0.0.2:80", 0), ok("10.0.0.3:80", 6)])
    actions = {m.member.key: m.action for m in p.members}
    assert actions == {"10.0.0.1:80": Action.SKIP_INACTIVE, "10.0.0.2:80": Action.WRITE, "10.0.0.3:80": Action.WRITE}


def test_without_min_active_members_priority_groups_change_nothing():
    state = PoolState(REF, "ratio-least-connections-member", (member("10.0.0.1:80", 1, 10), member("10.0.0.2:80", 1, 0)))
    p = plan(state, [ok("10.0.0.1:80", 0), ok("10.0.0.2:80", 5)])
    assert all(m.action is Action.WRITE for m in p.members) and state.priority_note() == ""


def test_emulator_data_plane_sends_nothing_to_an_idle_group():
    emu = BigIPEmulator(USERS)
    emu.add_pool("/Common/pg", [{"name": "10.0.0.1:80", "priorityGroup": 10}, {"name": "10.0.0.2:80", "priorityGroup": 0,
                                                                            "ratio": 100}], minActiveMembers=1)
    dp = emu.dataplane
    picks = [dp.pick("/Common/pg") for _ in range(20)]
    assert set(picks) == {"10.0.0.1:80"}
    emu.set_member_state("/Common/pg", "10.0.0.1:80", state="down")
    assert dp.pick("/Common/pg") == "10.0.0.2:80"
    pool = emu.pool("/Common/pg")
    assert pool["minActiveMembers"] == 1
    assert [m["priorityGroup"] for m in pool["membersReference"]["items"]] == [10, 0]


def test_check_names_the_priority_groups():
    cfg = PoolConfig(REF, "vllm")
    state = PoolState(REF, "ratio-least-connections-member", (member("10.0.0.1:80", 1, 10), member("10.0.0.2:80", 1, 0)),
                      min_active_members=1)

    class Big:
        def read_pool(self, ref):
            return state

    row, _ = preflight.check_pool(Big(), cfg)
    assert row.status == preflight.OK
    text = state.priority_note()
    assert text == "priority groups (minActiveMembers 1): 10 in use (1 of 1 available), 0 idle (1 of 1 available)"


# -------------------------------------------------------------------------------------- HA: active/active


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


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_active_active_follows_to_the_other_unit_when_one_leaves(pair):
    pair.set_active_active()
    c = ha_client(pair)
    assert c.unit() == pair.hosts[0]
    pair.a.set_failover_state("standby")
    assert c.unit() == pair.hosts[1] and c.failovers == 1
    c.close()


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_active_units_in_no_sync_failover_group_are_not_taken_for_active_active(pair):
    pair.set_active_active()
    for unit in pair.units:
        unit._device_groups = [g for g in unit._device_groups if g["type"] != "sync-failover"]
    c = ha_client(pair)
    with pytest.raises(NotActiveError, match="share no sync-failover device group"):
        c.unit()
    c.close()


# -------------------------------------------------------------------------- restricted accounts and cm/*


def cm_calls(unit: BigIPEmulator) -> list[str]:
    return [r.path for r in unit.request_log if r.path.startswith("/mgmt/tm/cm/")]


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_unreadable_cm_with_a_list_says_why(pair):
    c = ha_client(pair, user="audit")  # Auditor: refused on cm/* on both units
    with pytest.raises(StateUnreadableError, match="lacks permission"):
        c.unit()
    c.close()


@pytest.mark.e2e
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


# --------------------------------------------------------------------------------- accounts that may not write


class WhoAmI:
    def __init__(self, access):
        self.access = access

    def whoami(self):
        return {"partitionAccess": self.access}


@pytest.mark.parametrize("access, partitions, status", [
    ([{"name": "all-partitions", "role": "operator"}], ["Common"], preflight.FAIL),
    ([{"name": "all-partitions", "role": "guest"}], ["Common"], preflight.FAIL),
    ([{"name": "all-partitions", "role": "auditor"}], ["Common"], preflight.FAIL),
    ([{"name": "LLM", "role": "manager"}], ["LLM"], preflight.OK),
    ([{"name": "LLM", "role": "manager"}], ["LLM", "Common"], preflight.FAIL),  # no access to Common
    ([{"name": "LLM", "role": "manager"}, {"name": "all-partitions", "role": "guest"}], ["LLM"], preflight.OK),
    ([{"name": "all-partitions", "role": "admin"}], ["Common", "LLM"], preflight.OK),
    ([], ["Common"], preflight.WARN),  # not readable (a remote user): said, not guessed
])
def test_role_check_by_partition(access, partitions, status):
    row = preflight.check_role(WhoAmI(access), "bot", partitions)
    assert row.status == status and row.code == "role"
    if status == preflight.FAIL:
        assert "Manager" in row.detail and "tmsh modify auth user bot" in row.detail


@pytest.mark.e2e
def test_an_operator_patch_is_refused_by_mcpd_and_said_plainly(pair):
    c = ha_client(pair, hosts=[pair.hosts[0]], user="ops")
    state = c.read_pool(REF)
    result = c.apply(REF, [_plan(state.members[0], 9)])
    (_, error), = result.failed
    assert "01070822" in str(error) and "needs the Manager role" in str(error)
    c.close()


# -------------------------------------------------------------------------------- route-domain member targets


@pytest.mark.parametrize("name, address, template, want", [
    ("10.0.0.5%2:8000", "10.0.0.5%2", "{node}.metrics.example.com:{port}", "10.0.0.5.metrics.example.com:8000"),
    ("10.0.0.5%2:8000", "10.0.0.5%2", "{node}-rd{rd}.metrics.example.com:{port}", "10.0.0.5-rd2.metrics.example.com:8000"),
    ("10.0.0.5%2:8000", "10.0.0.5%2", "{name}", "10.0.0.5:8000"),
    ("10.0.0.5%2:8000", "10.0.0.5%2", "{address}:9400", "10.0.0.5:9400"),
    ("gpu-node-1:8000", "10.0.0.7%3", "{node}.metrics.example.com:{port}", "gpu-node-1.metrics.example.com:8000"),
    ("gpu-node-1:8000", "10.0.0.7%3", "{address}:9400", "10.0.0.7:9400"),
    ("gpu-node-1:8000", "10.0.0.7%3", "{node}-rd{rd}:{port}", "gpu-node-1-rd3:8000"),
    ("2001:db8::1%4.8000", "2001:db8::1%4", "{name}", "[2001:db8::1]:8000"),
    ("10.0.0.5:8000", "10.0.0.5", "{node}-rd{rd}:{port}", "10.0.0.5-rd0:8000"),
])
def test_targets_on_route_domain_members(name, address, template, want):
    m = Member(name, "Common", address, 8000)
    assert m.scrape_address(template) == want
    requests.Request("GET", f"http://{want}/metrics").prepare()  # a valid URL (raises otherwise)


def test_readme_target_examples_load_and_fill():
    for template in ("{address}:9400", "{node}.metrics.example.com:{port}", "{node}-rd{rd}.metrics.example.com:{port}"):
        cfg = parse({"f5": {"host": "192.0.2.10", "password_env": "P"},
                     "pools": [{"name": "p", "engine_type": "vllm", "metrics": {"target": template}}]}, {"P": "x"})
        m = Member("10.0.0.5%2:8000", "Common", "10.0.0.5%2", 8000)
        filled = m.scrape_address(cfg.pools[0].metrics.target)
        assert "%" not in filled
        requests.Request("GET", f"http://{filled}/metrics").prepare()


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("f5, problem", [
    ({"auth": "basic", "login_provider": "corp-ldap"}, "f5.auth"),
    ({"auth": "kerberos"}, "f5.auth"),
    ({"standalone": True, "host": ["192.0.2.10", "192.0.2.11"]}, "f5.standalone"),
    ({"token_timeout": 36001}, "f5.token_timeout"),
    ({"token_timeout": 0}, "f5.token_timeout"),
    ({"standalone": "yes please"}, "f5.standalone"),
])
def test_config_errors_name_the_key(f5, problem):
    with pytest.raises(ConfigError) as info:
        parse({"f5": {"host": "192.0.2.10", "password_env": "P", **f5}, "pools": [{"name": "p", "engine_type": "vllm"}]},
              {"P": "x"})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_config_defaults_and_values():
    base = {"host": "192.0.2.10", "password_env": "P"}
    pools = [{"name": "p", "engine_type": "vllm"}]
    cfg = parse({"f5": base, "pools": pools}, {"P": "x"}).f5
    assert (cfg.auth, cfg.token_timeout, cfg.standalone) == ("token", 36000, False)
    cfg = parse({"f5": {**base, "auth": "basic", "standalone": True, "token_timeout": 3600}, "pools": pools}, {"P": "x"}).f5
    assert (cfg.auth, cfg.token_timeout, cfg.standalone) == ("basic", 3600, True)


# --------------------------------------------------------------------------------------------- the emulator


@pytest.fixture
def emu():
    with BigIPEmulator(dict(USERS), roles=dict(ROLES)) as e:
        yield e


@pytest.mark.e2e
def test_emulator_takes_the_token_timeout_as_a_string(emu):
    c = Client(emu)
    c.login("admin", "secret")
    token = c.headers["X-F5-Auth-Token"]
    r = c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "36000"})
    assert r.status_code == 200 and r.json()["timeout"] == 36000
    assert c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "36001"}).status_code == 406
    assert c("PATCH", f"/mgmt/shared/authz/tokens/{token}", json={"timeout": "soon"}).status_code == 400


@pytest.mark.e2e
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


@pytest.mark.e2e
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


def test_status_and_the_page_data_show_priority_groups():
    from controller.clock import FakeClock
    from controller.config import TelemetryConfig
    from controller.model import TickReport
    from controller.telemetry.server import Telemetry

    state = PoolState(REF, "ratio-least-connections-member",
                      (member("10.0.0.1:80", 1, 10), member("10.0.0.2:80", 1, 10), member("10.0.0.3:80", 1, 0)),
                      min_active_members=1)
    p = plan(state, [ok("10.0.0.1:80", 0), ok("10.0.0.2:80", 8), ok("10.0.0.3:80", 0)])
    tel = Telemetry(TelemetryConfig(host="127.0.0.1", port=0), clock=FakeClock(), tick_seconds=1.0,
                    engine_types={REF.full_path: "vllm"})
    tel.observe(TickReport(started=0.0, finished=0.1, plans=(p,)))
    (pool,) = tel.status()["pools"]
    assert pool["min_active_members"] == 1 and [g["in_use"] for g in pool["priority_groups"]] == [True, False]
    (doc,) = tel.history_doc()["pools"]
    assert doc["priority_groups"] == pool["priority_groups"]
    assert doc["member_groups"] == {"10.0.0.1:80": 10, "10.0.0.2:80": 10, "10.0.0.3:80": 0}
    page = (pathlib.Path(planner.__file__).parent / "telemetry" / "static" / "app.js").read_text()
    assert "priority_groups" in page and "member_groups" in page


@pytest.mark.e2e
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


@pytest.mark.e2e
@pytest.mark.parametrize("name, logins", [("extend", 3), ("basic", 0)])
def test_bench_tokens_a_day_takes_at_most_3_logins(name, logins):
    """bench/tokens.py's figure, at a coarse step (a tick every 10 simulated minutes) so it runs in seconds."""
    from bench import tokens

    r = tokens.scenario(name, hours=24, step=600)
    assert r["logins"] == logins and r["per_day"] == logins <= tokens.MAX_LOGINS_PER_DAY
    assert r["max_live"] <= 1 and r["live_after"] == 0 and r["failed_ticks"] == 0


@pytest.mark.e2e
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
