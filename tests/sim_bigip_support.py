"""Helpers shared by test_sim_bigip and test_sim_bigip_writes (their fixtures `bigip_fixtures`, `emu` and `c`
are in tests/e2e/conftest.py)."""

from __future__ import annotations

import json

import pytest
import requests

from controller.sim.bigip import BigIPEmulator
from tests.conftest import shared_path

POOL = "/Common/llm-pool"
PURI = "/mgmt/tm/ltm/pool/~Common~llm-pool"
M1 = "10.0.0.1:8000"
M1URI = PURI + "/members/~Common~10.0.0.1:8000"


needs_fixtures = pytest.mark.usefixtures("bigip_fixtures")  # skipped, saying where it looked, when absent


def fixture(name: str):
    return json.loads(shared_path("fixtures", "bigip", name).read_text())


class Client:
    """requests with the emulator's cert as CA, passed per request (REQUESTS_CA_BUNDLE overrides Session.verify)."""

    def __init__(self, emu: BigIPEmulator):
        self.emu = emu
        self.s = requests.Session()
        self.s.trust_env = False
        self.headers: dict = {}

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.s.request(method, self.emu.base_url + path, verify=self.emu.cert_path, headers=headers,
                              timeout=10, **kw)

    def login(self, user="admin", password="secret") -> str:
        r = self("POST", "/mgmt/shared/authn/login",
                 json={"username": user, "password": password, "loginProviderName": "tmos"})
        assert r.status_code == 200, r.text
        tok = r.json()["token"]["token"]
        self.headers["X-F5-Auth-Token"] = tok
        return tok
