"""Does a pool look owned by AS3? (issue 11: check warns, docs/as3.md explains)."""

from __future__ import annotations

from controller.ltm import as3
from controller.model import PoolRef

DECL = {"class": "AS3", "declaration": {"class": "ADC", "Tenant": {"class": "Tenant", "App": {
    "class": "Application", "llm_pool": {"class": "Pool", "members": []}}}}}


def test_a_declared_pool_is_named_by_the_declaration():
    ref = PoolRef("llm_pool", partition="Tenant", sub_path="App")
    assert as3.declared(ref, DECL) and as3.declared(ref, DECL["declaration"])
    assert "declares it" in as3.owner_hint(ref, DECL)


def test_the_tenant_application_path_alone_is_a_hint():
    ref = PoolRef("llm_pool", partition="Other", sub_path="App")
    assert not as3.declared(ref, DECL)
    assert "AS3's layout" in as3.owner_hint(ref, None)


def test_common_pools_and_deep_folders_are_not_flagged():
    assert as3.owner_hint(PoolRef("llm"), DECL) == ""
    assert as3.owner_hint(PoolRef("llm", partition="Part", sub_path="a/b"), None) == ""
    assert not as3.declared(PoolRef("llm_pool", partition="Tenant", sub_path="App"), {"class": "ADC"})
