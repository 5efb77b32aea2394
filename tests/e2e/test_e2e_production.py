"""End to end (issue 22): the real CLI against the emulator with restricted accounts, `f5.standalone`,
`f5.auth: basic` and priority groups. Only 127.0.0.1 servers the tests start."""

from __future__ import annotations

import json

from tests.e2e_cli_support import LOADS
from tests.e2e_env import POOL, USER, Stack, assert_clean, cli, merge, seed_config, write_config


def check_json(cfg) -> tuple[int, dict]:
    r = cli("check", "--json", "--config", str(cfg))
    assert_clean(r.out, r.err)
    return r.code, json.loads(r.out)


def findings(doc: dict, code: str) -> list[dict]:
    return [f for f in doc["findings"] if f["code"] == code]


def test_an_account_that_cannot_read_cm_blocks_check_and_run_once_says_why(stack, tmp_path):
    stack.bigip.deny_cm(USER, 401, plain=True)  # a bare "Unauthorized", not F5's "Authorization failed: user="
    cfg = write_config(tmp_path / "c.yaml", seed_config(stack))
    code, doc = check_json(cfg)
    assert code == 1 and doc["result"] == "blocked"
    (row,) = findings(doc, "cm-unreadable")
    assert row["severity"] == "fail" and "f5.standalone: true" in row["message"] and "HTTP 401" in row["message"]

    r = cli("plan", "--json", "--config", str(cfg))  # a plan writes nothing: it reads the unit anyway, and says so
    assert r.code == 0, r.err
    assert json.loads(r.out)["pools"][0]["members"] and "run would write nothing" in r.err

    logins = stack.bigip.logins
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 1 and "lacks permission to read /mgmt/tm/cm/*" in r.err
    assert_clean(r.out, r.err)
    assert stack.member_writes() == []
    assert stack.bigip.logins == logins + 1  # one login for the run: the 401 on cm/* is not an expired token
    cm = [q for q in stack.bigip.request_log if q.path.startswith("/mgmt/tm/cm/") and q.time >= 0]
    assert len([q for q in cm if q.path.endswith("failover-status")]) <= 3  # check's, run's: never retried


def test_standalone_asks_no_cm_and_writes(stack, tmp_path):
    stack.bigip.deny_cm(USER, 403)
    cfg = write_config(tmp_path / "c.yaml", merge(seed_config(stack), {"f5": {"standalone": True}}))
    code, doc = check_json(cfg)
    assert code == 0, doc
    assert findings(doc, "unit-standalone")[0]["severity"] == "ok"
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 0, r.err
    assert {w.member for w in stack.member_writes()} == set(stack.members)
    assert [q for q in stack.bigip.request_log if q.path.startswith("/mgmt/tm/cm/")] == []


def test_check_fails_for_an_operator_before_run_would(stack, tmp_path):
    stack.bigip.roles[USER] = "operator"
    cfg = write_config(tmp_path / "c.yaml", seed_config(stack))
    code, doc = check_json(cfg)
    (role,) = findings(doc, "role")
    assert code == 1 and role["severity"] == "fail" and "operator on Common" in role["message"]
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 1 and "01070822" in r.err and "needs the Manager role" in r.err


def test_basic_auth_runs_with_no_login_and_no_token(stack, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", merge(seed_config(stack), {"f5": {"auth": "basic"}}))
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 0, r.err
    assert_clean(r.out, r.err)
    assert stack.bigip.logins == 0 and stack.bigip.live_tokens() == [] and stack.member_writes()


def test_plan_shows_an_idle_priority_group_with_share_0(tmp_path):
    s = Stack(LOADS).start()
    try:
        s.bigip.set_pool(POOL, minActiveMembers=1)
        for name, group in zip(s.members, (10, 10, 0), strict=True):
            s.bigip.set_member(POOL, name, props={**s.bigip._pools[POOL].members[name].props, "priorityGroup": group})
        cfg = write_config(tmp_path / "c.yaml", seed_config(s))
        r = cli("plan", "--json", "--config", str(cfg))
        assert r.code == 0, r.err
        (pool,) = json.loads(r.out)["pools"]
        assert [g["group"] for g in pool["priority_groups"]] == [10, 0]
        idle = {m["name"]: m for m in pool["members"]}[s.members[2]]
        assert idle["action"] == "idle-group" and idle["planned_share"] == 0.0 and idle["planned_ratio"] == idle["ratio"]
        text = cli("plan", "--config", str(cfg)).out
        assert "priority groups (minActiveMembers 1): 10 in use (2 of 2 available), 0 idle (1 of 1 available)" in text
        code, doc = check_json(cfg)
        assert "10 in use" in findings(doc, "priority-groups")[0]["message"]
        assert s.member_writes() == []
    finally:
        s.stop()


def test_the_daemon_refused_on_cm_logs_in_once_and_asks_once_per_tick(stack, tmp_path):
    """The issue's measurement: a bare 401 on cm/* made the daemon log in again on every try (6 logins in
    24 s) and never write. Now: one login, each cm/* path once per tick, one log line, nothing written."""
    from tests.e2e_env import Daemon, wait_for

    stack.bigip.deny_cm(USER, 401, plain=True)
    cfg = write_config(tmp_path / "c.yaml", seed_config(stack))
    d = Daemon(cfg)
    try:
        def asked(path: str) -> int:
            return sum(1 for q in stack.bigip.request_log if q.path == path)

        wait_for(lambda: asked("/mgmt/tm/cm/failover-status") >= 3, 20, what="three ticks asking cm/*")
        code, _ = d.stop()
        assert code == 0
        assert stack.bigip.logins == 1
        status, device = asked("/mgmt/tm/cm/failover-status"), asked("/mgmt/tm/cm/device")
        assert abs(status - device) <= 1  # one of each per tick (the last tick may stop between the two)
        assert stack.member_writes() == []
        assert len(d.events("bigip_failover_state_unreadable")) == 1
        assert_clean(d.out, d.err)
    finally:
        d.close()
