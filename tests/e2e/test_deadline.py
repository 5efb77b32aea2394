"""Whole-call deadlines and the tick budget (issue 12, part 1), against the emulator behind a TLS fault proxy.

`requests`' own timeout bounds each socket read: a reply trickling a byte at a time never hits it.
These tests trickle and hang replies (headers included) and check the call ends at its deadline."""

from __future__ import annotations

import time

import pytest

from controller.config.schema import F5Config
from controller.errors import BigIPTimeout
from controller.ltm.client import BigIPClient
from controller.model import Action, MemberPlan, PoolRef
from controller.sim.bigip import BigIPEmulator
from controller.sim.faultproxy import FaultProxy

PASSWORD = "deadline-Pa55-q8Zr"
POOL = "/Common/p"
REF = PoolRef("p")


@pytest.fixture
def rig():
    emu = BigIPEmulator(users={"admin": PASSWORD})
    emu.start()
    emu.add_pool(POOL, members=[{"name": f"127.0.0.1:{8000 + i}", "ratio": 10} for i in range(8)])
    proxy = FaultProxy("127.0.0.1", emu.port).start()
    yield emu, proxy
    proxy.stop()
    emu.stop()


def client(proxy: FaultProxy, timeout: float = 1.0, **kw) -> BigIPClient:
    cfg = F5Config(host="127.0.0.1", port=proxy.port, username="admin", password=PASSWORD,
                   verify_tls=proxy.cert_path, timeout=timeout, **kw)
    return BigIPClient(cfg)


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    except BigIPTimeout as e:
        return time.monotonic() - started, e
    raise AssertionError("no BigIPTimeout")


@pytest.mark.parametrize("mode", ["trickle", "hang", "hang-applied"])
def test_a_trickling_or_hanging_read_ends_at_the_call_deadline(rig, mode):
    _, proxy = rig
    c = client(proxy, timeout=1.0)
    assert c.read_pool(REF).members  # logged in, connection kept alive
    proxy.set(mode, method="GET", interval=0.2)  # 0.2 s per byte: each read succeeds, the reply never ends
    took, error = timed(lambda: c.read_pool(REF))
    assert 0.9 <= took < 1.5, took
    assert "no complete reply within 1s" in str(error)
    assert proxy.counts[mode] == 1  # not retried: a deadline passed is not retried in the same tick
    proxy.clear()
    assert c.read_pool(REF).members  # and the next call works


def test_trickling_login_headers_end_at_the_deadline(rig):
    _, proxy = rig
    proxy.set("trickle", method="POST", path="/authn/login", interval=0.2)
    took, _ = timed(lambda: client(proxy, timeout=0.8).read_pool(REF))
    assert took < 1.3


def test_one_budget_for_all_calls_and_no_call_once_it_is_spent(rig):
    _, proxy = rig
    c = client(proxy, timeout=5.0)
    c.read_pool(REF)
    proxy.set("hang", method="GET")
    c.begin_tick(1.0)
    took, _ = timed(lambda: c.read_pool(REF))
    assert took < 1.4  # the budget (1 s), not f5.timeout (5 s), cut the call
    before = proxy.counts["hang"]
    took, error = timed(lambda: c.read_pool(REF))
    assert took < 0.1 and "budget" in str(error) and proxy.counts["hang"] == before  # nothing sent
    c.end_tick()
    proxy.clear()
    assert c.read_pool(REF).members


def test_after_the_first_write_that_times_out_the_tick_writes_no_more(rig):
    emu, proxy = rig
    c = client(proxy, timeout=0.5, write_concurrency=2)
    state = c.read_pool(REF)
    proxy.set("hang", method="PATCH")
    plans = [MemberPlan(member=m, sample=None, score=None, ratio=50, connection_limit=m.connection_limit, action=Action.WRITE)
             for m in state.members]
    c.begin_tick(10.0)
    started = time.monotonic()
    result = c.apply(REF, plans)
    took = time.monotonic() - started
    c.end_tick()
    assert not result.applied
    assert len(result.failed) <= 2  # the writes already in flight when the first timed out
    assert len(result.deferred) >= len(plans) - 2
    assert took < 1.5, took  # not 8 writes x 0.5 s, and no retries
    assert proxy.counts["hang"] <= 2
