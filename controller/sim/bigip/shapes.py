"""JSON shapes of the emulator's replies, as real BIG-IPs send them (see fixtures/bigip).

Collections follow iControl REST: an empty collection has no `items` key at all, and `$top`/`$skip`
give a page with `currentItemCount`, `itemsPerPage`, `pageIndex`, `startIndex`, `totalItems`,
`totalPages` and, when more follow, `nextLink` (BIG-IP 12+; the exact link text is the emulator's).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from controller.sim.bigip.errors import err
from controller.sim.bigip.state import (
    PROVIDER_ID,
    Command,
    Member,
    Node,
    Pool,
    Request,
    Token,
    Transaction,
    iso,
)

if TYPE_CHECKING:
    from controller.sim.bigip.core import EmulatorCore

_MEMBER_FIRST = ("dynamicRatio", "ephemeral", "fqdn", "inheritProfile", "logging", "monitor", "priorityGroup",
                 "rateLimit")


def member_json(core: EmulatorCore, p: Pool, m: Member) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "tm:ltm:pool:members:membersstate",
        "name": m.name,
        "partition": m.partition,
        "fullPath": m.full_path,
        "generation": m.generation,
        "selfLink": core._link(f"/mgmt/tm/ltm/pool/{p.uri_name}/members/{m.uri_name}"),
        "address": m.address,
        "connectionLimit": m.connection_limit,
    }
    if m.description:
        d["description"] = m.description
    for k in _MEMBER_FIRST:
        d[k] = copy.deepcopy(m.props[k])
    d["ratio"] = m.ratio
    d["session"] = m.session
    d["state"] = m.state
    for k, v in m.props.items():
        if k not in d:
            d[k] = copy.deepcopy(v)
    return d


def pool_json(core: EmulatorCore, p: Pool, expand: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "tm:ltm:pool:poolstate", "name": p.name, "partition": p.partition}
    if p.sub_path:
        d["subPath"] = p.sub_path
    d.update({"fullPath": p.full_path, "generation": p.generation,
              "selfLink": core._link(f"/mgmt/tm/ltm/pool/{p.uri_name}")})
    for k, v in p.props.items():
        if k in ("description", "monitor") and not v:
            continue  # BIG-IP omits unset optional strings
        d[k] = copy.deepcopy(v)
    ref: dict[str, Any] = {"link": core._link(f"/mgmt/tm/ltm/pool/{p.uri_name}/members"), "isSubcollection": True}
    if expand and p.members:  # an empty subcollection has no items key
        ref["items"] = [member_json(core, p, m) for m in p.members.values()]
    d["membersReference"] = ref
    if p.metadata:
        d["metadata"] = copy.deepcopy(p.metadata)
    return d


def node_json(core: EmulatorCore, n: Node) -> dict[str, Any]:
    return {
        "kind": "tm:ltm:node:nodestate", "name": n.name, "partition": n.partition, "fullPath": n.full_path,
        "generation": n.generation, "selfLink": core._link(f"/mgmt/tm/ltm/node/{n.uri_name}"),
        "address": n.address, "connectionLimit": n.connection_limit, "dynamicRatio": 1,
        "ephemeral": "true" if n.ephemeral else "false", "fqdn": copy.deepcopy(n.fqdn), "logging": "disabled",
        "monitor": "default", "rateLimit": "disabled", "ratio": n.ratio, "session": n.session, "state": n.state,
    }


def token_json(core: EmulatorCore, t: Token) -> dict[str, Any]:
    uid = core.user_id(t.user)
    return {
        "token": t.token, "name": t.token, "userName": t.user, "authProviderName": "tmos",
        "user": {"link": f"https://localhost/mgmt/cm/system/authn/providers/tmos/{PROVIDER_ID}/users/{uid}"},
        "groupReferences": [], "timeout": t.timeout,
        "startTime": iso(t.start_wall), "address": t.address, "partition": "[All]", "generation": t.generation,
        "lastUpdateMicros": int(t.updated_wall * 1e6),
        "expirationMicros": int((t.start_wall + t.timeout) * 1e6),
        "kind": "shared:authz:tokens:authtokenitemstate",
        "selfLink": f"https://localhost/mgmt/shared/authz/tokens/{t.token}",
    }


def trans_json(core: EmulatorCore, t: Transaction) -> dict[str, Any]:
    return {"transId": t.trans_id, "state": t.state, "timeoutSeconds": t.timeout, "asyncExecution": False,
            "validateOnly": False, "executionTimeout": 300, "executionTime": 0, "failureReason": t.failure,
            "kind": "tm:transactionstate", "selfLink": core._link(f"/mgmt/tm/transaction/{t.trans_id}")}


def command_json(core: EmulatorCore, t: Transaction, c: Command) -> dict[str, Any]:
    return {"method": c.method, "uri": "https://localhost" + c.path, "body": c.body, "evalOrder": c.command_id,
            "commandId": c.command_id, "kind": "tm:transaction:commandsstate",
            "selfLink": core._link(f"/mgmt/tm/transaction/{t.trans_id}/commands/{c.command_id}")}


def select(req: Request, d: dict[str, Any]) -> dict[str, Any]:
    sel = req.first("$select")
    if not sel:
        return d
    keep = {s.strip() for s in sel.split(",") if s.strip()}
    return {k: v for k, v in d.items() if k in keep}


def _count(req: Request, name: str) -> int:
    raw = req.first(name)
    if not raw:
        return 0
    if not raw.isdigit():
        raise err("invalid_value_400", value=raw, prop=name, member="query", why="must be a non-negative integer")
    return int(raw)


def collection(core: EmulatorCore, req: Request, kind: str, path: str, items: list[Any],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A collection reply: `items` only when non-empty; a page of them with `$top`/`$skip`."""
    d: dict[str, Any] = {"kind": kind, "selfLink": core._link(path)}
    d.update(extra or {})
    top, skip = _count(req, "$top"), _count(req, "$skip")
    if not top and not skip:
        if items:
            d["items"] = items
        return d
    total = len(items)
    per_page = top or max(total - skip, 0)
    page = items[skip:skip + per_page] if per_page else []
    kept = "".join(f"&{quote(k)}={quote(v, safe=',$')}" for k, vs in req.query.items()
                   if k not in ("$top", "$skip", "ver") for v in vs)

    def link(s: int) -> str:
        return f"https://localhost{path}?$top={per_page}&$skip={s}{kept}&ver={core.version}"

    d["selfLink"] = link(skip)
    d.update(currentItemCount=len(page), itemsPerPage=per_page,
             pageIndex=(skip // per_page + 1) if per_page else 1, startIndex=skip + 1, totalItems=total,
             totalPages=math.ceil(total / per_page) if per_page else 1)
    if page:
        d["items"] = page
    if per_page and skip + per_page < total:
        d["nextLink"] = link(skip + per_page)
    if skip > 0 and per_page:
        d["previousLink"] = link(max(skip - per_page, 0))
    return d
