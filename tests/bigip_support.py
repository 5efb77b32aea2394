"""Helpers shared by test_bigip, test_bigip_writes and test_queue_settings (their fixtures `auth`, `sleeps`
and `client` are in tests/unit/conftest.py)."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

from controller.config.schema import F5Config
from controller.model import Member, MemberPlan, PoolRef
from tests.conftest import shared_path

# The real BIG-IP JSON lives beside the repo (../shared/fixtures/bigip), as tests/conftest.py expects.


def fixture(name: str):
    return json.loads(shared_path("fixtures", "bigip", name).read_text())


@dataclass(frozen=True)
class Err:
    """A named body of ../shared/fixtures/bigip/error_bodies.json, read when a test runs (not at collection)."""

    name: str


def resolve(body):
    return fixture("error_bodies.json")[body.name] if isinstance(body, Err) else body


class _Errors:
    def __getitem__(self, name: str):
        return resolve(Err(name))


ERR = _Errors()  # ERR["name"] inside a test body
HOST = "bigip.example"
BASE = f"https://{HOST}:443"
PASSWORD = "pw-S3cret-Value"
TOKEN = "TOKSECRETABCDEF0123"
LOGIN = BASE + "/mgmt/shared/authn/login"
TOKENS = re.compile(re.escape(BASE) + r"/mgmt/shared/authz/tokens/[^/?]+$")
REF = PoolRef("test_pool")
POOL_URL = BASE + "/mgmt/tm/ltm/pool/~Common~test_pool"


def cfg(**kw) -> F5Config:
    base = dict(host=HOST, username="ratio-bot", password=PASSWORD, verify_tls="/etc/f5/ca.pem", timeout=7.0)
    base.update(kw)
    return F5Config(**base)


def pool_reply(*extra_members: dict, **pool_fields) -> dict:
    """load_ltm_pool.json with the member subcollection merged in, as expandSubcollections=true returns it."""
    pool = fixture("load_ltm_pool.json")
    items = fixture("pool_members_subcollection.json") + [copy.deepcopy(m) for m in extra_members]
    pool["membersReference"]["items"] = items
    pool.update(pool_fields)
    return pool


def member_json(name: str, address: str, *, partition="Common", full_path=None, **fields) -> dict:
    item = copy.deepcopy(fixture("pool_members_subcollection.json")[0])
    item.update(name=name, address=address, partition=partition,
                fullPath=full_path or f"/{partition}/{name}", session="monitor-enabled", state="up", **fields)
    return item


def member(name="1.1.1.1:80", address="1.1.1.1", port=80, **kw) -> Member:
    return Member(name=name, partition=kw.pop("partition", "Common"), address=address, port=port, **kw)


def plan(m: Member, ratio: int, limit: int | None = None, description: str | None = None) -> MemberPlan:
    return MemberPlan(member=m, sample=None, score=None, ratio=ratio,
                      connection_limit=m.connection_limit if limit is None else limit,
                      action="write", description=description)


class Recorder:
    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def non_auth(history):
    return [r for r in history if "/mgmt/shared/auth" not in r.url]
