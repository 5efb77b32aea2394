"""The route table: (method, path pattern, handler function, access), matched in order.

A handler is a plain function `handler(emulator, request, **path_params) -> (status, body)`; path
parameters are URL-decoded segments. `access` is "public" (no auth), "read" (any authenticated user)
or "write" (a role that may change pool members; Operator only session/state).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from controller.sim.bigip import ltm, system, tokens, transactions
from controller.sim.bigip.errors import RestError, err, error_body
from controller.sim.bigip.state import Request

Handler = Callable[..., tuple[int, Any]]

_SEG = r"[^/]+"
_POOL = rf"/mgmt/tm/ltm/pool/(?P<pool>{_SEG})"
_MEMBER = _POOL + rf"/members/(?P<member>{_SEG})"
_NODE = rf"/mgmt/tm/ltm/node/(?P<node>{_SEG})"
_TOKEN = rf"/mgmt/shared/authz/tokens/(?P<token>{_SEG})"
_TRANS = rf"/mgmt/tm/transaction/(?P<tid>{_SEG})"
_DG = rf"/mgmt/tm/cm/device-group/(?P<name>{_SEG})"

ROUTES: Sequence[tuple[str, str, Handler, str]] = (
    ("POST", r"/mgmt/shared/authn/login", tokens.login, "public"),
    ("GET", r"/mgmt/shared/authz/tokens", tokens.tokens_list, "read"),
    ("GET", _TOKEN, tokens.token_get, "read"),
    ("PATCH", _TOKEN, tokens.token_patch, "read"),
    ("DELETE", _TOKEN, tokens.token_delete, "read"),
    ("GET", rf"/mgmt/shared/authz/users/(?P<user>{_SEG})", system.shared_user, "read"),
    ("GET", r"/mgmt/shared/identified-devices/config/device-info", system.device_info, "read"),
    ("GET", r"/mgmt/shared/appsvcs/declare", system.as3_declare, "read"),
    ("GET", r"/mgmt/tm/sys", system.sys, "read"),
    ("GET", r"/mgmt/tm/sys/version", system.sys_version, "read"),
    ("GET", r"/mgmt/tm/sys/failover", system.sys_failover, "read"),
    ("GET", r"/mgmt/tm/cm/failover-status", system.failover_status, "read"),
    ("GET", r"/mgmt/tm/cm/sync-status", system.sync_status, "read"),
    ("GET", r"/mgmt/tm/cm/device", system.devices, "read"),
    ("GET", rf"/mgmt/tm/cm/device/(?P<name>{_SEG})", system.device, "read"),
    ("GET", r"/mgmt/tm/cm/device-group", system.device_groups, "read"),
    ("GET", r"/mgmt/tm/cm/traffic-group", system.traffic_groups, "read"),
    ("GET", r"/mgmt/tm/cm/traffic-group/stats", system.traffic_group_stats, "read"),
    ("GET", _DG, system.device_group, "read"),
    ("GET", _DG + "/devices", system.device_group_devices, "read"),
    ("GET", rf"/mgmt/tm/auth/user/(?P<user>{_SEG})", system.tm_user, "read"),
    ("GET", r"/mgmt/tm/ltm/pool", ltm.pools, "read"),
    ("GET", _POOL, ltm.pool_get, "read"),
    ("PATCH", _POOL, ltm.pool_patch, "write"),
    ("GET", _POOL + "/members", ltm.members_get, "read"),
    ("GET", _MEMBER, ltm.member_get, "read"),
    ("PATCH", _MEMBER, ltm.member_patch, "write"),
    ("PUT", _MEMBER, ltm.member_put, "write"),
    ("DELETE", _MEMBER, ltm.member_delete, "write"),
    ("GET", r"/mgmt/tm/ltm/node", ltm.nodes, "read"),
    ("GET", _NODE, ltm.node_get, "read"),
    ("PATCH", _NODE, ltm.node_patch, "write"),
    ("GET", r"/mgmt/tm/transaction", transactions.listing, "read"),
    ("POST", r"/mgmt/tm/transaction", transactions.create, "read"),
    ("GET", _TRANS, transactions.get, "read"),
    ("PATCH", _TRANS, transactions.patch, "read"),
    ("DELETE", _TRANS, transactions.delete, "read"),
    ("GET", _TRANS + "/commands", transactions.commands, "read"),
)
_COMPILED = [(m, re.compile("^" + rx + "$"), h, a) for m, rx, h, a in ROUTES]


def route(req: Request, op_id: Callable[[], int]) -> tuple[Handler, dict[str, str], str]:
    """(handler, decoded path params, access) for a request; 405 for a known path, else restjavad's 404."""
    path_matched = False
    for method, rx, handler, access in _COMPILED:
        m = rx.match(req.path)
        if m:
            path_matched = True
            if method == req.method:
                return handler, {k: unquote(v) for k, v in m.groupdict().items()}, access
    if path_matched:
        raise err("method_not_allowed_405", method=req.method, path=req.path)
    raise RestError(404, error_body("restjavad_not_ready_404", path=req.path, op_id=op_id()))
