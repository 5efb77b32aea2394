"""Fixtures of the unit tier: the BIG-IP client against requests-mock (test_bigip, test_bigip_writes)."""

from __future__ import annotations

import pytest

from controller.clock import FakeClock
from controller.ltm.client import BigIPClient
from tests.bigip_support import LOGIN, TOKEN, TOKENS, Recorder, cfg


@pytest.fixture(name="auth")
def auth_fixture(requests_mock):
    requests_mock.post(LOGIN, json={"token": {"token": TOKEN, "timeout": 1200}})
    requests_mock.patch(TOKENS, json={"token": TOKEN, "timeout": 36000})
    requests_mock.delete(TOKENS, json={})
    return requests_mock


@pytest.fixture(name="sleeps")
def sleeps_fixture():
    return Recorder()


@pytest.fixture(name="client")
def client_fixture(auth, sleeps):
    return BigIPClient(cfg(), clock=FakeClock(), sleep=sleeps)
