"""/status against a client written to the sideband scheduler's API (seeds 000/001 and its api/server.py).

The client below is what a user's script does today against the sideband: list every pool at
`/pools/status`, read each one at `/pools/{pool_name}/{partition}/status`, read members' `ip`, `port`,
`score`, `percent` and `metrics` (`waiting_queue`, `cache_usage`, `running_req`), and parse the
`?simple` text form (`ip:port score` per line). It must run unchanged against f5-llm-ratio.
"""

from __future__ import annotations

import pytest
import requests

from controller.clock import FakeClock
from controller.config.schema import TelemetryConfig
from controller.model import Action, Member, MemberPlan, PoolPlan, PoolRef, PoolState, Sample, TickReport
from controller.telemetry import Telemetry

REF = PoolRef("llm-pool-1")
REF_B = PoolRef("llm-pool-2", "tenant-1")


def plan(ref: PoolRef, rows, mode: str = "ratio-least-connections-member") -> PoolPlan:
    members = []
    for i, (score, ratio, planned, waiting, running, kv) in enumerate(rows, start=1):
        m = Member(f"10.10.10.{i}:8001", ref.partition, f"10.10.10.{i}", 8001, ratio)
        sample = None if score is None else Sample(waiting, running=running, kv_usage=kv, engine="vllm")
        action = Action.UNKNOWN_HOLD if score is None else (Action.WRITE if planned != ratio else Action.HOLD)
        members.append(MemberPlan(member=m, sample=sample, score=score, ratio=planned, connection_limit=0, action=action,
                                  reason="why", scrape_error="timeout" if score is None else None))
    return PoolPlan(PoolState(ref, mode, tuple(p.member for p in members)), tuple(members))


@pytest.fixture
def server():
    t = Telemetry(TelemetryConfig(port=0), clock=FakeClock(), tick_seconds=1.0,
                  engine_types={REF.full_path: "vllm", REF_B.full_path: "vllm"},
                  policies={REF.full_path: "balance", REF_B.full_path: "s1"})
    t.poll_interval = 0.01
    t.start()
    # balance: weights of 60-110 (the raw policy output); s1: already 0-1
    t.observe(TickReport(started=0.0, finished=0.1, plans=(
        plan(REF, [(110.0, 100, 100, 0, 4, 0.3), (66.0, 60, 61, 5, 9, 0.8), (None, 50, 50, 0, 0, 0)]),
        plan(REF_B, [(0.82, 82, 82, 1.5, 2, 0.25), (0.75, 75, 75, 2.0, 3, 0.3)]),
    )))
    host, port = t.address
    yield f"http://{host}:{port}"
    t.stop()


# -- the sideband client -------------------------------------------------------------------------

def all_pools(base: str) -> list[dict]:
    r = requests.get(f"{base}/pools/status", timeout=5)
    r.raise_for_status()
    return r.json()["pools"]


def pool_status(base: str, name: str, partition: str) -> dict:
    r = requests.get(f"{base}/pools/{name}/{partition}/status", timeout=5)
    r.raise_for_status()
    return r.json()


def simple_scores(base: str, name: str, partition: str) -> dict[str, float]:
    r = requests.get(f"{base}/pools/{name}/{partition}/status?simple", timeout=5)
    r.raise_for_status()
    out = {}
    for line in r.text.splitlines():
        member, score = line.split(" ")
        out[member] = float(score)
    return out


# -- the checks ----------------------------------------------------------------------------------

def test_a_sideband_script_runs_unchanged(server):
    pools = all_pools(server)
    assert [(p["name"], p["partition"]) for p in pools] == [("llm-pool-1", "Common"), ("llm-pool-2", "tenant-1")]
    for p in pools:
        one = pool_status(server, p["name"], p["partition"])
        assert {"name", "partition", "engine_type", "member_count", "members"} <= one.keys()
        assert one["member_count"] == len(one["members"])
        for m in one["members"]:
            assert isinstance(m["ip"], str) and isinstance(m["port"], int)
            assert {"ip", "port", "score", "percent", "metrics", "detected_variant"} <= m.keys()
            assert {"waiting_queue", "cache_usage", "running_req"} <= m["metrics"].keys()
            assert m["score"] is None or 0.0 <= m["score"] <= 1.0
            assert 0.0 <= m["percent"] <= 100.0
        assert sum(m["percent"] for m in one["members"]) == pytest.approx(100.0, abs=0.05)
        simple = simple_scores(server, p["name"], p["partition"])
        assert set(simple) == {f"{m['ip']}:{m['port']}" for m in one["members"]}
        assert all(0.0 <= s <= 1.0 for s in simple.values())


def test_score_is_on_the_sidebands_scale_with_the_raw_weight_beside_it(server):
    members = pool_status(server, "llm-pool-1", "Common")["members"]
    assert [m["score"] for m in members] == [1.0, pytest.approx(0.6), None]
    assert [m["policy_weight"] for m in members] == [110.0, 66.0, None]
    s1 = pool_status(server, "llm-pool-2", "tenant-1")["members"]
    assert [m["score"] for m in s1] == [0.82, 0.75]  # s1 already is the sideband's S1 value


def test_member_fields_carry_the_sidebands_names(server):
    m1, m2, m3 = pool_status(server, "llm-pool-1", "Common")["members"]
    assert m1["metrics"] == {"waiting_queue": 0.0, "cache_usage": 0.3, "running_req": 4.0}
    assert (m1["detected_variant"], m1["detected_engine_type"], m1["detection_status"]) == ("vllm", "vllm", "ok")
    assert (m3["detected_variant"], m3["detection_status"]) == (None, "failed")
    # `percent` as the sideband computes it (core/scheduler.py get_pool_status at f254c3e): score / sum of
    # scores x 100, 2 decimals; the member without a score counts 0
    assert [m["percent"] for m in (m1, m2, m3)] == [62.5, 37.5, 0.0]
    # the share by BIG-IP ratio under its own name: planned ratios, as this tick wrote them
    assert m2["ratio_percent"] == pytest.approx(100 * 61 / 211, abs=0.01)
    assert m3["ratio_percent"] == pytest.approx(100 * 50 / 211, abs=0.01)


def test_simple_form_matches_the_sidebands_text(server):
    r = requests.get(f"{server}/pools/llm-pool-2/tenant-1/status?simple", timeout=5)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "10.10.10.1:8001 0.8200\n10.10.10.2:8001 0.7500"
    unknown = requests.get(f"{server}/pools/llm-pool-1/Common/status?simple", timeout=5).text.splitlines()
    assert unknown[2] == "10.10.10.3:8001 0.0000"  # no metrics: printed as the sideband prints an unscored member


def test_unknown_pool_is_a_404_with_the_sidebands_detail(server):
    r = requests.get(f"{server}/pools/nope/Common/status", timeout=5)
    assert r.status_code == 404 and r.json() == {"detail": "Pool nope:Common does not exist"}
    assert requests.get(f"{server}/pools/llm-pool-1/tenant-1/status", timeout=5).status_code == 404
