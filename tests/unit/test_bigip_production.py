"""Issue 22: BIG-IP as production runs it.

Priority groups, active/active device groups, accounts that may not read cm/* or write, route-domain
member names in scrape targets, and the emulator behaving like a real unit in each case. Token churn
(36,000 s tokens, `f5.auth: basic`) is in tests/unit/test_token.py; the CLI side is at the end of this file.
"""

from __future__ import annotations

import pathlib

import pytest
import requests

from controller.config.schema import ModeConfig, PoolConfig, WeightsConfig
from controller.config.yamlfile import parse
from controller.errors import ConfigError
from controller.loop import preflight
from controller.model import Action, Member, PoolRef, PoolState, Sample, ScrapeResult, groups_in_use
from controller.policy import planner
from controller.sim.bigip import BigIPEmulator
from controller.telemetry import status as views

USERS = {"admin": "secret", "audit": "audit-pw", "ops": "ops-pw", "mgr": "mgr-pw"}
REF = PoolRef("llm")
NOW, WALL = 1000.0, 1_790_000_000.0




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
















# -------------------------------------------------------------------------- restricted accounts and cm/*










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










def test_status_and_the_page_data_show_priority_groups():
    from controller.clock import FakeClock
    from controller.config.schema import TelemetryConfig
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
    page = (pathlib.Path(planner.__file__).parents[1] / "telemetry" / "static" / "app.js").read_text()
    assert "priority_groups" in page and "member_groups" in page






