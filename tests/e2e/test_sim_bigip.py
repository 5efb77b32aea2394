"""The BIG-IP emulator over real HTTPS: shapes, auth lifecycle, validation, transactions, faults."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
import requests

from controller.sim.bigip import error_body
from tests.sim_bigip_support import (
    M1,
    M1URI,
    POOL,
    PURI,
    Client,
    fixture,
    needs_fixtures,
)

# ------------------------------------------------------------------------------------------------ TLS


def test_tls_verifies_against_the_emulator_cert(emu):
    r = requests.get(emu.base_url + "/mgmt/tm/sys", auth=("admin", "secret"), verify=emu.cert_path, timeout=10)
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(emu.base_url + "/mgmt/tm/sys", auth=("admin", "secret"), verify=True, timeout=10)


def test_localhost_name_verifies_too(emu):
    url = emu.base_url.replace("127.0.0.1", "localhost")
    assert requests.get(url + "/mgmt/tm/sys", auth=("admin", "secret"), verify=emu.cert_path, timeout=10).ok


def test_keep_alive_serves_several_requests_on_one_connection(emu):
    ctx = ssl.create_default_context(cafile=emu.cert_path)
    conn = http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)
    import base64
    auth = "Basic " + base64.b64encode(b"admin:secret").decode()
    for _ in range(3):
        conn.request("GET", PURI, headers={"Authorization": auth})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and int(r.getheader("Content-Length")) == len(body)
        assert r.getheader("Connection") != "close"
    sock = conn.sock
    conn.request("GET", "/mgmt/tm/sys/version", headers={"Authorization": auth})
    assert conn.getresponse().read() and conn.sock is sock  # same socket: no reconnect
    conn.close()


def test_stop_cuts_open_connections(emu):
    c = Client(emu)
    assert c("GET", "/mgmt/tm/sys", auth=("admin", "secret")).ok
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        c("GET", "/mgmt/tm/sys", auth=("admin", "secret"))


# --------------------------------------------------------------------------------------------- tokens


def test_login_reply_shape(emu):
    c = Client(emu)
    r = c("POST", "/mgmt/shared/authn/login", json={"username": "admin", "password": "secret",
                                                    "loginProviderName": "tmos"})
    assert r.status_code == 200
    body = r.json()
    assert body["username"] == "admin" and "link" in body["loginReference"]
    t = body["token"]
    assert t["token"] == t["name"] and len(t["token"]) == 26 and t["token"].isalnum()
    assert t["userName"] == "admin" and t["timeout"] == 1200
    assert t["kind"] == "shared:authz:tokens:authtokenitemstate"
    assert t["selfLink"] == "https://localhost/mgmt/shared/authz/tokens/" + t["token"]
    assert t["expirationMicros"] - t["lastUpdateMicros"] == 1200 * 1_000_000
    assert emu.logins == 1 and emu.live_tokens("admin") == [t["token"]]


def test_login_with_bad_password_is_401(emu):
    r = Client(emu)("POST", "/mgmt/shared/authn/login", json={"username": "admin", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["code"] == 401 and r.json()["message"] == "Authentication failed."
    assert "nope" not in r.text
    assert emu.logins == 0 and emu.failed_logins == 1


@needs_fixtures
def test_401_bodies_are_exact(emu, c, clock):
    bodies = fixture("error_bodies.json")
    anon = Client(emu)
    r = anon("GET", "/mgmt/tm/ltm/pool")
    assert r.status_code == 401
    assert r.json() == json.loads(json.dumps(bodies["no_auth_401"]).replace("10.1.1.1", "127.0.0.1"))
    r = anon("GET", "/mgmt/tm/ltm/pool", headers={"X-F5-Auth-Token": "NOSUCHTOKEN"})
    assert (r.status_code, r.json()) == (401, bodies["token_missing_401"])
    clock.advance(1201)
    r = c("GET", PURI)
    assert (r.status_code, r.json()) == (401, bodies["token_expired_401"])


def test_token_expires_on_the_emulator_clock(c, clock):
    clock.advance(1199)
    assert c("GET", PURI).status_code == 200
    clock.advance(1)
    assert c("GET", PURI).status_code == 401


def test_extend_token(c, emu, clock):
    tok = c.headers["X-F5-Auth-Token"]
    before = c("GET", f"/mgmt/shared/authz/tokens/{tok}").json()
    r = c("PATCH", f"/mgmt/shared/authz/tokens/{tok}", json={"timeout": 36000})
    assert r.status_code == 200 and r.json()["timeout"] == 36000
    assert r.json()["expirationMicros"] == before["expirationMicros"] + (36000 - 1200) * 1_000_000
    clock.advance(5000)
    assert c("GET", PURI).status_code == 200
    assert c("GET", f"/mgmt/shared/authz/tokens/{tok}").json()["timeout"] == 36000
    # absolute cap: counted from the token's start
    clock.advance(36000 - 5000)
    assert c("GET", PURI).status_code == 401


@pytest.mark.parametrize("value,status", [(36001, 406), (0, 400), ("36001", 406), ("6OO", 400), (None, 400), (True, 400)])
def test_extend_token_rejects_bad_timeouts(c, value, status):
    tok = c.headers["X-F5-Auth-Token"]
    r = c("PATCH", f"/mgmt/shared/authz/tokens/{tok}", json={"timeout": value})
    assert r.status_code == status and r.json()["code"] == status
    assert c("GET", f"/mgmt/shared/authz/tokens/{tok}").json()["timeout"] == 1200


def test_delete_token(c, emu):
    tok = c.headers["X-F5-Auth-Token"]
    assert c("DELETE", f"/mgmt/shared/authz/tokens/{tok}").status_code == 200
    assert emu.live_tokens() == []
    r = c("GET", PURI)
    assert r.status_code == 401 and r.json()["message"] == "X-F5-Auth-Token does not exist."


@needs_fixtures
def test_token_limit_body_is_exact_and_limit_frees_up(emu, clock):
    emu.token_limit = 3
    c = Client(emu)
    toks = [c.login() for _ in range(3)]
    r = c("POST", "/mgmt/shared/authn/login", json={"username": "admin", "password": "secret"})
    assert (r.status_code, r.json()) == (400, fixture("error_bodies.json")["token_limit_400"])
    # another user is not affected
    Client(emu).login("ops", "ops")
    # deleting one frees a slot
    c("DELETE", f"/mgmt/shared/authz/tokens/{toks[0]}")
    c.login()
    # expiry frees them all
    clock.advance(1201)
    assert emu.live_tokens("admin") == []
    c.login()


def test_basic_auth(emu):
    c = Client(emu)
    assert c("GET", PURI, auth=("admin", "secret")).status_code == 200
    r = c("GET", PURI, auth=("admin", "wrong"))
    assert r.status_code == 401 and r.json()["message"] == "Authentication failed."
    assert "Basic" in r.headers["WWW-Authenticate"]


def test_restart_drops_tokens_and_keeps_config(c, emu):
    c("PATCH", M1URI, json={"ratio": 9})
    emu.restart()
    r = c("GET", PURI)
    assert r.status_code == 401 and r.json()["message"] == "X-F5-Auth-Token does not exist."
    c.login()
    assert c("GET", M1URI).json()["ratio"] == 9


# ----------------------------------------------------------------------------------------- pool shapes


@needs_fixtures
def test_pool_get_matches_fixture_shape(c):
    fx = fixture("load_ltm_pool.json")
    r = c("GET", PURI)
    body = r.json()
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert list(body) == list(fx)  # same keys, same order
    assert body["kind"] == fx["kind"]
    assert body["selfLink"] == "https://localhost/mgmt/tm/ltm/pool/~Common~llm-pool?ver=17.1.1"
    assert body["membersReference"] == {"link": "https://localhost/mgmt/tm/ltm/pool/~Common~llm-pool/members?ver=17.1.1",
                                        "isSubcollection": True}
    assert isinstance(body["generation"], int)
    for k, v in fx.items():
        assert type(body[k]) is type(v), k


@needs_fixtures
def test_pool_get_expanded_members_match_fixture_shape(c):
    fxm = fixture("pool_members_subcollection.json")[0]
    body = c("GET", PURI + "?expandSubcollections=true&ver=17.1.1").json()
    items = body["membersReference"]["items"]
    assert [m["name"] for m in items] == [M1, "10.0.0.2:8000", "10.0.0.3:8000"]
    for m in items:
        assert set(fxm) <= set(m)
        assert set(m) - set(fxm) <= {"ephemeral", "fqdn", "description"}
        for k, v in fxm.items():
            assert type(m[k]) is type(v), k
        assert m["kind"] == "tm:ltm:pool:members:membersstate"
        assert m["selfLink"].endswith("?ver=17.1.1")
        assert m["rateLimit"] == "disabled" and m["session"] == "monitor-enabled" and m["state"] == "up"
    assert items[2]["ratio"] == 4


def test_collections(c):
    pools = c("GET", "/mgmt/tm/ltm/pool").json()
    assert pools["kind"] == "tm:ltm:pool:poolcollectionstate" and [p["fullPath"] for p in pools["items"]] == [POOL]
    assert "items" not in pools["items"][0]["membersReference"]
    assert "items" in c("GET", "/mgmt/tm/ltm/pool?expandSubcollections=true").json()["items"][0]["membersReference"]
    members = c("GET", PURI + "/members").json()
    assert members["kind"] == "tm:ltm:pool:members:memberscollectionstate"
    assert members["selfLink"] == "https://localhost/mgmt/tm/ltm/pool/~Common~llm-pool/members?ver=17.1.1"
    assert len(members["items"]) == 3


def test_select_and_filter_are_tolerated(c):
    body = c("GET", PURI + "/members?$select=name,ratio").json()
    assert body["items"][0] == {"name": M1, "ratio": 1}
    empty = c("GET", "/mgmt/tm/ltm/pool?$filter=partition+eq+Other").json()
    assert empty["kind"] == "tm:ltm:pool:poolcollectionstate" and "items" not in empty  # as a real unit: no key


def test_trailing_slashes(c):
    assert c("GET", PURI + "/").status_code == 200
    assert c("GET", PURI + "/members/").status_code == 200
    assert c("PATCH", M1URI + "/", json={"ratio": 2}).json()["ratio"] == 2
    assert c("GET", "/mgmt/tm/sys/").status_code == 200


def test_bare_pool_name_means_common(c):
    assert c("GET", "/mgmt/tm/ltm/pool/llm-pool").json()["fullPath"] == POOL


def test_missing_pool_and_member_404(c):
    r = c("GET", "/mgmt/tm/ltm/pool/~Common~nope")
    assert r.status_code == 404
    assert r.json() == error_body("pool_not_found_404", pool="/Common/nope")
    assert r.json()["message"] == "01020036:3: The requested Pool (/Common/nope) was not found."
    r = c("PATCH", PURI + "/members/~Common~10.9.9.9:80", json={"ratio": 2})
    assert r.status_code == 404
    assert r.json()["message"] == "01020036:3: The requested Pool Member (/Common/llm-pool /Common/10.9.9.9 80) was not found."


def test_unknown_uri_is_404_not_registered(c):
    r = c("GET", "/mgmt/tm/ltm/nosuchthing")
    assert r.status_code == 404
    assert r.json()["message"].startswith("URI path /mgmt/tm/ltm/nosuchthing not registered.")


def test_route_domain_ipv6_and_sub_path(emu, c):
    emu.add_pool("/Tenant/app/pool2", ["10.0.0.1%2:8000", "2001:db8::1.8000"], partition="Tenant")
    base = "/mgmt/tm/ltm/pool/~Tenant~app~pool2"
    p = c("GET", base + "?expandSubcollections=true").json()
    assert p["fullPath"] == "/Tenant/app/pool2" and p["subPath"] == "app" and p["partition"] == "Tenant"
    rd, v6 = p["membersReference"]["items"]
    assert rd["name"] == "10.0.0.1%2:8000" and rd["address"] == "10.0.0.1%2"
    assert rd["selfLink"] == ("https://localhost/mgmt/tm/ltm/pool/~Tenant~app~pool2/members/"
                              "~Tenant~10.0.0.1%252:8000?ver=17.1.1")
    assert v6["name"] == "2001:db8::1.8000" and v6["address"] == "2001:db8::1"
    r = c("PATCH", base + "/members/~Tenant~10.0.0.1%252:8000", json={"ratio": 11})
    assert r.status_code == 200 and r.json()["ratio"] == 11
    r = c("PATCH", base + "/members/~Tenant~2001:db8::1.8000", json={"ratio": 12})
    assert r.status_code == 200 and r.json()["ratio"] == 12
    assert emu.ratios("/Tenant/app/pool2") == {"10.0.0.1%2:8000": 11, "2001:db8::1.8000": 12}
    # the selfLink, as sent back by clients, resolves to the member
    link = rd["selfLink"].replace("https://localhost", "").split("?")[0]
    assert c("GET", link).json()["ratio"] == 11
