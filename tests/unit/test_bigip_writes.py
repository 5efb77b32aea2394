"""BigIPClient writes: PATCH per member, transactions, refusals; system information; secrets."""

from __future__ import annotations

import re

import pytest
import requests

from controller.errors import (
    BigIPError,
    NotFoundError,
    PermanentBigIPError,
)
from controller.ltm.client import BigIPClient, member_path
from tests.bigip_support import (
    BASE,
    ERR,
    LOGIN,
    PASSWORD,
    POOL_URL,
    REF,
    TOKEN,
    Err,
    cfg,
    fixture,
    member,
    member_json,
    non_auth,
    plan,
    pool_reply,
    resolve,
)

# -- writes ----------------------------------------------------------------------------------------


def test_patch_sends_only_the_given_fields_never_put(client, auth):
    auth.patch(POOL_URL + "/members/~Common~1.1.1.1:80", json={})
    client.patch_member(REF, member(), {"connectionLimit": 40, "description": "note"})
    assert auth.last_request.method == "PATCH"
    assert auth.last_request.json() == {"connectionLimit": 40, "description": "note"}
    assert not any(r.method == "PUT" for r in auth.request_history)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"ratio": 0}, "ratio 0"),
        ({"ratio": 65536}, "ratio 65536"),
        ({"ratio": 2.5}, "ratio 2.5"),
        ({"ratio": "10"}, "ratio '10'"),
        ({"ratio": True}, "ratio True"),
        ({"connectionLimit": -1}, "connectionLimit -1"),
        ({"connectionLimit": 1.5}, "connectionLimit 1.5"),
        ({"members": []}, "unknown field(s) members"),
        ({"ratio": 5, "session": "user-disabled"}, "unknown field(s) session"),
        ({"description": 7}, "description"),
    ],
)
def test_bad_fields_refused_locally_with_no_http_call(auth, fields, words):
    client = BigIPClient(cfg())
    with pytest.raises(PermanentBigIPError, match="refused locally") as info:
        client.patch_member(REF, member(), fields)
    assert words in str(info.value)
    assert auth.call_count == 0 and client.calls == 0


def test_apply_patch_mode_isolates_failures(auth, sleeps):
    client = BigIPClient(cfg(write_concurrency=2), sleep=sleeps)
    a, b, c, d = (member(f"10.0.0.{i}:80", f"10.0.0.{i}", ratio=10) for i in range(1, 5))
    for m in (a, c):
        auth.patch(BASE + member_path(REF, m), json={})
    auth.patch(BASE + member_path(REF, b), status_code=404, json=ERR["member_not_found_404"])  # removed since the read
    plans = [plan(a, 20), plan(b, 30), plan(c, 10, limit=5), plan(d, 10)]  # d: no change
    result = client.apply(REF, plans)
    assert sorted(result.applied) == [a.key, c.key]
    assert [(k, type(e)) for k, e in result.failed] == [(b.key, NotFoundError)]
    patches = {r.url.rsplit("~", 1)[1]: r.json() for r in auth.request_history if r.method == "PATCH" and "/members/" in r.url}
    assert patches == {"10.0.0.1:80": {"ratio": 20}, "10.0.0.2:80": {"ratio": 30}, "10.0.0.3:80": {"connectionLimit": 5}}
    assert result.calls == 2 + 3  # login + extend + three PATCHes; nothing for d


def test_apply_patch_mode_refuses_bad_plan_locally(client, auth):
    good, bad = member("10.0.0.1:80", "10.0.0.1"), member("10.0.0.2:80", "10.0.0.2")
    auth.patch(BASE + member_path(REF, good), json={})
    result = client.apply(REF, [plan(good, 5), plan(bad, 70000)])
    assert result.applied == [good.key]
    assert result.failed[0][0] == bad.key and "refused locally" in str(result.failed[0][1])
    assert not any(member_path(REF, bad) in r.url for r in auth.request_history)


def test_apply_patch_mode_retries_transient_errors(client, auth):
    m = member()
    auth.patch(BASE + member_path(REF, m), [{"status_code": 500, "json": ERR["mcpd_lost_500"]}, {"json": {}}])
    assert client.apply(REF, [plan(m, 4)]).applied == [m.key]


TX = BASE + "/mgmt/tm/transaction"


def tx_client(auth, sleeps) -> BigIPClient:
    auth.post(TX, json={"transId": 1389812351, "state": "STARTED"})
    auth.delete(TX + "/1389812351", json={})
    return BigIPClient(cfg(write_mode="transaction"), sleep=sleeps)


def test_transaction_flow_and_headers(auth, sleeps):
    client = tx_client(auth, sleeps)
    a, b = member("10.0.0.1:80", "10.0.0.1"), member("10.0.0.2:80", "10.0.0.2")
    for m in (a, b):
        auth.patch(BASE + member_path(REF, m), json={"transId": 1389812351})
    auth.patch(TX + "/1389812351", json={"transId": 1389812351, "state": "COMPLETED"})
    result = client.apply(REF, [plan(a, 7), plan(b, 9, description="why")])
    assert result.applied == [a.key, b.key] and result.failed == []
    calls = non_auth(auth.request_history)
    assert [(r.method, r.path.split("/mgmt/tm/")[1]) for r in calls] == [
        ("POST", "transaction"),
        ("PATCH", "ltm/pool/~common~test_pool/members/~common~10.0.0.1:80"),
        ("PATCH", "ltm/pool/~common~test_pool/members/~common~10.0.0.2:80"),
        ("PATCH", "transaction/1389812351"),
    ]
    assert calls[0].json() == {}
    assert all(r.headers["X-F5-REST-Coordination-Id"] == "1389812351" for r in calls[1:3])
    assert calls[2].json() == {"ratio": 9, "description": "why"}
    commit = calls[3]
    assert commit.json() == {"state": "VALIDATING"} and "X-F5-REST-Coordination-Id" not in commit.headers
    assert "X-F5-Auth-Token" in commit.headers


def test_transaction_failure_fails_all_and_abandons(auth, sleeps):
    client = tx_client(auth, sleeps)
    a, b = member("10.0.0.1:80", "10.0.0.1"), member("10.0.0.2:80", "10.0.0.2")
    auth.patch(BASE + member_path(REF, a), json={})
    auth.patch(BASE + member_path(REF, b), status_code=404, json=ERR["member_not_found_404"])
    result = client.apply(REF, [plan(a, 7), plan(b, 9)])
    assert result.applied == [] and [k for k, _ in result.failed] == [a.key, b.key]
    assert all(isinstance(e, NotFoundError) for _, e in result.failed)
    assert auth.request_history[-1].method == "DELETE" and auth.request_history[-1].url == TX + "/1389812351"
    assert not any(r.url == TX + "/1389812351" and r.method == "PATCH" for r in auth.request_history)


@pytest.mark.parametrize(
    "commit",
    [
        {"json": {"transId": 1389812351, "state": "FAILED", "failureReason": "01070734:3: invalid ratio"}},
        {"status_code": 400, "json": Err("transaction_header_left_on_commit_400")},
        {"status_code": 500, "json": Err("mcpd_lost_500")},  # a commit is never retried
    ],
)
def test_transaction_commit_failure_fails_all(auth, sleeps, commit):
    client = tx_client(auth, sleeps)
    m = member()
    auth.patch(BASE + member_path(REF, m), json={})
    auth.patch(TX + "/1389812351", **{k: resolve(v) for k, v in commit.items()})
    result = client.apply(REF, [plan(m, 3)])
    assert result.applied == [] and len(result.failed) == 1
    assert sum(1 for r in auth.request_history if r.method == "PATCH" and r.url == TX + "/1389812351") == 1


def test_transaction_polled_until_completed(auth, sleeps):
    client = tx_client(auth, sleeps)
    m = member()
    auth.patch(BASE + member_path(REF, m), json={})
    auth.patch(TX + "/1389812351", json={"transId": 1389812351, "state": "VALIDATING"})
    auth.get(TX + "/1389812351", [{"json": {"state": "VALIDATING"}}, {"json": {"state": "COMPLETED"}}])
    assert client.apply(REF, [plan(m, 3)]).applied == [m.key]


def test_transaction_without_transid_fails_all(auth, sleeps):
    client = BigIPClient(cfg(write_mode="transaction"), sleep=sleeps)
    auth.post(TX, json={"state": "STARTED"})
    result = client.apply(REF, [plan(member(), 3)])
    assert result.applied == [] and "no transId" in str(result.failed[0][1])


# -- system information ---------------------------------------------------------------------------


def test_version(client, auth):
    auth.get(BASE + "/mgmt/tm/sys/version", json={
        "kind": "tm:sys:version:versionstats", "selfLink": "https://localhost/mgmt/tm/sys/version?ver=16.1.3",
        "entries": {"https://localhost/mgmt/tm/sys/version/0": {"nestedStats": {"entries": {
            "Build": {"description": "0.0.12"}, "Product": {"description": "BIG-IP"},
            "Version": {"description": "16.1.3"}}}}}})
    assert client.version() == "16.1.3"


def test_version_malformed(client, auth):
    auth.get(BASE + "/mgmt/tm/sys/version", json={"entries": {"x": {"nestedStats": []}}})
    with pytest.raises(PermanentBigIPError, match="malformed version reply"):
        client.version()


def test_device_groups(client, auth):
    auth.get(BASE + "/mgmt/tm/cm/device-group", json={"items": [fixture("load_device_group.json")]})
    assert client.device_groups() == [
        {"name": "datasync-device-sslo.ansible.lab.local-dg", "type": "sync-only", "autoSync": "enabled"}]


def test_whoami_reads_roles_and_drops_password_hash(client, auth):
    auth.get(BASE + "/mgmt/shared/authz/users/ratio-bot", json={"name": "ratio-bot", "displayName": "Ratio Bot"})
    auth.get(BASE + "/mgmt/tm/auth/user/ratio-bot", json={
        "name": "ratio-bot", "encryptedPassword": "$6$hash", "partitionAccess": [
            {"name": "Common", "role": "manager", "nameReference": {"link": "x"}}]})
    me = client.whoami()
    assert me == {"name": "ratio-bot", "displayName": "Ratio Bot",
                  "partitionAccess": [{"name": "Common", "role": "manager"}]}


@pytest.mark.parametrize("status, body", [(404, Err("object_not_found_404")), (401, Err("no_auth_401"))])
def test_whoami_is_best_effort(client, auth, status, body):
    body = resolve(body)
    auth.get(re.compile(re.escape(BASE) + r"/mgmt/(shared/authz/users|tm/auth/user)/"), status_code=status, json=body)
    assert client.whoami() == {}


# -- secrets ---------------------------------------------------------------------------------------


def _scenarios():
    def echo_token(auth):  # BIG-IP quoting the token and password back
        auth.get(POOL_URL, status_code=400, json={"code": 400, "message": f"bad {TOKEN} {PASSWORD}"})

    def html_echo(auth):
        auth.get(POOL_URL, status_code=503, text=f"<html><title>down {TOKEN}</title></html>")

    def nonjson(auth):
        auth.get(POOL_URL, text=f"token={TOKEN}")

    def bad_login(auth):
        auth.post(LOGIN, status_code=401, json={"code": 401, "message": f"user ratio-bot password {PASSWORD} refused"})

    def token_limit(auth):
        auth.post(LOGIN, status_code=400, json=ERR["token_limit_400"])

    def twice_401(auth):
        auth.get(POOL_URL, status_code=401, json={"code": 401, "message": f"X-F5-Auth-Token {TOKEN} has expired."})

    def conn(auth):
        auth.get(POOL_URL, exc=requests.exceptions.ConnectionError(f"headers X-F5-Auth-Token: {TOKEN}"))

    def malformed(auth):
        auth.get(POOL_URL, json=pool_reply(member_json(f"{TOKEN}:80", "1.2.3.4", ratio=PASSWORD)))

    return [echo_token, html_echo, nonjson, bad_login, token_limit, twice_401, conn, malformed]


@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda f: f.__name__)
def test_token_and_password_never_in_errors(client, auth, scenario):
    scenario(auth)
    with pytest.raises(BigIPError) as info:
        client.read_pool(REF)
    exc = info.value
    chain = [exc, exc.__cause__] if exc.__cause__ is not None and not exc.__suppress_context__ else [exc]
    for e in chain:
        for text in (str(e), repr(e), getattr(e, "message", ""), getattr(e, "path", "")):
            assert TOKEN not in text and PASSWORD not in text, text
    assert TOKEN not in repr(client) and PASSWORD not in repr(client) and PASSWORD not in repr(client.cfg)
