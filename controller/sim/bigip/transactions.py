"""Transactions: POST creates, requests with X-F5-REST-Coordination-Id are queued, PATCH VALIDATING commits.

A commit runs every queued command in order against live state and, on the first failure, restores
everything (pools, nodes, the write log) and fails as a whole. Transactions expire after
`transaction_timeout` seconds (120 by default).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from controller.sim.bigip import shapes
from controller.sim.bigip.errors import RestError, err
from controller.sim.bigip.state import Command, Reply, Request, Transaction

if TYPE_CHECKING:
    from controller.sim.bigip.emulator import BigIPEmulator

Result = tuple[int, Any]


def _purge(emu: BigIPEmulator) -> None:
    now = emu.now()
    for tid in [tid for tid, t in emu._transactions.items() if now - t.created >= t.timeout]:
        del emu._transactions[tid]


def find_trans(emu: BigIPEmulator, tid: Any) -> Transaction:
    _purge(emu)
    try:
        t = emu._transactions.get(int(tid))
    except (TypeError, ValueError):
        t = None
    if t is None:
        raise err("transaction_not_found_404", trans_id=tid)
    return t


def create(emu: BigIPEmulator, req: Request) -> Result:
    with emu._lock:
        if emu._next_trans is None:
            emu._next_trans = int(emu._wall() * 1e6)
        tid = emu._next_trans
        emu._next_trans += 1
        t = Transaction(tid, req.user, emu.now(), int(emu.transaction_timeout))
        emu._transactions[tid] = t
        return 200, shapes.trans_json(emu, t)


def listing(emu: BigIPEmulator, req: Request) -> Result:
    with emu._lock:
        _purge(emu)
        items = [shapes.trans_json(emu, t) for t in emu._transactions.values()]
    return 200, shapes.collection(emu, req, "tm:transaction:transactioncollectionstate", "/mgmt/tm/transaction", items)


def get(emu: BigIPEmulator, req: Request, tid: str) -> Result:
    with emu._lock:
        return 200, shapes.trans_json(emu, find_trans(emu, tid))


def commands(emu: BigIPEmulator, req: Request, tid: str) -> Result:
    with emu._lock:
        t = find_trans(emu, tid)
        items = [shapes.command_json(emu, t, c) for c in t.commands]
    return 200, shapes.collection(emu, req, "tm:transaction:commandscollectionstate",
                                  f"/mgmt/tm/transaction/{t.trans_id}/commands", items)


def delete(emu: BigIPEmulator, req: Request, tid: str) -> Result:
    with emu._lock:
        t = find_trans(emu, tid)
        del emu._transactions[t.trans_id]
        return 200, {}


def queue_command(emu: BigIPEmulator, req: Request, coord: str) -> Reply:
    with emu._lock:
        t = find_trans(emu, coord)
        if t.state != "STARTED":
            raise err("transaction_state_400", old=t.state, new="STARTED")
        req.trans_id = t.trans_id
        body = req.json() if req.body_bytes.strip() else {}
        c = Command(req.method, req.path, req.query, body, len(t.commands) + 1)
        t.commands.append(c)
        return Reply(200, shapes.command_json(emu, t, c))


def patch(emu: BigIPEmulator, req: Request, tid: str) -> Result:
    body = req.json()
    if req.headers.get("x-f5-rest-coordination-id"):
        raise err("transaction_header_left_on_commit_400", trans_id=tid)
    with emu._lock:
        t = find_trans(emu, tid)
        new_state = body.get("state") if isinstance(body, dict) else None
        if new_state != "VALIDATING" or t.state != "STARTED":
            raise err("transaction_state_400", old=t.state, new=new_state)
        validate_only = bool(body.get("validateOnly", False))
        _commit(emu, t, req, validate_only)
        reply = shapes.trans_json(emu, t)
        reply["validateOnly"] = validate_only
        if t.state in ("COMPLETED", "VALIDATED"):
            emu._transactions.pop(t.trans_id, None)
        return 200, reply


def _commit(emu: BigIPEmulator, t: Transaction, req: Request, validate_only: bool) -> None:
    """Run every command in order against live state; on the first failure restore everything."""
    saved_pools, saved_nodes = copy.deepcopy(emu._pools), copy.deepcopy(emu._nodes)
    saved_gen, saved_writes, saved_commits, saved_due = emu._generation, len(emu.writes), emu.commits, emu._sync_due

    def restore() -> None:
        emu._pools, emu._nodes, emu._generation = saved_pools, saved_nodes, saved_gen
        del emu.writes[saved_writes:]
        emu.commits, emu._sync_due = saved_commits, saved_due

    try:
        for c in t.commands:
            sub = Request(c.method, c.path, c.path, c.query, {}, json.dumps(c.body).encode(), req.client,
                          user=t.user, trans_id=t.trans_id)
            handler, params, access = emu._route(sub)
            if access == "write":
                emu._authorize_write(sub, params)
            handler(emu, sub, **params)
    except RestError as e:
        restore()
        reason = e.body.get("message", "") if isinstance(e.body, dict) else str(e.body)
        t.state, t.failure = "FAILED", reason
        raise err("transaction_failed_400", reason=reason) from None
    if validate_only:
        restore()
        t.state = "VALIDATED"
        return
    t.state = "COMPLETED"
    emu.commits = saved_commits + 1
