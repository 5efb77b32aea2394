"""F5's own Python SDK (f5-sdk) against the emulator: an independent check that it answers like BIG-IP.

f5-sdk needs distutils, so it only runs on Python < 3.12; here it is pinned to 3.11 where it is installed.
"""

from __future__ import annotations

import sys
import warnings

import pytest

if sys.version_info[:2] != (3, 11):
    pytest.skip(f"f5-sdk check runs on Python 3.11 only (this is {sys.version.split()[0]})", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    f5_bigip = pytest.importorskip("f5.bigip", reason="f5-sdk is not installed (pip install -e .[test])")
    from f5.bigip.contexts import TransactionContextManager
    from f5.sdk_exception import TransactionSubmitException
    from icontrol.exceptions import iControlUnexpectedHTTPError

from controller.sim.bigip import BigIPEmulator

POOL = "/Common/llm-pool"
A, B = "10.0.0.1:8000", "10.0.0.2%2:8000"


@pytest.fixture
def emu():
    e = BigIPEmulator({"admin": "secret"})
    e.add_pool(POOL, [A, B])
    e.start()
    yield e
    e.stop()


@pytest.fixture(params=[False, True], ids=["basic-auth", "token-auth"])
def mgmt(request, emu):
    m = f5_bigip.ManagementRoot("127.0.0.1", "admin", "secret", port=emu.port, token=request.param)
    m.uses_token = request.param
    return m


def test_connects_and_reads_version(mgmt, emu):
    assert mgmt.tmos_version == "17.1.1"
    # token mode logs in once and then sends X-F5-Auth-Token
    assert emu.logins == (1 if mgmt.uses_token else 0)


def test_loads_pool_and_members(mgmt):
    pool = mgmt.tm.ltm.pools.pool.load(name="llm-pool", partition="Common")
    assert pool.fullPath == POOL and pool.loadBalancingMode == "ratio-least-connections-member"
    members = pool.members_s.get_collection()
    assert [m.name for m in members] == [A, B]
    assert members[1].address == "10.0.0.2%2"
    assert [p.name for p in mgmt.tm.ltm.pools.get_collection()] == ["llm-pool"]


def test_modify_ratio(mgmt, emu):
    pool = mgmt.tm.ltm.pools.pool.load(name="llm-pool", partition="Common")
    member = pool.members_s.members.load(name=A, partition="Common")
    member.modify(ratio=42)
    assert member.ratio == 42 and emu.ratios(POOL)[A] == 42
    rd = pool.members_s.members.load(name=B, partition="Common")  # route domain: %25-encoded on the wire
    rd.modify(ratio=7)
    assert emu.ratios(POOL)[B] == 7
    assert [w.kind for w in emu.writes] == ["PATCH", "PATCH"]
    member.refresh()
    assert member.ratio == 42


def test_modify_ratio_zero_is_rejected(mgmt, emu):
    member = mgmt.tm.ltm.pools.pool.load(name="llm-pool", partition="Common").members_s.members.load(
        name=A, partition="Common")
    with pytest.raises(iControlUnexpectedHTTPError) as exc:
        member.modify(ratio=0)
    assert exc.value.response.status_code == 400
    assert emu.ratios(POOL)[A] == 1 and emu.writes == []


def test_transaction_applies_atomically(mgmt, emu):
    tx = mgmt.tm.transactions.transaction
    with TransactionContextManager(tx) as api:
        pool = api.tm.ltm.pools.pool.load(name="llm-pool", partition="Common")
        pool.members_s.members.load(name=A, partition="Common").modify(ratio=3)
        pool.members_s.members.load(name=B, partition="Common").modify(ratio=9)
        assert emu.ratios(POOL) == {A: 1, B: 1}  # queued only
    assert emu.ratios(POOL) == {A: 3, B: 9}
    assert len({w.trans_id for w in emu.writes}) == 1 and emu.writes[0].trans_id is not None
    assert emu.commits == 1


def test_failed_transaction_applies_nothing(mgmt, emu):
    tx = mgmt.tm.transactions.transaction
    with pytest.raises(TransactionSubmitException):
        with TransactionContextManager(tx) as api:
            pool = api.tm.ltm.pools.pool.load(name="llm-pool", partition="Common")
            pool.members_s.members.load(name=A, partition="Common").modify(ratio=3)
            pool.members_s.members.load(name=B, partition="Common").modify(ratio=0)
    assert emu.ratios(POOL) == {A: 1, B: 1} and emu.writes == []
