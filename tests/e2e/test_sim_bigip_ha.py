"""The emulator's realism for HA pairs, FQDN pools, nodes, strict paths and paging, over real HTTPS."""

from __future__ import annotations

import requests

from controller.sim.bigip import BigIPEmulator, HAPair

POOL = "/Common/llm-pool"
PURI = "/mgmt/tm/ltm/pool/~Common~llm-pool"
USERS = {"admin": "secret"}


def _get(url: str, cert: str, path: str, **kw) -> requests.Response:
    return requests.get(url + path, auth=("admin", "secret"), verify=cert, timeout=10, **kw)


def _patch(url: str, cert: str, path: str, body: dict) -> requests.Response:
    return requests.patch(url + path, json=body, auth=("admin", "secret"), verify=cert, timeout=10)


def _status(body: dict) -> str:
    (entry,) = body["entries"].values()
    return entry["nestedStats"]["entries"]["status"]["description"]


def test_standalone_unit_is_active_with_itself_as_self_device():
    with BigIPEmulator(USERS) as e:
        assert _status(_get(e.base_url, e.cert_path, "/mgmt/tm/cm/failover-status").json()) == "ACTIVE"
        (dev,) = _get(e.base_url, e.cert_path, "/mgmt/tm/cm/device").json()["items"]
        assert (dev["selfDevice"], dev["failoverState"], dev["hostname"]) == ("true", "active", e.hostname)
        raw = _get(e.base_url, e.cert_path, "/mgmt/tm/sys/failover").json()["apiRawValues"]["apiAnonymous"]
        assert raw.startswith("Failover active for ")


def test_ha_pair_roles_swap_and_each_unit_reports_itself():
    pair = HAPair(BigIPEmulator(USERS, hostname="bigip-a.example.com"), BigIPEmulator(USERS, hostname="bigip-b.example.com"))
    with pair:
        a, b = pair.units
        assert a.port == b.port and a.base_url != b.base_url
        cert = pair.cert_path
        assert _status(_get(a.base_url, cert, "/mgmt/tm/cm/failover-status").json()) == "ACTIVE"
        assert _status(_get(b.base_url, cert, "/mgmt/tm/cm/failover-status").json()) == "STANDBY"
        devs = _get(b.base_url, cert, "/mgmt/tm/cm/device").json()["items"]
        assert {(d["hostname"], d["selfDevice"], d["failoverState"]) for d in devs} == {
            ("bigip-a.example.com", "false", "active"), ("bigip-b.example.com", "true", "standby")}
        assert pair.swap() is b
        assert _status(_get(a.base_url, cert, "/mgmt/tm/cm/failover-status").json()) == "STANDBY"
        assert _status(_get(b.base_url, cert, "/mgmt/tm/cm/failover-status").json()) == "ACTIVE"
        a.set_failover_state("forced-offline")
        assert _status(_get(a.base_url, cert, "/mgmt/tm/cm/failover-status").json()) == "FORCED OFFLINE"
        groups = _get(a.base_url, cert, "/mgmt/tm/cm/device-group").json()["items"]
        (dg,) = [g for g in groups if g["type"] == "sync-failover"]
        assert dg["autoSync"] == "enabled"
        members = _get(a.base_url, cert, f"/mgmt/tm/cm/device-group/~Common~{dg['name']}/devices").json()["items"]
        assert [m["name"] for m in members] == ["bigip-a.example.com", "bigip-b.example.com"]


def test_auto_sync_replicates_a_write_to_the_peer_and_records_the_unit_state():
    pair = HAPair(BigIPEmulator(USERS), BigIPEmulator(USERS))
    pair.add_pool(POOL, ["10.0.0.1:8000"])
    a, b = pair.units
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    assert a.request("PATCH", PURI + "/members/~Common~10.0.0.1:8000", {"ratio": 7}, headers=auth).status == 200
    assert b.ratios(POOL) == {"10.0.0.1:8000": 7}
    assert [w.failover_state for w in a.writes] == ["active"] and b.writes == []
    b.request("PATCH", PURI + "/members/~Common~10.0.0.1:8000", {"ratio": 9}, headers=auth)  # standby accepts it
    assert a.ratios(POOL) == {"10.0.0.1:8000": 9}
    assert [(h, w.failover_state) for h, w in pair.writes_off_active()] == [(b.hostname, "standby")]


def test_without_auto_sync_changes_stay_pending_until_synced():
    pair = HAPair(BigIPEmulator(USERS), BigIPEmulator(USERS), auto_sync=False)
    pair.add_pool(POOL, ["10.0.0.1:8000"])
    a, b = pair.units
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    a.request("PATCH", PURI + "/members/~Common~10.0.0.1:8000", {"ratio": 5}, headers=auth)
    assert b.ratios(POOL) == {"10.0.0.1:8000": 1}
    status = a.request("GET", "/mgmt/tm/cm/sync-status", headers=auth).json()
    assert _status(status) == "Changes Pending"
    a.sync()
    assert b.ratios(POOL) == {"10.0.0.1:8000": 5}
    assert _status(a.request("GET", "/mgmt/tm/cm/sync-status", headers=auth).json()) == "In Sync"


def test_fqdn_template_and_ephemeral_members_refuse_changes_as_bigip_does():
    e = BigIPEmulator(USERS)
    e.add_pool(POOL)
    names = e.add_fqdn_member(POOL, "llm.example.com", 8000, ["10.0.0.5", "10.0.0.6"])
    assert names == ["llm.example.com:8000", "_auto_10.0.0.5:8000", "_auto_10.0.0.6:8000"]
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    items = e.request("GET", PURI + "/members", headers=auth).json()["items"]
    template, eph = items[0], items[1]
    assert (template["address"], template["state"], template["fqdn"]["autopopulate"]) == ("any6", "fqdn-up", "enabled")
    assert (eph["address"], eph["ephemeral"]) == ("10.0.0.5", "true")
    r = e.request("PATCH", PURI + "/members/~Common~_auto_10.0.0.5:8000", {"ratio": 3}, headers=auth)
    assert r.status == 400 and "ephemeral" in r.json()["message"] and r.json()["message"].startswith("0107189b:3:")
    r = e.request("DELETE", PURI + "/members/~Common~_auto_10.0.0.5:8000", headers=auth)
    assert r.status == 400 and "Cannot delete ephemeral object" in r.json()["message"]
    assert e.writes == [] and e.ratios(POOL)["_auto_10.0.0.5:8000"] == 1


def test_an_ephemeral_member_in_a_transaction_fails_the_whole_commit():
    e = BigIPEmulator(USERS)
    e.add_pool(POOL, ["10.0.0.1:8000"])
    e.add_fqdn_member(POOL, "llm.example.com", 8000, ["10.0.0.5"])
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    tid = e.request("POST", "/mgmt/tm/transaction", {}, headers=auth).json()["transId"]
    coord = {**auth, "X-F5-REST-Coordination-Id": str(tid)}
    e.request("PATCH", PURI + "/members/~Common~10.0.0.1:8000", {"ratio": 4}, headers=coord)
    e.request("PATCH", PURI + "/members/~Common~_auto_10.0.0.5:8000", {"ratio": 4}, headers=coord)
    r = e.request("PATCH", f"/mgmt/tm/transaction/{tid}", {"state": "VALIDATING"}, headers=auth)
    assert r.status == 400 and "ephemeral" in r.json()["message"]
    assert e.ratios(POOL)["10.0.0.1:8000"] == 1 and e.writes == []


def test_nodes_are_listed_and_node_writes_are_logged_apart():
    e = BigIPEmulator(USERS)
    e.add_pool(POOL, ["10.0.0.1:8000", {"name": "gpu-node-1:8000", "address": "127.0.0.3"}])
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    nodes = e.request("GET", "/mgmt/tm/ltm/node", headers=auth).json()["items"]
    assert {(n["name"], n["address"]) for n in nodes} == {("10.0.0.1", "10.0.0.1"), ("gpu-node-1", "127.0.0.3")}
    r = e.request("PATCH", "/mgmt/tm/ltm/node/~Common~gpu-node-1", {"ratio": 3}, headers=auth)
    assert r.status == 200 and r.json()["ratio"] == 3
    assert [w.kind for w in e.writes] == ["PATCH-NODE"]


def test_a_bare_percent_is_refused_and_percent25_works():
    e = BigIPEmulator(USERS)
    e.add_pool(POOL, ["10.0.0.1%1:8000"])
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    assert e.request("GET", PURI + "/members/~Common~10.0.0.1%1:8000", headers=auth).status == 400
    r = e.request("GET", PURI + "/members/~Common~10.0.0.1%251:8000", headers=auth)
    assert r.status == 200 and r.json()["name"] == "10.0.0.1%1:8000"


def test_top_and_skip_page_with_next_link_and_empty_collections_have_no_items():
    e = BigIPEmulator(USERS)
    for i in range(5):
        e.add_pool(f"/Common/p{i}", [f"10.0.0.{i + 1}:80"])
    e.add_pool("/Common/empty")
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    page = e.request("GET", "/mgmt/tm/ltm/pool?$top=2", headers=auth).json()
    assert [p["name"] for p in page["items"]] == ["p0", "p1"]
    assert (page["totalItems"], page["currentItemCount"], page["pageIndex"], page["totalPages"]) == (6, 2, 1, 3)
    seen = [p["name"] for p in page["items"]]
    while "nextLink" in page:
        nxt = page["nextLink"].replace("https://localhost", "")
        page = e.request("GET", nxt, headers=auth).json()
        seen += [p["name"] for p in page.get("items", [])]
    assert seen == ["p0", "p1", "p2", "p3", "p4", "empty"]
    members = e.request("GET", "/mgmt/tm/ltm/pool/~Common~empty/members", headers=auth).json()
    assert members["kind"] == "tm:ltm:pool:members:memberscollectionstate" and "items" not in members
    pool = e.request("GET", "/mgmt/tm/ltm/pool/~Common~empty?expandSubcollections=true", headers=auth).json()
    assert "items" not in pool["membersReference"]


def test_as3_declaration_is_served_only_when_installed():
    e = BigIPEmulator(USERS)
    auth = {"Authorization": "Basic YWRtaW46c2VjcmV0"}
    assert e.request("GET", "/mgmt/shared/appsvcs/declare", headers=auth).status == 404
    e.as3_declaration = {"class": "ADC", "Tenant": {"class": "Tenant", "App": {"class": "Application"}}}
    assert e.request("GET", "/mgmt/shared/appsvcs/declare", headers=auth).json()["class"] == "ADC"
