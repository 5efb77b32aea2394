"""Fixtures of the end-to-end tier: the CLI's emulator stack and background daemons (test_e2e_cli,
test_e2e_cli_daemon, test_e2e_production), the HTTPS BIG-IP emulator and a logged-in client (test_sim_bigip,
test_sim_bigip_writes) and the fault rig (the fault matrix, lifecycle, security, operator and health tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.sim.bigip import BigIPEmulator
from tests.conftest import shared_path
from tests.e2e_cli_support import LOADS
from tests.e2e_env import Daemon, Stack, assert_clean
from tests.fault_rig import Rig
from tests.sim_bigip_support import M1, POOL, Client

# -- the CLI against the emulator (tests.e2e_cli_support) ---------------------------------------

@pytest.fixture(name="stack")
def stack_fixture():
    s = Stack(LOADS).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(name="daemons")
def daemons_fixture():
    """Background `run` processes; killed (and their files closed) whatever the test did."""
    started: list[Daemon] = []

    def start(config, *extra, **kw) -> Daemon:
        d = Daemon(config, *extra, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
    for d in started:  # whatever a test asserted, no daemon may have printed a traceback or a secret
        assert_clean(d.out, d.err)


# -- the BIG-IP emulator over HTTPS (tests.sim_bigip_support) ----------------------------------

@pytest.fixture(name="bigip_fixtures")
def bigip_fixtures_fixture() -> Path:
    return shared_path("fixtures", "bigip")


@pytest.fixture(name="emu")
def emu_fixture(clock):
    e = BigIPEmulator({"admin": "secret", "ops": "ops", "viewer": "v"}, clock=clock,
                      roles={"ops": "operator", "viewer": "guest"},
                      user_ids={"admin": "2dcd8b8f-5ac5-4c2e-b1ba-1c4d2d1e9b7f"}, trans_id_start=1389812351)
    e.add_pool(POOL, [M1, "10.0.0.2:8000", {"name": "10.0.0.3:8000", "ratio": 4}], description="test",
               monitor="min 1 of { /Common/http /Common/inband }")
    e.start()
    yield e
    e.stop()


@pytest.fixture(name="c")
def c_fixture(emu):
    cl = Client(emu)
    cl.login()
    return cl


# -- the fault rig (tests.fault_rig) -------------------------------------------------------------

@pytest.fixture
def rig_factory():
    made = []

    def make(*args, **kw) -> Rig:
        rig = Rig(*args, **kw).start()
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.stop()
