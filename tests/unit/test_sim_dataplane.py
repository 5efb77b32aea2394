"""LTM member selection models and the DataPlane's connection accounting and queueing."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from controller.clock import FakeClock
from controller.sim.bigip import BigIPEmulator
from controller.sim.dataplane import MODES, QUEUED, DataPlane, MemberView, PoolTable, as_view, decide, make_selector


def views(*specs, **common):
    return [MemberView(name, **{**common, **kw}) for name, kw in specs]


def run(mode, members, n):
    sel = make_selector(mode)
    return [sel.pick(members) for _ in range(n)]


# ------------------------------------------------------------------------------------------- selectors


def test_ratio_member_gives_exact_shares_per_cycle():
    ms = views(("a", dict(ratio=5)), ("b", dict(ratio=2)), ("c", dict(ratio=1)))
    picks = run("ratio-member", ms, 8 * 50)
    assert Counter(picks) == {"a": 250, "b": 100, "c": 50}
    for i in range(0, len(picks), 8):  # every cycle of sum(ratios) picks is exact
        assert Counter(picks[i:i + 8]) == {"a": 5, "b": 2, "c": 1}


def test_ratio_member_interleaves_instead_of_bursting():
    picks = run("ratio-member", views(("a", dict(ratio=3)), ("b", dict(ratio=1))), 8)
    assert picks == ["a", "a", "b", "a"] * 2
    picks = run("ratio-member", views(("a", dict(ratio=1)), ("b", dict(ratio=1)), ("c", dict(ratio=1))), 6)
    assert picks == ["a", "b", "c"] * 2


@pytest.mark.parametrize("seed", range(5))
def test_ratio_member_shares_match_random_ratios(seed):
    rnd = random.Random(seed)
    ratios = {f"m{i}": rnd.randint(1, 100) for i in range(rnd.randint(2, 8))}
    ms = [MemberView(n, ratio=r) for n, r in ratios.items()]
    n = 20000
    got = Counter(run("ratio-member", ms, n))
    total = sum(ratios.values())
    for name, r in ratios.items():
        assert got[name] / n == pytest.approx(r / total, abs=0.005)


def test_dynamic_ratio_maps_to_ratio():
    ms = views(("a", dict(ratio=2)), ("b", dict(ratio=1)))
    assert run("dynamic-ratio-member", ms, 6) == run("ratio-member", ms, 6)


def test_ratio_changes_take_effect_on_the_next_picks():
    ms = views(("a", dict(ratio=1)), ("b", dict(ratio=1)))
    sel = make_selector("ratio-member")
    [sel.pick(ms) for _ in range(10)]
    ms[0].ratio = 9
    assert Counter(sel.pick(ms) for _ in range(1000))["a"] == pytest.approx(900, abs=10)


def test_ratio_least_connections_prefers_high_ratio_at_equal_connections():
    for conns in (0, 2, 7):
        ms = views(("low", dict(ratio=1, connections=conns)), ("high", dict(ratio=4, connections=conns)))
        assert make_selector("ratio-least-connections-member").pick(ms) == "high"
    # fewer connections relative to ratio wins
    ms = views(("a", dict(ratio=1, connections=0)), ("b", dict(ratio=10, connections=20)))
    assert make_selector("ratio-least-connections-member").pick(ms) == "a"


def test_ratio_least_connections_fills_in_proportion_to_ratio():
    ms = views(("a", dict(ratio=3)), ("b", dict(ratio=1)))
    sel = make_selector("ratio-least-connections-member")
    for _ in range(40):  # long-lived connections: nothing released
        name = sel.pick(ms)
        next(m for m in ms if m.name == name).connections += 1
    assert {m.name: m.connections for m in ms} == {"a": 30, "b": 10}


def test_ratio_least_connections_ties_go_round_robin():
    ms = views(("a", {}), ("b", {}), ("c", {}))
    assert run("ratio-least-connections-member", ms, 6) == ["a", "b", "c"] * 2


def test_least_connections_and_round_robin():
    ms = views(("a", dict(connections=3)), ("b", dict(connections=1)), ("c", dict(connections=1)))
    assert run("least-connections-member", ms, 4) == ["b", "c", "b", "c"]
    assert run("round-robin", ms, 4) == ["a", "b", "c", "a"]
    ms[0].ratio = 100  # ignored
    assert Counter(run("round-robin", ms, 300)) == {"a": 100, "b": 100, "c": 100}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inactive", [dict(session="user-disabled"), dict(state="down"),
                                      dict(state="user-down"), dict(state="forced-down"), dict(state="offline")])
def test_disabled_and_down_members_are_never_picked(mode, inactive):
    ms = views(("a", dict(ratio=1000, **inactive)), ("b", dict(ratio=1)), ("c", dict(ratio=1, connections=5)))
    assert "a" not in run(mode, ms, 200)


@pytest.mark.parametrize("mode", MODES)
def test_checking_and_unchecked_members_take_traffic(mode):
    ms = views(("a", dict(state="unchecked", session="user-enabled")), ("b", dict(state="checking")))
    assert set(run(mode, ms, 10)) == {"a", "b"}


@pytest.mark.parametrize("mode", MODES)
def test_members_at_connection_limit_are_not_eligible(mode):
    ms = views(("a", dict(ratio=50, connection_limit=2, connections=2)), ("b", dict(ratio=1, connections=9)))
    assert set(run(mode, ms, 20)) == {"b"}


def test_decide_queue_or_reject():
    full = views(("a", dict(connection_limit=1, connections=1)), ("b", dict(connection_limit=2, connections=2)))
    sel = make_selector("ratio-least-connections-member")
    assert decide(sel, full, queue_on_connection_limit=False) is None
    assert decide(sel, full, queue_on_connection_limit=True) == QUEUED
    down = views(("a", dict(state="down")), ("b", dict(session="user-disabled")))
    assert decide(sel, down, queue_on_connection_limit=True) is None  # nothing to wait for
    assert decide(sel, [], queue_on_connection_limit=True) is None


def test_selectors_take_plain_dicts():
    ms = [as_view({"name": "a", "ratio": 3, "connectionLimit": 0, "session": "monitor-enabled", "state": "up"}),
          as_view({"name": "b", "ratio": 1})]
    assert Counter(run("ratio-member", ms, 40)) == {"a": 30, "b": 10}


def test_unknown_mode():
    with pytest.raises(ValueError, match="not modelled"):
        make_selector("fastest-app-response")


# ------------------------------------------------------------------------------------------ data plane


def test_dataplane_counts_connections_and_uses_them():
    dp = DataPlane()
    dp.table.set_pool("p", "least-connections-member", ["a", "b"])
    assert [dp.pick("p") for _ in range(4)] == ["a", "b", "a", "b"]
    assert dp.connections("p") == {"a": 2, "b": 2}
    dp.release("p", "a")
    dp.release("p", "a")
    assert dp.pick("p") == "a" and dp.pick("p") == "a"
    assert dp.stats("p").picks == {"a": 4, "b": 2}


def test_connection_limit_rejects_without_queueing():
    dp = DataPlane()
    dp.table.set_pool("p", "ratio-least-connections-member", [{"name": "a", "connection_limit": 1},
                                                              {"name": "b", "connection_limit": 1}])
    assert {dp.pick("p"), dp.pick("p")} == {"a", "b"}
    assert dp.pick("p") is None
    assert dp.stats("p").rejected == 1


def test_queue_is_fifo_and_served_on_release():
    dp = DataPlane()
    dp.table.set_pool("p", "ratio-member", [{"name": "a", "connection_limit": 1},
                                            {"name": "b", "connection_limit": 1}], queue_on_connection_limit=True)
    first = [dp.pick("p", ticket=i) for i in range(2)]
    assert sorted(first) == ["a", "b"]
    assert [dp.pick("p", ticket=i) for i in range(2, 5)] == [QUEUED] * 3
    assert dp.queue_length("p") == 3 and dp.queued_tickets("p") == [2, 3, 4]
    assert dp.release("p", "b") == [(2, "b")]
    assert dp.release("p", "a") == [(3, "a")]
    assert dp.connections("p") == {"a": 1, "b": 1}
    # a newcomer cannot overtake the queue even if a slot is free at that instant
    assert dp.pick("p", ticket=5) == QUEUED
    assert dp.release("p", "a") == [(4, "a")]
    assert dp.release("p", "b") == [(5, "b")]
    st = dp.stats("p")
    assert (st.queued, st.dequeued) == (4, 4)


def test_queue_depth_limit():
    dp = DataPlane()
    dp.table.set_pool("p", "round-robin", [{"name": "a", "connection_limit": 1}], queue_on_connection_limit=True,
                      queue_depth_limit=2)
    assert dp.pick("p") == "a"
    assert [dp.pick("p", t) for t in "xyz"] == [QUEUED, QUEUED, None]
    assert dp.stats("p").rejected == 1


def test_queue_time_limit_expires_waiters():
    clock = FakeClock()
    dp = DataPlane(clock=clock.monotonic)
    dp.table.set_pool("p", "round-robin", [{"name": "a", "connection_limit": 1}], queue_on_connection_limit=True,
                      queue_time_limit_ms=500)
    dp.pick("p")
    dp.pick("p", "old")
    clock.advance(0.4)
    dp.pick("p", "young")
    clock.advance(0.2)
    assert dp.expire() == [("p", "old")]
    assert dp.release("p", "a") == [("young", "a")]
    assert dp.stats("p").expired == 1


def test_cancel_and_drain_after_config_change():
    dp = DataPlane()
    dp.table.set_pool("p", "round-robin", [{"name": "a", "connection_limit": 1}], queue_on_connection_limit=True)
    dp.pick("p")
    dp.pick("p", "t1")
    dp.pick("p", "t2")
    assert dp.cancel("p", "t1") and not dp.cancel("p", "nope")
    dp.table.set_member("p", "a", connection_limit=5)
    assert dp.drain("p") == [("t2", "a")]
    assert dp.connections("p") == {"a": 2}


def test_ratio_writes_apply_immediately_via_pool_table():
    table = PoolTable().set_pool("p", "ratio-member", [{"name": "a", "ratio": 1}, {"name": "b", "ratio": 1}])
    dp = DataPlane(table)
    [dp.pick("p") for _ in range(10)]
    table.set_member("p", "a", ratio=4)
    got = Counter(dp.pick("p") for _ in range(500))
    assert got["a"] == pytest.approx(400, abs=5)


def test_dataplane_bound_to_the_emulator_follows_rest_writes():
    emu = BigIPEmulator({"admin": "x"})
    emu.add_pool("/Common/p", ["10.0.0.1:80", "10.0.0.2:80"], lb_mode="ratio-member")
    dp = emu.dataplane
    auth = {"Authorization": "Basic YWRtaW46eA=="}
    assert Counter(dp.pick("/Common/p") for _ in range(10)) == {"10.0.0.1:80": 5, "10.0.0.2:80": 5}
    r = emu.request("PATCH", "/mgmt/tm/ltm/pool/~Common~p/members/~Common~10.0.0.2:80", {"ratio": 9}, headers=auth)
    assert r.status == 200
    assert Counter(dp.pick("/Common/p") for _ in range(100)) == {"10.0.0.1:80": 10, "10.0.0.2:80": 90}
    emu.request("PATCH", "/mgmt/tm/ltm/pool/~Common~p/members/~Common~10.0.0.2:80", {"state": "user-down"},
                headers=auth)
    assert {dp.pick("/Common/p") for _ in range(10)} == {"10.0.0.1:80"}
    emu.set_member("/Common/p", "10.0.0.1:80", connection_limit=1)
    dp.reset()
    assert dp.pick("/Common/p") == "10.0.0.1:80" and dp.pick("/Common/p") is None
