"""Authentication: token login/extend/delete/expiry, the per-user token limit, HTTP Basic, roles.

A token expires at start + timeout ("absolute" timeout); PATCHing `timeout` re-bases that, capped at
36000 s. Expired tokens answer "has expired" for `expired_token_retention` seconds, then "does not exist".
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING, Any

from controller.sim.bigip import shapes
from controller.sim.bigip.core import EmulatorCore
from controller.sim.bigip.errors import RestError, err, error_body
from controller.sim.bigip.state import (
    CM_DENIED_ROLES,
    MAX_TOKEN_TIMEOUT,
    PROVIDER_ID,
    WRITE_ROLES,
    Request,
    Token,
    is_int,
)

if TYPE_CHECKING:
    from controller.sim.bigip.emulator import BigIPEmulator

_BASIC = {"WWW-Authenticate": 'Basic realm="Enterprise Manager"'}


class TokenStore(EmulatorCore):
    def live_tokens(self, user: str | None = None) -> list[str]:
        now = self.now()
        with self._lock:
            return [t.token for t in self._tokens.values() if t.expires > now and (user is None or t.user == user)]

    def restart(self) -> None:
        """A BIG-IP reboot / restjavad restart: every token and transaction is gone; config is kept."""
        with self._lock:
            self._tokens.clear()
            self._transactions.clear()


def authenticate(emu: BigIPEmulator, req: Request) -> None:
    tok = req.headers.get("x-f5-auth-token")
    if tok:
        with emu._lock:
            t = emu._tokens.get(tok)
            if t is None:
                raise err("token_missing_401")
            if t.expires <= emu.now():
                raise err("token_expired_401")
            req.user = t.user
        return
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, pwd = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            user, pwd = "", ""
        if user in emu.users and emu.users[user] == pwd and emu.role(user) != "no-access":
            req.user = user
            return
        raise RestError(401, error_body("login_failed_401", body=json.dumps({"username": user}),
                                        client=req.client, op_id=emu._next_op()), headers=dict(_BASIC))
    raise RestError(401, error_body("no_auth_401", path=req.path, client=req.client), headers=dict(_BASIC))


def authorize_write(emu: BigIPEmulator, req: Request, params: dict[str, str]) -> None:
    role = emu.role(req.user)
    if role in WRITE_ROLES:
        return
    if role == "operator" and "member" in params and req.method == "PATCH":
        body = req.json()
        if isinstance(body, dict) and set(body) <= {"session", "state"}:
            return
    if role == "operator":  # restjavad lets it through; mcpd refuses (f5-common-python #1516, f5-ansible #2133)
        kind = "pool_member" if "member" in params else ("node" if "node" in params else "pool")
        raise err("access_denied_400", user=req.user, verb="create" if req.method == "POST" else "modify", object=kind)
    raise err("authz_failed_401", user=req.user, path=req.path, method=req.method, client=req.client,
              op_id=emu._next_op())


def authorize_cm(emu: BigIPEmulator, req: Request) -> None:
    """Roles that may not read `/mgmt/tm/cm/*` (Auditor by default; any user by `deny_cm`) are refused there,
    as restricted accounts are on real units (f5-ansible-bigip #16, application-study-tool #153)."""
    status = emu.cm_refusals.get(req.user) or (401 if emu.role(req.user) in CM_DENIED_ROLES else None)
    if status is None:
        return
    if status == 401 and emu.cm_refusal_plain:
        raise RestError(401, {"code": 401, "message": "Unauthorized", "errorStack": [], "apiError": 1})
    if status == 401:
        raise err("authz_failed_401", user=req.user, path=req.path, method=req.method, client=req.client,
                  op_id=emu._next_op())
    if status == 403:
        raise RestError(403, {"code": 403, "message": f"Forbidden: user {req.user} may not access {req.path}",
                              "errorStack": [], "apiError": 1})
    raise RestError(404, error_body("restjavad_not_ready_404", path=req.path, op_id=emu._next_op()))


# -- handlers ----------------------------------------------------------------------------------


def login(emu: BigIPEmulator, req: Request) -> tuple[int, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise err("invalid_json_400")
    user, pwd = body.get("username"), body.get("password")
    shown = {k: v for k, v in body.items() if k != "password"}
    if user not in emu.users or emu.users[user] != pwd or emu.role(user) == "no-access":
        with emu._lock:
            emu.failed_logins += 1
        raise err("login_failed_401", body=json.dumps(shown), client=req.client, op_id=emu._next_op())
    with emu._lock:
        now = emu.now()
        for old in [k for k, t in emu._tokens.items() if t.expires + emu.expired_token_retention < now]:
            del emu._tokens[old]
        live = sum(1 for t in emu._tokens.values() if t.user == user and t.expires > now)
        if live >= emu.token_limit and user not in emu.token_limit_exempt:
            raise err("token_limit_400", user_id=emu.user_id(user))
        wall = emu._wall()
        tok = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]
        t = Token(tok, user, int(emu.token_timeout), now, wall, wall, req.client)
        emu._tokens[tok] = t
        emu.logins += 1
        req.user = user
        return 200, {
            "username": user,
            "loginReference": {"link": f"https://localhost/mgmt/cm/system/authn/providers/tmos/{PROVIDER_ID}/login"},
            "loginProviderName": body.get("loginProviderName", "tmos"),
            "token": shapes.token_json(emu, t),
            "generation": 0,
            "lastUpdateMicros": 0,
        }


def _token(emu: BigIPEmulator, token: str) -> Token:
    t = emu._tokens.get(token)
    if t is None:
        raise err("object_not_found_404", path=f"/mgmt/shared/authz/tokens/{token}")
    return t


def tokens_list(emu: BigIPEmulator, req: Request) -> tuple[int, Any]:
    now = emu.now()
    with emu._lock:
        items = [shapes.token_json(emu, t) for t in emu._tokens.values() if t.user == req.user and t.expires > now]
    # restjavad's own (shared/) collections keep an empty items list; only tm/ collections drop the key
    return 200, {"items": items, "generation": 0, "kind": "shared:authz:tokens:authtokencollectionstate",
                 "lastUpdateMicros": 0, "selfLink": "https://localhost/mgmt/shared/authz/tokens"}


def token_get(emu: BigIPEmulator, req: Request, token: str) -> tuple[int, Any]:
    with emu._lock:
        return 200, shapes.token_json(emu, _token(emu, token))


def token_patch(emu: BigIPEmulator, req: Request, token: str) -> tuple[int, Any]:
    body = req.json()
    timeout = body.get("timeout") if isinstance(body, dict) else None
    if isinstance(timeout, str) and timeout.strip().isdigit():  # F5's own labs send "36000"; BIG-IP takes it
        timeout = int(timeout.strip())
    if not is_int(timeout) or timeout < 1:
        raise err("token_timeout_invalid_400", value=json.dumps(timeout))
    if timeout > MAX_TOKEN_TIMEOUT:
        raise err("token_timeout_406")
    with emu._lock:
        t = _token(emu, token)
        t.timeout = timeout
        t.updated_wall = emu._wall()
        t.generation += 1
        return 200, shapes.token_json(emu, t)


def token_delete(emu: BigIPEmulator, req: Request, token: str) -> tuple[int, Any]:
    with emu._lock:
        t = _token(emu, token)
        del emu._tokens[token]
        return 200, shapes.token_json(emu, t)
