"""What every test shares: where the ../shared data lives, the test tiers, hypothesis profiles, a free
port and a fake clock. Nothing here reads a file or the network at import time.

Shared data. The reference fixtures, seeds and traces live beside the checkout, in `../shared`
(`fixtures/bigip`, `fixtures/engines`, `seeds`, `traces`). Set F5LR_SHARED to use another directory.
A test that needs a file from there asks `shared_path(...)` (or the `shared` fixture) for it and is
skipped, with the path it looked for, when it is absent.

Tiers. Every test is `unit`, `e2e` (real CLI subprocesses, the emulator over HTTPS, real sockets and
threads end to end) or `slow` (long-running simulations), applied here by file unless the test marks
itself. `pytest -m unit` is the quick loop while editing; plain `pytest` runs everything.

Hypothesis. Profile `dev` (few examples) or `ci` (many, derandomized) from HYPOTHESIS_PROFILE; when
unset, `ci` if the CI variable is set, else `dev`.
"""

from __future__ import annotations

import os
import pathlib
import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

from controller.clock import FakeClock

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_ENV = "F5LR_SHARED"

#: ../shared/fixtures/engines/*.txt: the real /metrics pages the engine tests read.
ENGINE_PAGES = ("llamacpp", "sglang", "tgi", "triton_trtllm", "vllm_0_11_dp2", "vllm_0_8_legacy")


# -- shared data -------------------------------------------------------------------------------

def shared_root() -> pathlib.Path:
    """The shared data directory: $F5LR_SHARED, else `shared` beside the checkout."""
    override = os.environ.get(SHARED_ENV)
    return pathlib.Path(override) if override else REPO.parent / "shared"


def shared_path(*parts: str) -> pathlib.Path:
    """A file or directory under the shared data directory; skips the calling test when it is absent."""
    path = shared_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (the ../shared checkout is absent; set {SHARED_ENV} to its location)")
    return path


def engine_page_text(name: str) -> str:
    """One real engine /metrics page, e.g. "vllm_0_11_dp2"."""
    return shared_path("fixtures", "engines", f"{name}.txt").read_text()


@pytest.fixture
def shared() -> Callable[..., pathlib.Path]:
    return shared_path


@pytest.fixture
def engine_page() -> Callable[[str], str]:
    """read(file name) -> text of ../shared/fixtures/engines/<file name>."""
    return lambda name: shared_path("fixtures", "engines", name).read_text()


# -- small shared helpers ----------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- tiers -------------------------------------------------------------------------------------

TIERS = ("unit", "e2e", "slow")
#: Test files of the end-to-end tier: the real CLI as a subprocess, the emulator over HTTPS, fault rigs
#: with real sockets and timeouts.
E2E_FILES = frozenset({
    "test_e2e_cli.py", "test_faults_bigip.py", "test_faults_engines.py", "test_lifecycle.py", "test_security.py",
    "test_sim_bigip.py", "test_sim_bigip_ha.py", "test_sim_f5sdk.py", "test_sim_engine_server.py",
    "test_deadline.py", "test_token_state.py", "test_cli_output.py",
    "test_live_page_browser.py", "test_e2e_ha.py", "test_honest_health.py", "test_sim_bigip_writes.py",
    "test_systemd_install.py", "test_e2e_cli_daemon.py", "test_e2e_two_instances.py", "test_operators.py",
})
#: Test files of the slow tier: the demo run as a user runs it, and scale runs.
SLOW_FILES = frozenset({"test_demo.py", "test_scale_smoke.py", "test_e2e_real_engines.py"})
#: Single tests of otherwise fast files that start a subprocess (file name::test name).
E2E_TESTS = frozenset({"test_bench_traffic.py::test_runs_as_module_and_as_script"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: fast, in-process tests of one module (pytest -m unit)")
    config.addinivalue_line("markers", "e2e: end-to-end tests through real sockets, subprocesses or the emulator")
    config.addinivalue_line("markers", "slow: long simulations and scale runs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(t) for t in TIERS):
            continue  # the test chose its own tier
        name = item.path.name
        test = f"{name}::{getattr(item, 'originalname', item.name)}"
        item.add_marker("slow" if name in SLOW_FILES else "e2e" if name in E2E_FILES or test in E2E_TESTS else "unit")


# -- hypothesis --------------------------------------------------------------------------------

settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# The fault rig's fixture, shared by the fault-matrix, lifecycle and security tests.
from tests.fault_rig import rig_factory  # noqa: E402,F401
