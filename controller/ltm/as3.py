"""Does a pool look owned by an AS3 declaration (or F5 Container Ingress Services, which drives AS3)?

AS3 rewrites the pools of a tenant whole at the next declaration: member ratios written by anyone
else are reset to the declaration's values, and show up as drift in AS3/Terraform workflows. Pure:
the caller fetches `/mgmt/shared/appsvcs/declare` if it can.
"""

from __future__ import annotations

from typing import Any

from controller.model import PoolRef

DECLARE_PATH = "/mgmt/shared/appsvcs/declare"


def path_looks_as3(ref: PoolRef) -> bool:
    """AS3 puts a pool at /<Tenant>/<Application>/<pool>: a partition other than Common with one folder."""
    return ref.partition != "Common" and bool(ref.sub_path) and "/" not in ref.sub_path


def declared(ref: PoolRef, declaration: Any) -> bool:
    """True when `declaration` (AS3's GET reply, with or without the outer AS3 class) declares this pool."""
    if not isinstance(declaration, dict):
        return False
    adc = declaration.get("declaration", declaration)
    if not isinstance(adc, dict):
        return False
    tenant = adc.get(ref.partition)
    if not isinstance(tenant, dict) or tenant.get("class") != "Tenant":
        return False
    apps = [tenant.get(ref.sub_path)] if ref.sub_path else [v for v in tenant.values() if isinstance(v, dict)]
    for app in apps:
        if isinstance(app, dict) and app.get("class") == "Application":
            pool = app.get(ref.name)
            if isinstance(pool, dict) and pool.get("class") == "Pool":
                return True
    return False


def owner_hint(ref: PoolRef, declaration: Any) -> str:
    """A warning for `check`, or "" when nothing suggests AS3 owns the pool."""
    if declared(ref, declaration):
        why = f"the AS3 declaration at {DECLARE_PATH} declares it"
    elif path_looks_as3(ref):
        why = "its path /Tenant/Application/pool is AS3's layout"
    else:
        return ""
    return (f"looks owned by AS3 ({why}): the next declaration resets every ratio written here; "
            "put the ratio in the declaration, or keep the pool out of AS3 (see docs/as3.md)")
