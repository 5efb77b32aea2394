"""What every test shares: where the ../shared data lives, the test tiers, hypothesis profiles, a free
port and a fake clock. Nothing here reads a file or the network at import time.

Shared data. The reference fixtures, seeds and traces live beside the checkout, in `../shared`
(`fixtures/bigip`, `fixtures/engines`, `seeds`, `traces`). Set F5LR_SHARED to use another directory.
A test that needs a file from there asks `shared_path(...)` (or the `shared` fixture) for it and is
skipped, with the path it looked for, when it is absent.

Tiers. The folder sets the tier: tests/unit (in-process, no sockets or subprocesses), tests/e2e (real
CLI subprocesses, the emulator over HTTPS, real sockets and threads end to end) and tests/slow (the demo
as a user runs it, scale runs, real engines). `pytest tests/unit` (or `pytest -m unit`) is the quick loop
while editing; plain `pytest` runs everything. A test file outside the three folders, or a test marked
with another folder's tier, is a usage error. Fixtures used by one tier only live in that folder's
conftest.py.

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

TESTS = pathlib.Path(__file__).resolve().parent
#: The tier folders; the markers are registered once, in pyproject.toml.
TIERS = ("unit", "e2e", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its folder's tier: tests/unit, tests/e2e or tests/slow."""
    for item in items:
        path = item.path.resolve()
        parts = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ()
        tier = parts[0] if len(parts) > 1 and parts[0] in TIERS else None
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test file belongs in one of tests/{{unit,e2e,slow}}/ (its tier)")
        chosen = [t for t in TIERS if item.get_closest_marker(t)]
        if chosen and chosen != [tier]:
            raise pytest.UsageError(f"{item.nodeid}: marked {chosen} but in tests/{tier}/: the folder sets the tier")
        item.add_marker(tier)


# -- hypothesis --------------------------------------------------------------------------------

settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
