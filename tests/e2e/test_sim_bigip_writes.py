"""The emulator's member writes, system views, transactions, faults and other APIs, over real HTTPS."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from controller.sim.bigip import ERRORS, BigIPEmulator, error_body
from tests.conftest import shared_root
from tests.sim_bigip_support import (
    M1,
    M1URI,
    POOL,
    PURI,
    Client,
    fixture,
    needs_fixtures,
)

# ------------------------------------------------------------------------------------------ member writes


@pytest.mark.parametrize("body,ok", [
    ({"ratio": 1}, True), ({"ratio": 65535}, True), ({"ratio": 37}, True),
    ({"ratio": 0}, False), ({"ratio": 65536}, False), ({"ratio": -1}, False), ({"ratio": "5"}, False),
    ({"ratio": 1.5}, False), ({"ratio": True}, False), ({"ratio": None}, False),
    ({"connectionLimit": 0}, True), ({"connectionLimit": 8}, True), ({"connectionLimit": -1}, False),
    ({"connectionLimit": "8"}, False),
    ({"description": "llm: q=3"}, True), ({"description": 5}, False),
    ({"session": "user-disabled"}, True), ({"session": "monitor-enabled"}, False), ({"session": "off"}, False),
    ({"state": "user-down"}, True), ({"state": "down"}, False),
    ({"weight": 3}, False), ({"Ratio": 3}, False), ({"address": "10.9.9.9"}, False),
    ({"name": M1, "ratio": 3}, True),
])
def test_member_patch_validation(c, emu, body, ok):
    before = emu.member(POOL, M1)
    r = c("PATCH", M1URI, json=body)
    if ok:
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "tm:ltm:pool:members:membersstate"
        assert emu.writes[-1].body == body
    else:
        assert r.status_code == 400, r.text
        err = r.json()
        assert err["code"] == 400 and err["errorStack"] == [] and isinstance(err["apiError"], int)
        assert emu.member(POOL, M1) == before and emu.writes == []


def test_ratio_error_message_names_the_property(c):
    err = c("PATCH", M1URI, json={"ratio": 0}).json()
    assert err["message"].startswith("01070335:3:") and "ratio" in err["message"] and err["apiError"] == 3
    err = c("PATCH", M1URI, json={"bogus": 1}).json()
    assert "unexpected json pair" in err["message"] and '"bogus":1' in err["message"]


def test_invalid_json_is_400(c):
    r = c("PATCH", M1URI, data="{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == "Found invalid JSON body in the request."


def test_patch_returns_full_member_and_logs_the_write(c, emu, clock):
    gen = c("GET", M1URI).json()["generation"]
    r = c("PATCH", M1URI, json={"ratio": 37, "description": "q=2"})
    m = r.json()
    assert m["ratio"] == 37 and m["description"] == "q=2" and m["generation"] > gen
    assert set(m) >= {"name", "address", "connectionLimit", "session", "state", "rateLimit"}
    w = emu.writes[-1]
    assert (w.pool, w.member, w.kind, w.body, w.user) == (POOL, M1, "PATCH", {"ratio": 37, "description": "q=2"}, "admin")
    assert w.changed["ratio"] == (1, 37) and w.time == clock.monotonic() and w.trans_id is None
    assert emu.commits == 1
    assert ("PATCH", M1URI, 200) in [(q.method, q.path, q.status) for q in emu.request_log]


def test_session_and_state_read_back(c, emu):
    assert c("PATCH", M1URI, json={"session": "user-disabled"}).json()["session"] == "user-disabled"
    assert c("PATCH", M1URI, json={"session": "user-enabled"}).json()["session"] == "monitor-enabled"
    assert c("PATCH", M1URI, json={"state": "user-down"}).json()["state"] == "user-down"
    assert c("PATCH", M1URI, json={"state": "user-up"}).json()["state"] == "up"
    emu.set_member_state(POOL, M1, state="down")
    assert c("GET", M1URI).json()["state"] == "down"
    emu.add_member(POOL, "10.0.0.9:80", session="user-enabled", state="unchecked")
    m = emu.member(POOL, "10.0.0.9:80")
    assert (m["session"], m["state"]) == ("user-enabled", "unchecked")


def test_put_is_allowed_but_recorded(c, emu):
    r = c("PUT", M1URI, json={"ratio": 5})
    assert r.status_code == 200
    assert emu.writes[-1].kind == "PUT"
    assert [w.kind for w in emu.writes] == ["PUT"]


def test_roles(emu):
    ops, viewer = Client(emu), Client(emu)
    ops.login("ops", "ops")
    viewer.login("viewer", "v")
    assert viewer("GET", PURI).status_code == 200
    r = viewer("PATCH", M1URI, json={"ratio": 3})
    assert r.status_code == 401 and r.json()["message"].startswith("Authorization failed: user=")
    assert ops("PATCH", M1URI, json={"session": "user-disabled"}).status_code == 200
    refused = ops("PATCH", M1URI, json={"ratio": 3})  # REST takes it; mcpd refuses an Operator (f5-common-python #1516)
    assert refused.status_code == 400 and refused.json()["message"].startswith("01070822:3: Access Denied: user (ops)")
    assert emu.member(POOL, M1)["ratio"] == 1
    role = ops("GET", "/mgmt/tm/auth/user/ops").json()["partitionAccess"]
    assert role == [{"name": "all-partitions", "role": "operator"}]
    assert ops("GET", "/mgmt/shared/authz/users/admin").json()["partitionAccess"][0]["role"] == "admin"
    assert ops("GET", "/mgmt/tm/auth/user/nobody").status_code == 404


def test_concurrent_patches_are_all_applied(c, emu):
    errors = []

    def worker(i):
        cl = Client(emu)
        cl.headers = dict(c.headers)
        for j in range(20):
            r = cl("PATCH", M1URI, json={"ratio": i * 100 + j + 1})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(emu.writes) == 160
    gens = [w.generation for w in emu.writes]
    assert len(set(gens)) == 160  # every write got its own generation
    assert emu.member(POOL, M1)["ratio"] == emu.writes[-1].body["ratio"]


# --------------------------------------------------------------------------------------- system views


def test_sys_version_device_info_device_groups(c, emu):
    sys_ = c("GET", "/mgmt/tm/sys").json()
    assert sys_["kind"] == "tm:sys:syscollectionstate" and sys_["selfLink"].endswith("?ver=17.1.1")
    assert all("link" in i["reference"] for i in sys_["items"])
    v = c("GET", "/mgmt/tm/sys/version").json()
    entries = v["entries"]["https://localhost/mgmt/tm/sys/version/0"]["nestedStats"]["entries"]
    assert entries["Version"]["description"] == "17.1.1" and entries["Product"]["description"] == "BIG-IP"
    assert {"Build", "Edition"} <= set(entries)
    info = c("GET", "/mgmt/shared/identified-devices/config/device-info").json()
    assert info["version"] == "17.1.1" and info["product"] == "BIG-IP"
    emu.add_device_group("failover-dg", auto_sync=True)
    groups = c("GET", "/mgmt/tm/cm/device-group").json()["items"]
    assert {g["name"]: g["autoSync"] for g in groups}["failover-dg"] == "enabled"
    one = c("GET", "/mgmt/tm/cm/device-group/~Common~failover-dg").json()
    if (shared_root() / "fixtures" / "bigip").is_dir():
        assert set(fixture("load_device_group.json")) <= set(one)
    assert one["type"] == "sync-failover"


# ---------------------------------------------------------------------------------------- transactions


def _begin(c) -> int:
    r = c("POST", "/mgmt/tm/transaction", json={})
    assert r.status_code == 200
    t = r.json()
    assert t["state"] == "STARTED" and t["timeoutSeconds"] == 120 and t["kind"] == "tm:transactionstate"
    assert t["selfLink"] == f"https://localhost/mgmt/tm/transaction/{t['transId']}?ver=17.1.1"
    return t["transId"]


def test_transaction_queues_then_commits_atomically(c, emu):
    tid = _begin(c)
    hdr = {"X-F5-REST-Coordination-Id": str(tid)}
    r = c("PATCH", M1URI, json={"ratio": 5}, headers=hdr)
    assert r.status_code == 200
    cmd = r.json()
    assert cmd["kind"] == "tm:transaction:commandsstate" and cmd["method"] == "PATCH" and cmd["body"] == {"ratio": 5}
    assert cmd["uri"] == "https://localhost" + M1URI
    c("PATCH", PURI + "/members/~Common~10.0.0.2:8000", json={"ratio": 6}, headers=hdr)
    assert emu.ratios(POOL)[M1] == 1 and emu.writes == []  # queued, not applied
    assert c("GET", M1URI, headers=hdr).json()["ratio"] == 1  # reads inside a transaction see live state
    cmds = c("GET", f"/mgmt/tm/transaction/{tid}/commands").json()["items"]
    assert [x["commandId"] for x in cmds] == [1, 2]
    r = c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING"})
    assert r.status_code == 200 and r.json()["state"] == "COMPLETED"
    assert emu.ratios(POOL) == {M1: 5, "10.0.0.2:8000": 6, "10.0.0.3:8000": 4}
    assert [w.trans_id for w in emu.writes] == [tid, tid]
    assert emu.commits == 1  # one config change for the whole batch


@needs_fixtures
def test_commit_with_the_header_left_on_is_the_real_400(c, emu):
    tid = _begin(c)
    assert tid == 1389812351
    hdr = {"X-F5-REST-Coordination-Id": str(tid)}
    c("PATCH", M1URI, json={"ratio": 5}, headers=hdr)
    r = c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING"}, headers=hdr)
    assert (r.status_code, r.json()) == (400, fixture("error_bodies.json")["transaction_header_left_on_commit_400"])
    assert emu.ratios(POOL)[M1] == 1
    assert c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING"}).status_code == 200
    assert emu.ratios(POOL)[M1] == 5


def test_invalid_command_fails_the_commit_and_applies_nothing(c, emu):
    tid = _begin(c)
    hdr = {"X-F5-REST-Coordination-Id": str(tid)}
    c("PATCH", M1URI, json={"ratio": 5}, headers=hdr)
    c("PATCH", PURI + "/members/~Common~10.0.0.2:8000", json={"ratio": 0}, headers=hdr)
    gen = emu.generation
    r = c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING"})
    assert r.status_code == 400 and r.json()["message"].startswith("transaction failed:01070335:3:")
    assert emu.ratios(POOL) == {M1: 1, "10.0.0.2:8000": 1, "10.0.0.3:8000": 4}
    assert emu.writes == [] and emu.generation == gen and emu.commits == 0
    assert c("GET", f"/mgmt/tm/transaction/{tid}").json()["state"] == "FAILED"


def test_transaction_expires_after_120s(c, emu, clock):
    tid = _begin(c)
    c("PATCH", M1URI, json={"ratio": 5}, headers={"X-F5-REST-Coordination-Id": str(tid)})
    clock.advance(121)
    r = c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING"})
    assert r.status_code == 404
    assert emu.ratios(POOL)[M1] == 1
    r = c("PATCH", M1URI, json={"ratio": 5}, headers={"X-F5-REST-Coordination-Id": str(tid)})
    assert r.status_code == 404


def test_restart_drops_transactions(c, emu):
    tid = _begin(c)
    emu.restart()
    c.login()
    assert c("GET", f"/mgmt/tm/transaction/{tid}").status_code == 404


# ---------------------------------------------------------------------------------------------- faults


@needs_fixtures
def test_fault_bodies_are_exact(c, emu):
    bodies = fixture("error_bodies.json")
    emu.fail_next(1, "mcpd")
    r = c("GET", PURI)
    assert (r.status_code, r.json()) == (500, bodies["mcpd_lost_500"])
    emu.fail_next(1, "html503")
    r = c("GET", PURI)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/html")
    assert r.text == bodies["restjavad_restarting_503_html"]
    emu.fail_next(1, "notregistered")
    r = c("GET", "/mgmt/tm/ltm/pool")
    expected = dict(bodies["restjavad_not_ready_404"], restOperationId=r.json()["restOperationId"])
    assert (r.status_code, r.json()) == (404, expected)
    assert c("GET", PURI).status_code == 200  # faults are one-shot


def test_fail_next_counts_and_path_filter(c, emu):
    emu.fail_next(2, "mcpd", path=r"/members/")
    assert c("GET", PURI).status_code == 200
    assert c("PATCH", M1URI, json={"ratio": 2}).status_code == 500
    assert c("GET", M1URI).status_code == 500
    assert c("PATCH", M1URI, json={"ratio": 2}).status_code == 200
    emu.fail_next(1, "mcpd", method="PATCH")
    assert c("GET", M1URI).status_code == 200
    assert c("PATCH", M1URI, json={"ratio": 3}).status_code == 500


def test_drop_closes_the_connection_without_reply(c, emu):
    emu.fail_next(1, "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        c("PATCH", M1URI, json={"ratio": 2})
    assert emu.ratios(POOL)[M1] == 1
    assert c("GET", PURI).status_code == 200  # a new connection works


def test_down_flag(c, emu):
    emu.down = True
    r = c("GET", PURI)
    assert r.status_code == 503 and "<html>" in r.text
    r = Client(emu)("POST", "/mgmt/shared/authn/login", json={"username": "admin", "password": "secret"})
    assert r.status_code == 503
    emu.down = False
    assert c("GET", PURI).status_code == 200


def test_latency(c, emu):
    emu.latency = 0.15
    t = time.monotonic()
    assert c("GET", PURI).status_code == 200
    assert time.monotonic() - t >= 0.15
    emu.latency = 0


def test_token_faults(c, emu):
    emu.fail_next(1, "expired")
    assert c("GET", PURI).json()["message"] == "X-F5-Auth-Token has expired."
    emu.fail_next(1, "missing")
    assert c("GET", PURI).json()["message"] == "X-F5-Auth-Token does not exist."


# ------------------------------------------------------------------------------------------ other APIs


@needs_fixtures
def test_error_templates_reproduce_the_fixture_bodies():
    bodies = fixture("error_bodies.json")
    params = {
        "pool_not_found_404": dict(pool="/Common/my-pool"),
        "member_not_found_404": dict(pool="/Common/test_5679", node="/Common/wrong", port=80),
        "object_not_found_404": dict(path="/Common/wrong:80"),
        "no_auth_401": dict(path="/mgmt/tm/ltm/pool", client="10.1.1.1"),
        "token_limit_400": dict(user_id="2dcd8b8f-5ac5-4c2e-b1ba-1c4d2d1e9b7f"),
        "restjavad_not_ready_404": dict(path="/mgmt/tm/ltm/pool", op_id=1),
        "node_in_use_400": dict(node="/Common/intra2", pool="/Common/intraPool"),
        "transaction_header_left_on_commit_400": dict(trans_id=1389812351),
    }
    for key, expected in bodies.items():
        if key.startswith("_"):
            continue
        assert key in ERRORS, key
        assert error_body(key, **params.get(key, {})) == expected, key


def test_request_api_without_http():
    e = BigIPEmulator({"admin": "x"})
    e.add_pool(POOL, [M1])
    r = e.request("PATCH", M1URI, {"ratio": 3}, headers={"Authorization": "Basic YWRtaW46eA=="})
    assert r.status == 200 and r.json()["ratio"] == 3
    assert e.request("GET", PURI).status == 401


def test_rest_writes_drive_the_bound_dataplane(c, emu):
    dp = emu.dataplane
    c("PATCH", M1URI, json={"ratio": 3})
    c("PATCH", PURI + "/members/~Common~10.0.0.2:8000", json={"session": "user-disabled"})
    emu.set_pool(POOL, loadBalancingMode="ratio-member")
    picks = [dp.pick(POOL) for _ in range(70)]
    assert picks.count("10.0.0.2:8000") == 0
    assert picks.count(M1) == 30 and picks.count("10.0.0.3:8000") == 40


def test_cli_serves_until_interrupted(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.sim.bigip", "--port", "0", "--pool",
         "/Common/llm-pool=127.0.0.1:8001,127.0.0.1:8002", "--user", "admin", "--password", "secret",
         "--cert-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[-1]
        cert = proc.stdout.readline().split()[-1]
        assert url.startswith("https://127.0.0.1:") and cert == str(tmp_path / "sim.crt")
        r = requests.get(url + PURI + "?expandSubcollections=true", auth=("admin", "secret"), verify=cert, timeout=10)
        assert [m["name"] for m in r.json()["membersReference"]["items"]] == ["127.0.0.1:8001", "127.0.0.1:8002"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_context_manager_serves_for_the_block():
    with BigIPEmulator({"admin": "secret"}) as e:
        e.add_pool(POOL, [M1])
        url = e.base_url
        r = requests.get(url + M1URI, auth=("admin", "secret"), verify=e.cert_path, timeout=10)
        assert r.json()["name"] == M1
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + M1URI, auth=("admin", "secret"), verify=e.cert_path, timeout=10)


def test_pool_patch_is_logged_and_members_list_replaces(c, emu):
    r = c("PATCH", PURI, json={"loadBalancingMode": "ratio-member"})
    assert r.status_code == 200 and r.json()["loadBalancingMode"] == "ratio-member"
    c("PATCH", PURI, json={"members": [{"name": M1}]})
    assert list(emu.ratios(POOL)) == [M1]  # what "never PATCH the members list" protects against
    assert [w.kind for w in emu.writes] == ["PATCH-POOL", "PATCH-POOL"]


@pytest.mark.parametrize(("sent", "stored"), [(1000, 1000), ("2000", 2000), (0, 0)])
def test_pool_queue_time_limit_is_stored_as_an_integer_and_read_back(c, emu, sent, stored):
    r = c("PATCH", PURI, json={"queueTimeLimit": sent})
    assert r.status_code == 200 and r.json()["queueTimeLimit"] == stored
    assert c("GET", PURI).json()["queueTimeLimit"] == stored
    (w,) = emu.writes
    assert w.kind == "PATCH-POOL" and w.member is None and w.changed == ({"queueTimeLimit": (0, stored)} if stored else {})


@pytest.mark.parametrize("bad", [-1, 2**32, "1s", 1.5, True, None])
def test_a_bad_queue_time_limit_is_a_400_and_changes_nothing(c, emu, bad):
    r = c("PATCH", PURI, json={"queueTimeLimit": bad, "description": "x"})
    assert r.status_code == 400 and "queueTimeLimit" in r.json()["message"]
    assert c("GET", PURI).json()["queueTimeLimit"] == 0 and emu.writes == []


def test_validate_only_commit_applies_nothing(c, emu):
    tid = _begin(c)
    c("PATCH", M1URI, json={"ratio": 5}, headers={"X-F5-REST-Coordination-Id": str(tid)})
    r = c("PATCH", f"/mgmt/tm/transaction/{tid}", json={"state": "VALIDATING", "validateOnly": True})
    assert r.status_code == 200 and r.json()["state"] == "VALIDATED"
    assert emu.ratios(POOL)[M1] == 1 and emu.writes == []
