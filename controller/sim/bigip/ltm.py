"""REST handlers for LTM pools, pool members and nodes, with BIG-IP's validation.

Ephemeral members (created by BIG-IP from an FQDN template's DNS answers) refuse PATCH, PUT and
DELETE with a 400, inside a transaction too (which then fails whole at commit).
"""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

from controller.sim.bigip import shapes
from controller.sim.bigip.errors import RestError, err
from controller.sim.bigip.state import (
    HEALTH_STATES,
    IDENTITY_PROPS,
    OTHER_MEMBER_PROPS,
    SESSION_WRITES,
    STATE_WRITES,
    Member,
    Node,
    Pool,
    Request,
    Write,
    is_int,
    parse_member_name,
    uri_to_full_path,
)

if TYPE_CHECKING:
    from controller.sim.bigip.emulator import BigIPEmulator

Result = tuple[int, Any]

#: the pool's unsigned 32-bit integer properties: BIG-IP takes a number or a string of digits ("2000") and
#: stores (and returns) an integer; anything else, or out of range, is a 400
POOL_INTEGERS = ("queueTimeLimit", "queueDepthLimit", "slowRampTime", "minActiveMembers", "reselectTries")
_U32 = 2**32 - 1

POOL_PATCHABLE = ("loadBalancingMode", "queueOnConnectionLimit", "queueDepthLimit", "queueTimeLimit",
                  "description", "slowRampTime", "minActiveMembers", "monitor", "serviceDownAction",
                  "reselectTries", "allowNat", "allowSnat", "metadata")


def find_pool(emu: BigIPEmulator, seg: str) -> Pool:
    full = uri_to_full_path(seg)
    p = emu._pools.get(full)
    if p is None:
        raise err("pool_not_found_404", pool=full)
    return p


def find_member(p: Pool, seg: str) -> Member:
    if seg.startswith("~"):
        parts = seg[1:].split("~")
        partition, name = parts[0], parts[-1]
    else:
        partition, name = p.partition, seg
    m = p.members.get(name)
    if m is None or m.partition != partition:
        node, port = parse_member_name(name)
        if port is None:
            raise err("object_not_found_404", path=f"/{partition}/{name}")
        raise err("member_not_found_404", pool=p.full_path, node=f"/{partition}/{node}", port=port)
    return m


def _record(emu: BigIPEmulator, req: Request, pool: str, member: str | None, body: dict[str, Any], kind: str,
            changed: dict[str, tuple[Any, Any]], generation: int) -> None:
    emu._record(Write(emu.now(), pool, member, body, kind, changed, req.user, req.trans_id, generation,
                      emu.failover_state))


# -- pools -------------------------------------------------------------------------------------


def pools(emu: BigIPEmulator, req: Request) -> Result:
    expand = req.flag("expandSubcollections")
    m = re.match(r"\s*partition\s+eq\s+(\S+)\s*$", req.first("$filter"))
    with emu._lock:
        items = [shapes.select(req, shapes.pool_json(emu, p, expand)) for p in emu._pools.values()
                 if not m or p.partition == m.group(1)]
    return 200, shapes.collection(emu, req, "tm:ltm:pool:poolcollectionstate", "/mgmt/tm/ltm/pool", items)


def pool_get(emu: BigIPEmulator, req: Request, pool: str) -> Result:
    with emu._lock:
        return 200, shapes.select(req, shapes.pool_json(emu, find_pool(emu, pool), req.flag("expandSubcollections")))


def pool_patch(emu: BigIPEmulator, req: Request, pool: str) -> Result:
    """Pool PATCH. A `members` list REPLACES the pool's members (as on BIG-IP); logged as PATCH-POOL."""
    body = req.json()
    if not isinstance(body, dict):
        raise err("invalid_json_400")
    with emu._lock:
        p = find_pool(emu, pool)
        for k in body:
            if k not in POOL_PATCHABLE and k != "members" and k not in IDENTITY_PROPS:
                raise err("unexpected_property_400", item=f"/ltm/pool/{p.uri_name}",
                          pair=f"{json.dumps(k)}:{json.dumps(body[k])}")
        values: dict[str, Any] = {k: _pool_integer(p, k, v) if k in POOL_INTEGERS else v for k, v in body.items()}
        before = {k: copy.deepcopy(p.props.get(k)) for k in values if k in POOL_PATCHABLE and k != "metadata"}
        for k, v in values.items():
            if k == "metadata":
                p.metadata = v
            elif k in POOL_PATCHABLE:
                p.props[k] = v
        if "members" in body:
            _replace_members(emu, p, body["members"] or [])
        p.generation = emu._next_gen()
        changed = {k: (old, p.props.get(k)) for k, old in before.items() if old != p.props.get(k)}
        _record(emu, req, p.full_path, None, copy.deepcopy(body), "PATCH-POOL", changed, p.generation)
        return 200, shapes.pool_json(emu, p, expand=False)


def _pool_integer(p: Pool, prop: str, value: Any) -> int:
    """An integer pool property as BIG-IP stores it: 2000 or "2000" -> 2000; else a 400 (nothing changed)."""
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if not is_int(number) or not 0 <= number <= _U32:
        raise err("invalid_pool_value_400", value=json.dumps(value), prop=prop, pool=p.full_path,
                  why=f"must be an integer in 0..{_U32}")
    return number


def _replace_members(emu: BigIPEmulator, p: Pool, items: list[Any]) -> None:
    old = p.members
    p.members = {}
    for item in items:
        spec: dict[str, Any] = {"name": item} if isinstance(item, str) else dict(item)
        name = spec.get("name", "").split("/")[-1]
        if name in old:
            p.members[name] = old[name]
        else:
            node, _port = parse_member_name(name)
            p.members[name] = Member(name=name, partition=p.partition, address=spec.get("address", node),
                                     generation=emu._next_gen())
        if "ratio" in spec:
            p.members[name].ratio = spec["ratio"]


# -- members -----------------------------------------------------------------------------------


def members_get(emu: BigIPEmulator, req: Request, pool: str) -> Result:
    with emu._lock:
        p = find_pool(emu, pool)
        items = [shapes.select(req, shapes.member_json(emu, p, m)) for m in p.members.values()]
    return 200, shapes.collection(emu, req, "tm:ltm:pool:members:memberscollectionstate",
                                  f"/mgmt/tm/ltm/pool/{p.uri_name}/members", items)


def member_get(emu: BigIPEmulator, req: Request, pool: str, member: str) -> Result:
    with emu._lock:
        p = find_pool(emu, pool)
        return 200, shapes.select(req, shapes.member_json(emu, p, find_member(p, member)))


def member_patch(emu: BigIPEmulator, req: Request, pool: str, member: str) -> Result:
    return _write_member(emu, req, pool, member, "PATCH")


def member_put(emu: BigIPEmulator, req: Request, pool: str, member: str) -> Result:
    return _write_member(emu, req, pool, member, "PUT")


def member_delete(emu: BigIPEmulator, req: Request, pool: str, member: str) -> Result:
    with emu._lock:
        p = find_pool(emu, pool)
        m = find_member(p, member)
        if m.ephemeral:
            raise err("ephemeral_delete_400", pool=p.full_path, member=m.full_path)
        del p.members[m.name]
        _record(emu, req, p.full_path, m.name, {}, "DELETE", {}, emu._next_gen())
        return 200, {}


def _write_member(emu: BigIPEmulator, req: Request, pool: str, member: str, kind: str) -> Result:
    body = req.json()
    if not isinstance(body, dict):
        raise err("invalid_json_400")
    with emu._lock:
        p = find_pool(emu, pool)
        m = find_member(p, member)
        if m.ephemeral:
            raise err("ephemeral_modify_400", pool=p.full_path, member=m.full_path)
        before = shapes.member_json(emu, p, m)
        changes = _validate_member(emu, p, m, body, kind)
        if not changes and kind == "PATCH" and not body:
            return 200, before
        for attr, value in changes.items():
            if attr == "props":
                m.props.update(value)
            else:
                setattr(m, attr, value)
        m.generation = emu._next_gen()
        after = shapes.member_json(emu, p, m)
        changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                   if k not in ("generation",) and before.get(k) != after.get(k)}
        _record(emu, req, p.full_path, m.name, copy.deepcopy(body), kind, changed, m.generation)
        return 200, after


def _validate_member(emu: BigIPEmulator, p: Pool, m: Member, body: dict[str, Any], kind: str) -> dict[str, Any]:
    """Map a PATCH/PUT body to attribute changes, or raise a 400 like BIG-IP."""
    item = f"/ltm/pool/{p.uri_name}/members/{m.uri_name}"
    who = f"{p.full_path} {m.full_path}"
    out: dict[str, Any] = {}
    if kind == "PUT":  # PUT resets what it does not carry
        out.update(ratio=1, connection_limit=0, description="")
    props: dict[str, Any] = {}

    def bad(prop: str, value: Any, why: str) -> RestError:
        return err("invalid_value_400", value=json.dumps(value), prop=prop, member=who, why=why)

    for k, v in body.items():
        if k == "ratio":
            if not is_int(v):
                raise bad(k, v, "must be an integer")
            if not 1 <= v <= emu.max_ratio:
                raise bad(k, v, f"must be in the range 1..{emu.max_ratio}")
            out["ratio"] = v
        elif k == "connectionLimit":
            if not is_int(v) or v < 0:
                raise bad(k, v, "must be an integer >= 0")
            out["connection_limit"] = v
        elif k == "description":
            if not isinstance(v, str):
                raise bad(k, v, "must be a string")
            out["description"] = v
        elif k == "session":
            if kind == "PUT" and v in ("monitor-enabled",):
                continue
            if v not in SESSION_WRITES:
                raise bad(k, v, "must be user-enabled or user-disabled")
            out["enabled"] = v == "user-enabled"
        elif k == "state":
            if kind == "PUT" and v in HEALTH_STATES:
                continue
            if v not in STATE_WRITES:
                raise bad(k, v, "must be user-up or user-down")
            out["forced_down"] = v == "user-down"
        elif k in OTHER_MEMBER_PROPS:
            props[k] = v
        elif k in IDENTITY_PROPS:
            current = shapes.member_json(emu, p, m).get(k)
            if k in ("kind", "selfLink", "generation", "ephemeral") or v == current:
                continue
            raise err("unexpected_property_400", item=item, pair=f"{json.dumps(k)}:{json.dumps(v)}")
        else:
            raise err("unexpected_property_400", item=item, pair=f"{json.dumps(k)}:{json.dumps(v)}")
    if props:
        out["props"] = props
    return out


# -- nodes -------------------------------------------------------------------------------------


def _find_node(emu: BigIPEmulator, seg: str) -> Node:
    full = uri_to_full_path(seg)
    n = emu._nodes.get(full)
    if n is None:
        raise err("node_not_found_404", node=full)
    return n


def nodes(emu: BigIPEmulator, req: Request) -> Result:
    with emu._lock:
        items = [shapes.select(req, shapes.node_json(emu, n)) for n in emu._nodes.values()]
    return 200, shapes.collection(emu, req, "tm:ltm:node:nodecollectionstate", "/mgmt/tm/ltm/node", items)


def node_get(emu: BigIPEmulator, req: Request, node: str) -> Result:
    with emu._lock:
        return 200, shapes.select(req, shapes.node_json(emu, _find_node(emu, node)))


def node_patch(emu: BigIPEmulator, req: Request, node: str) -> Result:
    """ratio and connectionLimit of a node (shared by every pool using it); logged as PATCH-NODE."""
    body = req.json()
    if not isinstance(body, dict):
        raise err("invalid_json_400")
    with emu._lock:
        n = _find_node(emu, node)
        if n.ephemeral:
            raise err("ephemeral_modify_400", pool="/ltm/node", member=n.full_path)
        for k, v in body.items():
            if k == "ratio" and is_int(v) and 1 <= v <= emu.max_ratio:
                n.ratio = v
            elif k == "connectionLimit" and is_int(v) and v >= 0:
                n.connection_limit = v
            elif k not in IDENTITY_PROPS:
                raise err("unexpected_property_400", item=f"/ltm/node/{n.uri_name}",
                          pair=f"{json.dumps(k)}:{json.dumps(v)}")
        n.generation = emu._next_gen()
        _record(emu, req, "", n.full_path, copy.deepcopy(body), "PATCH-NODE", {}, n.generation)
        return 200, shapes.node_json(emu, n)
