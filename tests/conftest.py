import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def engine_page():
    def read(name: str) -> str:
        path = FIXTURES / "engines" / name
        if not path.exists():
            pytest.skip(f"shared fixtures not found at {path}")
        return path.read_text()

    return read


# The fault rig's fixture, shared by the fault-matrix, lifecycle and security tests.
from tests.fault_rig import rig_factory  # noqa: E402,F401
