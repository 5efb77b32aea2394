"""An in-process BIG-IP iControl REST emulator for tests, the demo and benchmarks.

It serves HTTPS (self-signed, see `tls.py`) with HTTP/1.1 keep-alive, and reproduces what this project
depends on: token login/extend/delete/expiry and the per-user token limit, HTTP Basic auth, LTM pools and
members (route domains, IPv6, sub-paths, `expandSubcollections`), member PATCH validation, transactions,
the read-only endpoints f5-sdk touches on connect, and the failure modes seen in the field (mcpd lost,
restjavad restarting with an HTML 503, URI not registered, dropped connections, latency, reboots).

Bodies and shapes follow real BIG-IP replies (fixtures/bigip in the shared reference): `kind`,
`selfLink` with `?ver=`, `generation`, `rateLimit` as a string, read-back session/state values.
Error bodies come from one dict, `ERRORS`.

    with BigIPEmulator(users={"admin": "secret"}) as bigip:          # serving on 127.0.0.1:<random>
        bigip.add_pool("/Common/llm-pool", members=["10.0.0.1:8000", "10.0.0.2:8000"])
        requests.get(bigip.base_url + "/mgmt/tm/ltm/pool", auth=("admin", "secret"), verify=bigip.cert_path)

Also runnable: `python -m controller.sim.bigip --port 8443 --pool /Common/llm-pool=127.0.0.1:8001,127.0.0.1:8002`.

Emulator conventions (where BIG-IP's exact behaviour is not documented, the choice is noted inline):
- The clock (`clock=`) drives token and transaction expiry; wall-clock fields (startTime, *Micros) are
  derived from it so `expirationMicros - lastUpdateMicros == timeout * 1e6` always holds.
- A token expires at start + timeout ("absolute" timeout); PATCHing `timeout` re-bases that, capped at
  36000 s.
- Fault knobs apply before authentication and routing, to every path matching their filter.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as _dt
import ipaddress
import json
import re
import secrets
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from controller.sim import tls
from controller.sim.dataplane import DataPlane, MemberView, PoolView

# ------------------------------------------------------------------------------------------------ errors

#: Every error body the emulator sends. The first group is copied from real BIG-IPs
#: (fixtures/bigip/error_bodies.json), with the varying parts as {placeholders}; the rest are the
#: emulator's closest known equivalents.
ERRORS: dict[str, Any] = {
    "pool_not_found_404": {"code": 404, "message": "01020036:3: The requested Pool ({pool}) was not found.",
                           "errorStack": [], "apiError": 3},
    "member_not_found_404": {"code": 404,
                             "message": "01020036:3: The requested Pool Member ({pool} {node} {port}) was not found.",
                             "errorStack": [], "apiError": 3},
    "object_not_found_404": {"code": 404, "message": "Object not found - {path}", "errorStack": [], "apiError": 1},
    "token_expired_401": {"code": 401, "message": "X-F5-Auth-Token has expired.", "errorStack": [], "apiError": 1},
    "token_missing_401": {"code": 401, "message": "X-F5-Auth-Token does not exist.", "errorStack": [], "apiError": 1},
    "no_auth_401": {"code": 401,
                    "message": "Authorization failed: no user authentication header or token detected. "
                               "Uri:http://localhost:8100{path} Referrer:{client} Sender:{client}",
                    "errorStack": [], "apiError": 1},
    "token_limit_400": {"code": 400, "message": "user {user_id} has reached maximum active login tokens",
                        "errorStack": [], "apiError": 1},
    "mcpd_lost_500": {"code": 500, "message": "The connection to mcpd has been lost, try again.", "errorStack": [],
                      "apiError": 32768001},
    "restjavad_not_ready_404": {"code": 404,
                                "message": "URI path {path} not registered. Please verify URI is supported "
                                           "and wait for /available suffix to be responsive.",
                                "restOperationId": "{op_id}", "kind": ":resterrorresponse"},
    "restjavad_restarting_503_html": "<html><head><title>Configuration Utility restarting...</title></head>"
                                     "<body>Configuration Utility restarting...</body></html>",
    "node_in_use_400": {"code": 400, "message": "01070110:3: Node address '{node}' is referenced by a member of pool '{pool}'.",
                        "errorStack": [], "apiError": 3},
    "transaction_header_left_on_commit_400": {
        "code": 400, "message": "Transaction {trans_id} operation .... is not allowed to be added to transaction.",
        "errorStack": [], "apiError": 1},
    # -- not in the fixtures: closest known forms
    "login_failed_401": {"code": 401, "message": "Authentication failed.", "originalRequestBody": "{body}",
                         "referer": "{client}", "restOperationId": "{op_id}", "errorStack": [],
                         "kind": ":resterrorresponse"},
    "authz_failed_401": {"code": 401,
                         "message": "Authorization failed: user=https://localhost/mgmt/shared/authz/users/{user} "
                                    "resource={path} verb={method} uri:http://localhost:8100{path} "
                                    "referrer:{client} sender:{client}",
                         "referer": "{client}", "restOperationId": "{op_id}", "errorStack": [],
                         "kind": ":resterrorresponse"},
    "invalid_json_400": {"code": 400, "message": "Found invalid JSON body in the request.", "errorStack": [], "apiError": 1},
    "unexpected_property_400": {"code": 400, "message": "Found unexpected json pair at configuration item {item}. The json pair is {pair}.",
                                "errorStack": [], "apiError": 26214401},
    "invalid_value_400": {"code": 400, "message": "01070335:3: Invalid value {value} for {prop} of pool member {member}: {why}",
                          "errorStack": [], "apiError": 3},
    "token_timeout_406": {"code": 406, "message": "Auth-token absolute timeout (36000 seconds) exceeded",
                          "errorStack": [], "apiError": 1},
    "token_timeout_invalid_400": {"code": 400, "message": "Invalid timeout value {value}", "errorStack": [], "apiError": 1},
    "transaction_not_found_404": {"code": 404, "message": "Transaction {trans_id} not found.", "errorStack": [], "apiError": 1},
    "transaction_failed_400": {"code": 400, "message": "transaction failed:{reason}", "errorStack": [], "apiError": 1},
    "transaction_state_400": {"code": 400, "message": "Invalid transaction state change from {old} to {new}.",
                              "errorStack": [], "apiError": 1},
    "user_not_found_404": {"code": 404, "message": "01020036:3: The requested user ({user}) was not found.",
                           "errorStack": [], "apiError": 3},
    "method_not_allowed_405": {"code": 405, "message": "Method {method} is not supported for {path}", "errorStack": [],
                               "apiError": 1},
}


def error_body(key: str, **values: Any) -> Any:
    """The body for `key` with {placeholders} filled. Integer-only fields stay integers."""
    tpl = ERRORS[key]
    if isinstance(tpl, str):
        return tpl
    out: dict[str, Any] = {}
    for k, v in tpl.items():
        if isinstance(v, str) and "{" in v:
            v = v.format(**values)
            if k == "restOperationId":
                v = int(v)
        out[k] = copy.deepcopy(v)
    return out


class RestError(Exception):
    """Raised by handlers; becomes the HTTP reply."""

    def __init__(self, status: int, body: Any, content_type: str = "application/json; charset=UTF-8",
                 headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def _err(key: str, **values: Any) -> RestError:
    body = error_body(key, **values)
    return RestError(body["code"], body)


# ------------------------------------------------------------------------------------------------- state

FAULT_KINDS = ("mcpd", "html503", "notregistered", "drop", "expired", "missing")
SESSION_WRITES = ("user-enabled", "user-disabled")
STATE_WRITES = ("user-up", "user-down")
HEALTH_STATES = ("up", "down", "unchecked", "checking")
WRITE_ROLES = frozenset({"admin", "resource-admin", "manager"})
MAX_TOKEN_TIMEOUT = 36000
_PROVIDER_ID = "1f44a60e-11a7-3c51-a49f-82983026b41b"
_USER_NS = uuid.UUID("0b9f6e4e-8f1a-4c55-9f7e-8d1c2a3b4c5d")

#: Member properties a client may send besides the five the controller writes; accepted as BIG-IP does.
_OTHER_MEMBER_PROPS = ("dynamicRatio", "priorityGroup", "rateLimit", "monitor", "logging", "inheritProfile",
                       "fqdn", "appService", "profiles", "trafficGroup", "metadata")
#: Properties echoed back by clients that BIG-IP ignores when they match.
_IDENTITY_PROPS = ("name", "partition", "fullPath", "subPath", "kind", "selfLink", "generation", "address",
                   "ephemeral")


@dataclass(frozen=True)
class Write:
    """One applied change. `kind`: PATCH, PUT, DELETE (member) or PATCH-POOL."""

    time: float  # emulator clock
    pool: str
    member: str | None
    body: dict[str, Any]
    kind: str = "PATCH"
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new) read-back values
    user: str = ""
    trans_id: int | None = None
    generation: int = 0


LoggedRequest = namedtuple("LoggedRequest", "time method path query status user trans_id")


@dataclass
class _Member:
    name: str
    partition: str
    address: str
    ratio: int = 1
    connection_limit: int = 0
    description: str = ""
    enabled: bool = True  # session != user-disabled
    forced_down: bool = False  # state user-down
    health: str = "up"  # monitor result: up, down, unchecked, checking
    generation: int = 1
    props: dict[str, Any] = field(default_factory=lambda: {
        "dynamicRatio": 1, "ephemeral": "false", "fqdn": {"autopopulate": "disabled"}, "inheritProfile": "enabled",
        "logging": "disabled", "monitor": "default", "priorityGroup": 0, "rateLimit": "disabled"})

    @property
    def session(self) -> str:
        if not self.enabled:
            return "user-disabled"
        return "user-enabled" if self.health == "unchecked" else "monitor-enabled"

    @property
    def state(self) -> str:
        return "user-down" if self.forced_down else self.health

    @property
    def full_path(self) -> str:
        return f"/{self.partition}/{self.name}"

    @property
    def uri_name(self) -> str:
        return "~" + self.partition + "~" + quote(self.name, safe=":.")


@dataclass
class _Pool:
    partition: str
    sub_path: str
    name: str
    generation: int
    props: dict[str, Any]
    members: dict[str, _Member] = field(default_factory=dict)
    metadata: list[dict[str, str]] | None = None

    @property
    def full_path(self) -> str:
        return "/" + "/".join([self.partition] + ([self.sub_path] if self.sub_path else []) + [self.name])

    @property
    def uri_name(self) -> str:
        return self.full_path.replace("/", "~")


@dataclass
class _Token:
    token: str
    user: str
    timeout: int
    start: float  # emulator clock
    start_wall: float
    updated_wall: float
    address: str
    generation: int = 1

    @property
    def expires(self) -> float:
        return self.start + self.timeout


@dataclass
class _Command:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    command_id: int


@dataclass
class _Transaction:
    trans_id: int
    user: str
    created: float
    timeout: int
    state: str = "STARTED"
    failure: str = ""
    commands: list[_Command] = field(default_factory=list)


@dataclass
class _Fault:
    kind: str | tuple[int, Any]
    remaining: int
    path: re.Pattern | None
    method: str | None


@dataclass
class _Request:
    method: str
    path: str  # decoded-later raw path, no query, no trailing slash
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body_bytes: bytes
    client: str
    user: str = ""
    trans_id: int | None = None
    _json: Any = None

    def json(self) -> Any:
        if self._json is None:
            if not self.body_bytes.strip():
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.body_bytes)
                except ValueError:
                    raise _err("invalid_json_400") from None
        return self._json

    def flag(self, name: str) -> bool:
        return any(v.lower() == "true" for v in self.query.get(name, []))


@dataclass
class Reply:
    """What `BigIPEmulator.request` returns (also used internally for the HTTP reply)."""

    status: int
    body: Any  # dict/list for JSON, str for HTML, None for a dropped connection
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def dropped(self) -> bool:
        return self.body is None and self.status == 0

    def json(self) -> Any:
        return self.body

    def encode(self) -> bytes:
        if isinstance(self.body, (bytes, bytearray)):
            return bytes(self.body)
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


def _parse_member_name(name: str) -> tuple[str, int | None]:
    """(node, port) of `10.0.0.1:80`, `10.0.0.1%2:80`, `2001:db8::1.80`, `web1:80`; port None if absent."""
    sep = "." if name.count(":") > 1 else ":"
    node, _, port = name.rpartition(sep)
    if node and port.isdigit():
        return node, int(port)
    return name, None


def _is_ip(node: str) -> bool:
    try:
        ipaddress.ip_address(node.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _parse_pool_path(full_path: str) -> tuple[str, str, str]:
    parts = [p for p in full_path.strip("/").split("/") if p]
    if len(parts) == 1:
        return "Common", "", parts[0]
    if len(parts) < 1:
        raise ValueError(f"bad pool path {full_path!r}")
    return parts[0], "/".join(parts[1:-1]), parts[-1]


def _uri_to_full_path(seg: str) -> str:
    """`~Common~pool` -> `/Common/pool`; a bare `pool` -> `/Common/pool`. `seg` is already URL-decoded."""
    if seg.startswith("~"):
        return seg.replace("~", "/")
    if seg.startswith("/"):
        return seg
    return "/Common/" + seg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# -------------------------------------------------------------------------------------------- the emulator

_SEG = r"[^/]+"
_POOL = rf"/mgmt/tm/ltm/pool/(?P<pool>{_SEG})"
_MEMBER = _POOL + rf"/members/(?P<member>{_SEG})"
_TOKEN = rf"/mgmt/shared/authz/tokens/(?P<token>{_SEG})"
_TRANS = rf"/mgmt/tm/transaction/(?P<tid>{_SEG})"

#: (method, path regex, handler name, access) with access in: public, read, write.
ROUTES: Sequence[tuple[str, str, str, str]] = (
    ("POST", r"/mgmt/shared/authn/login", "login", "public"),
    ("GET", r"/mgmt/shared/authz/tokens", "tokens_list", "read"),
    ("GET", _TOKEN, "token_get", "read"),
    ("PATCH", _TOKEN, "token_patch", "read"),
    ("DELETE", _TOKEN, "token_delete", "read"),
    ("GET", rf"/mgmt/shared/authz/users/(?P<user>{_SEG})", "shared_user", "read"),
    ("GET", r"/mgmt/shared/identified-devices/config/device-info", "device_info", "read"),
    ("GET", r"/mgmt/tm/sys", "sys", "read"),
    ("GET", r"/mgmt/tm/sys/version", "sys_version", "read"),
    ("GET", r"/mgmt/tm/cm/device-group", "device_groups", "read"),
    ("GET", rf"/mgmt/tm/cm/device-group/(?P<name>{_SEG})", "device_group", "read"),
    ("GET", rf"/mgmt/tm/auth/user/(?P<user>{_SEG})", "tm_user", "read"),
    ("GET", r"/mgmt/tm/ltm/pool", "pools", "read"),
    ("GET", _POOL, "pool_get", "read"),
    ("PATCH", _POOL, "pool_patch", "write"),
    ("GET", _POOL + "/members", "members_get", "read"),
    ("GET", _MEMBER, "member_get", "read"),
    ("PATCH", _MEMBER, "member_patch", "write"),
    ("PUT", _MEMBER, "member_put", "write"),
    ("DELETE", _MEMBER, "member_delete", "write"),
    ("GET", r"/mgmt/tm/transaction", "transactions", "read"),
    ("POST", r"/mgmt/tm/transaction", "transaction_create", "read"),
    ("GET", _TRANS, "transaction_get", "read"),
    ("PATCH", _TRANS, "transaction_patch", "read"),
    ("DELETE", _TRANS, "transaction_delete", "read"),
    ("GET", _TRANS + "/commands", "transaction_commands", "read"),
)
_COMPILED = [(m, re.compile("^" + rx + "$"), h, a) for m, rx, h, a in ROUTES]


class BigIPEmulator:
    """Thread-safe in-memory BIG-IP with an optional HTTPS front end (`start()`)."""

    def __init__(self, users: dict[str, str] | None = None, *,
                 version: str = "17.1.1", build: str = "0.0.2", hostname: str = "bigip1.example.com",
                 token_timeout: int = 1200, token_limit: int = 100, token_limit_exempt: Sequence[str] = (),
                 transaction_timeout: int = 120, max_ratio: int = 65535,
                 roles: dict[str, str] | None = None, user_ids: dict[str, str] | None = None,
                 clock: Callable[[], float] | Any | None = None, latency: float | Callable[[], float] = 0.0,
                 cert_dir: str | None = None, trans_id_start: int | None = None):
        self.users: dict[str, str] = dict(users if users is not None else {"admin": "admin"})
        self.roles: dict[str, str] = dict(roles or {})  # user -> role; users not listed are "admin"
        self.user_ids: dict[str, str] = dict(user_ids or {})
        self.version = version
        self.build = build
        self.hostname = hostname
        # knobs (plain attributes: safe to set from any thread)
        self.token_timeout = token_timeout
        self.token_limit = token_limit
        self.token_limit_exempt = set(token_limit_exempt)
        self.transaction_timeout = transaction_timeout
        self.max_ratio = max_ratio
        self.latency = latency
        self.down = False
        self.expired_token_retention = 3600.0  # expired tokens answer "has expired" this long, then "does not exist"
        # clock: a callable, or an object with monotonic() (and optionally wall()), e.g. controller.clock.FakeClock
        if clock is None:
            self._mono: Callable[[], float] = time.monotonic
        elif callable(clock) and not hasattr(clock, "monotonic"):
            self._mono = clock
        else:
            self._mono = clock.monotonic
        self._wall_fn: Callable[[], float] | None = getattr(clock, "wall", None)
        self._mono0 = self._mono()
        self._wall0 = time.time()

        self._lock = threading.RLock()
        self._pools: dict[str, _Pool] = {}
        self._tokens: dict[str, _Token] = {}
        self._transactions: dict[int, _Transaction] = {}
        self._faults: list[_Fault] = []
        self._generation = 100
        self._op_id = 1000
        self._next_trans = trans_id_start
        self._device_groups: list[dict[str, Any]] = [
            {"name": "datasync-global-dg", "type": "sync-only", "autoSync": "enabled"},
            {"name": "device_trust_group", "type": "sync-only", "autoSync": "enabled"},
        ]
        self.writes: list[Write] = []
        self.request_log: list[LoggedRequest] = []
        self.logins = 0
        self.failed_logins = 0
        self.commits = 0  # config changes: one per applied write outside a transaction, one per commit
        self._dataplane: DataPlane | None = None
        # HTTPS
        self._cert_dir = cert_dir
        self._certs: tls.CertPair | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    # ----------------------------------------------------------------------------------------- time
    def now(self) -> float:
        """The emulator clock (drives token and transaction expiry)."""
        return self._mono()

    def _wall(self) -> float:
        if self._wall_fn is not None:
            return self._wall_fn()
        return self._wall0 + (self._mono() - self._mono0)

    def _next_gen(self) -> int:
        self._generation += 1
        return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def _link(self, path: str, ver: bool = True) -> str:
        return "https://localhost" + path + (f"?ver={self.version}" if ver else "")

    # ------------------------------------------------------------------------------------ state API
    def add_pool(self, full_path: str, members: Sequence[str | dict[str, Any]] = (), *,
                 lb_mode: str = "ratio-least-connections-member", queue_on_connection_limit: bool = False,
                 queue_depth_limit: int = 0, queue_time_limit: int = 0, description: str = "",
                 monitor: str = "", metadata: list[dict[str, str]] | None = None, **props: Any) -> dict[str, Any]:
        """Create a pool. `members`: names like "10.0.0.1:8000" or dicts of `add_member` keywords.
        Extra REST properties (e.g. slowRampTime=0) may be passed as keywords."""
        partition, sub_path, name = _parse_pool_path(full_path)
        p = {
            "allowNat": "yes", "allowSnat": "yes", "description": description, "ignorePersistedWeight": "disabled",
            "ipTosToClient": "pass-through", "ipTosToServer": "pass-through", "linkQosToClient": "pass-through",
            "linkQosToServer": "pass-through", "loadBalancingMode": lb_mode, "minActiveMembers": 0,
            "minUpMembers": 0, "minUpMembersAction": "failover", "minUpMembersChecking": "disabled",
            "monitor": monitor, "queueDepthLimit": queue_depth_limit,
            "queueOnConnectionLimit": "enabled" if queue_on_connection_limit else "disabled",
            "queueTimeLimit": queue_time_limit, "reselectTries": 0, "serviceDownAction": "none", "slowRampTime": 10,
        }
        p.update(props)
        with self._lock:
            pool = _Pool(partition, sub_path, name, self._next_gen(), p, metadata=metadata)
            if pool.full_path in self._pools:
                raise ValueError(f"pool {pool.full_path} exists")
            self._pools[pool.full_path] = pool
            for m in members:
                if isinstance(m, str):
                    self.add_member(pool.full_path, m)
                else:
                    self.add_member(pool.full_path, **m)
            return self._pool_json(pool, expand=True)

    def remove_pool(self, full_path: str) -> None:
        with self._lock:
            del self._pools[self._pool_key(full_path)]

    def add_member(self, pool: str, name: str, address: str | None = None, ratio: int = 1,
                   connection_limit: int = 0, session: str = "monitor-enabled", state: str = "up",
                   description: str = "", partition: str | None = None, **props: Any) -> dict[str, Any]:
        """Add a member. `session`: monitor-enabled, user-enabled or user-disabled; `state`: up, down,
        unchecked, checking or user-down. Read-back follows BIG-IP: an enabled member without a monitor
        (state unchecked) reads back as user-enabled, with one as monitor-enabled."""
        node, port = _parse_member_name(name)
        if port is None:
            raise ValueError(f"member name {name!r} has no port")
        if address is None:
            if not _is_ip(node):
                raise ValueError(f"member {name!r}: give address= for a named node")
            address = node
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            if name in p.members:
                raise ValueError(f"{p.full_path}: member {name} exists")
            m = _Member(name=name, partition=partition or p.partition, address=address, ratio=ratio,
                        connection_limit=connection_limit, description=description, generation=self._next_gen())
            m.props.update(props)
            self._apply_state(m, session, state)
            p.members[name] = m
            return self._member_json(p, m)

    @staticmethod
    def _apply_state(m: _Member, session: str, state: str) -> None:
        if session not in ("monitor-enabled", "user-enabled", "user-disabled"):
            raise ValueError(f"bad session {session!r}")
        if state not in HEALTH_STATES + ("user-down",):
            raise ValueError(f"bad state {state!r}")
        m.enabled = session != "user-disabled"
        m.forced_down = state == "user-down"
        if state in HEALTH_STATES:
            m.health = state
        elif session == "user-enabled":
            m.health = "unchecked"

    def remove_member(self, pool: str, name: str) -> None:
        with self._lock:
            del self._pools[self._pool_key(pool)].members[name]

    def member(self, pool: str, name: str) -> dict[str, Any]:
        """The member's REST JSON (a copy)."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return self._member_json(p, p.members[name])

    def members(self, pool: str) -> list[dict[str, Any]]:
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return [self._member_json(p, m) for m in p.members.values()]

    def pool(self, full_path: str, expand: bool = True) -> dict[str, Any]:
        """The pool's REST JSON (a copy), members under membersReference.items when `expand`."""
        with self._lock:
            return self._pool_json(self._pools[self._pool_key(full_path)], expand)

    def ratios(self, pool: str) -> dict[str, int]:
        with self._lock:
            return {n: m.ratio for n, m in self._pools[self._pool_key(pool)].members.items()}

    def set_member(self, pool: str, name: str, **fields: Any) -> dict[str, Any]:
        """Change a member directly (no validation, no write logged), e.g. ratio=3, connection_limit=2."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            m = p.members[name]
            for k, v in fields.items():
                setattr(m, k, v)
            m.generation = self._next_gen()
            return self._member_json(p, m)

    def set_member_state(self, pool: str, name: str, session: str | None = None,
                         state: str | None = None) -> dict[str, Any]:
        """Operator/monitor action without REST. `session`: user-enabled, user-disabled or monitor-enabled;
        `state`: user-up, user-down, or a monitor result up/down/unchecked/checking."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            m = p.members[name]
            if session is not None:
                if session not in ("user-enabled", "user-disabled", "monitor-enabled"):
                    raise ValueError(f"bad session {session!r}")
                m.enabled = session != "user-disabled"
            if state is not None:
                if state == "user-up":
                    m.forced_down = False
                elif state == "user-down":
                    m.forced_down = True
                elif state in HEALTH_STATES:
                    m.health = state
                else:
                    raise ValueError(f"bad state {state!r}")
            m.generation = self._next_gen()
            return self._member_json(p, m)

    def set_pool(self, full_path: str, **props: Any) -> dict[str, Any]:
        """Change pool REST properties directly, e.g. loadBalancingMode="round-robin"."""
        with self._lock:
            p = self._pools[self._pool_key(full_path)]
            p.props.update(props)
            p.generation = self._next_gen()
            return self._pool_json(p, expand=True)

    def add_device_group(self, name: str, type: str = "sync-failover", auto_sync: bool = True,  # noqa: A002 - the REST field name
                         **props: Any) -> None:
        with self._lock:
            self._device_groups.append(dict(name=name, type=type, autoSync="enabled" if auto_sync else "disabled",
                                            **props))

    def live_tokens(self, user: str | None = None) -> list[str]:
        now = self.now()
        with self._lock:
            return [t.token for t in self._tokens.values() if t.expires > now and (user is None or t.user == user)]

    def restart(self) -> None:
        """A BIG-IP reboot / restjavad restart: every token and transaction is gone; config is kept."""
        with self._lock:
            self._tokens.clear()
            self._transactions.clear()

    def clear_logs(self) -> None:
        with self._lock:
            self.writes.clear()
            self.request_log.clear()

    def user_id(self, user: str) -> str:
        return self.user_ids.get(user) or str(uuid.uuid5(_USER_NS, user))

    def role(self, user: str) -> str:
        return self.roles.get(user, "admin")

    # --------------------------------------------------------------------------------------- faults
    def fail_next(self, n: int = 1, kind: str | tuple[int, Any] = "mcpd", path: str | None = None,
                  method: str | None = None) -> None:
        """The next `n` requests matching `path` (a regex searched in the URL path) and `method` fail.
        kind: mcpd (500), html503 (503 HTML), notregistered (404), drop (connection closed, no reply),
        expired / missing (401 token bodies), or a (status, body) tuple."""
        if isinstance(kind, str) and kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} not in {FAULT_KINDS}")
        with self._lock:
            self._faults.append(_Fault(kind, n, re.compile(path) if path else None, method.upper() if method else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.down = False

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and (f.path is None or f.path.search(path)) and f.method in (None, method):
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._faults.remove(f)
                    return f
        return None

    def _fault_reply(self, f: _Fault, req: _Request) -> Reply:
        k = f.kind
        if isinstance(k, tuple):
            status, body = k
            return Reply(status, body, "text/html" if isinstance(body, str) else "application/json; charset=UTF-8")
        if k == "drop":
            return Reply(0, None)
        if k == "html503":
            return Reply(503, ERRORS["restjavad_restarting_503_html"], "text/html")
        if k == "mcpd":
            return Reply(500, error_body("mcpd_lost_500"))
        if k == "notregistered":
            return Reply(404, error_body("restjavad_not_ready_404", path=req.path, op_id=self._next_op()))
        if k == "expired":
            return Reply(401, error_body("token_expired_401"))
        return Reply(401, error_body("token_missing_401"))

    def _next_op(self) -> int:
        with self._lock:
            self._op_id += 1
            return self._op_id

    # ------------------------------------------------------------------------------------ dataplane
    @property
    def dataplane(self) -> DataPlane:
        """A DataPlane bound to the live pool state (ratios written over REST apply immediately)."""
        with self._lock:
            if self._dataplane is None:
                self._dataplane = DataPlane(self._pool_view, clock=self._mono)
            return self._dataplane

    def _pool_view(self, pool: str) -> PoolView:
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return PoolView(
                mode=p.props["loadBalancingMode"],
                members=[MemberView(m.name, m.ratio, m.connection_limit, 0, m.session, m.state)
                         for m in p.members.values()],
                queue_on_connection_limit=p.props["queueOnConnectionLimit"] == "enabled",
                queue_depth_limit=int(p.props["queueDepthLimit"]),
                queue_time_limit_ms=int(p.props["queueTimeLimit"]),
            )

    # --------------------------------------------------------------------------------- JSON shapes
    def _pool_key(self, full_path: Any) -> str:
        full_path = getattr(full_path, "full_path", full_path)
        if not full_path.startswith("/"):
            full_path = "/Common/" + full_path
        return full_path

    def _member_json(self, p: _Pool, m: _Member) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": "tm:ltm:pool:members:membersstate",
            "name": m.name,
            "partition": m.partition,
            "fullPath": m.full_path,
            "generation": m.generation,
            "selfLink": self._link(f"/mgmt/tm/ltm/pool/{p.uri_name}/members/{m.uri_name}"),
            "address": m.address,
            "connectionLimit": m.connection_limit,
        }
        if m.description:
            d["description"] = m.description
        props = m.props
        for k in ("dynamicRatio", "ephemeral", "fqdn", "inheritProfile", "logging", "monitor", "priorityGroup",
                  "rateLimit"):
            d[k] = copy.deepcopy(props[k])
        d["ratio"] = m.ratio
        d["session"] = m.session
        d["state"] = m.state
        for k, v in props.items():
            if k not in d:
                d[k] = copy.deepcopy(v)
        return d

    def _pool_json(self, p: _Pool, expand: bool) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "tm:ltm:pool:poolstate", "name": p.name, "partition": p.partition}
        if p.sub_path:
            d["subPath"] = p.sub_path
        d.update({"fullPath": p.full_path, "generation": p.generation,
                  "selfLink": self._link(f"/mgmt/tm/ltm/pool/{p.uri_name}")})
        for k, v in p.props.items():
            if k in ("description", "monitor") and not v:
                continue  # BIG-IP omits unset optional strings
            d[k] = copy.deepcopy(v)
        ref: dict[str, Any] = {"link": self._link(f"/mgmt/tm/ltm/pool/{p.uri_name}/members"), "isSubcollection": True}
        if expand:
            ref["items"] = [self._member_json(p, m) for m in p.members.values()]
        d["membersReference"] = ref
        if p.metadata:
            d["metadata"] = copy.deepcopy(p.metadata)
        return d

    def _token_json(self, t: _Token) -> dict[str, Any]:
        uid = self.user_id(t.user)
        return {
            "token": t.token, "name": t.token, "userName": t.user, "authProviderName": "tmos",
            "user": {"link": f"https://localhost/mgmt/cm/system/authn/providers/tmos/{_PROVIDER_ID}/users/{uid}"},
            "groupReferences": [], "timeout": t.timeout,
            "startTime": _iso(t.start_wall), "address": t.address, "partition": "[All]", "generation": t.generation,
            "lastUpdateMicros": int(t.updated_wall * 1e6),
            "expirationMicros": int((t.start_wall + t.timeout) * 1e6),
            "kind": "shared:authz:tokens:authtokenitemstate",
            "selfLink": f"https://localhost/mgmt/shared/authz/tokens/{t.token}",
        }

    def _trans_json(self, t: _Transaction) -> dict[str, Any]:
        return {"transId": t.trans_id, "state": t.state, "timeoutSeconds": t.timeout, "asyncExecution": False,
                "validateOnly": False, "executionTimeout": 300, "executionTime": 0, "failureReason": t.failure,
                "kind": "tm:transactionstate", "selfLink": self._link(f"/mgmt/tm/transaction/{t.trans_id}")}

    def _command_json(self, t: _Transaction, c: _Command) -> dict[str, Any]:
        return {"method": c.method, "uri": "https://localhost" + c.path, "body": c.body, "evalOrder": c.command_id,
                "commandId": c.command_id, "kind": "tm:transaction:commandsstate",
                "selfLink": self._link(f"/mgmt/tm/transaction/{t.trans_id}/commands/{c.command_id}")}

    # ------------------------------------------------------------------------------------- dispatch
    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                client: str = "127.0.0.1") -> Reply:
        """Handle one request without HTTP (handy for benchmarks). `body`: dict/list, str or bytes."""
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        return self.handle(method, path, {k.lower(): v for k, v in (headers or {}).items()}, raw, client)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> Reply:
        """Dispatch one request. `headers` must have lower-case names."""
        method = method.upper()
        split = urlsplit(target)
        raw_path = split.path or "/"
        path = raw_path.rstrip("/") or "/"
        req = _Request(method, path, raw_path, parse_qs(split.query, keep_blank_values=True), headers, body, client)
        reply = self._handle(req)
        with self._lock:
            self.request_log.append(LoggedRequest(self.now(), method, path, split.query, reply.status, req.user,
                                                  req.trans_id))
        return reply

    def _handle(self, req: _Request) -> Reply:
        lat = self.latency() if callable(self.latency) else self.latency
        if lat:
            time.sleep(lat)
        if self.down:
            return Reply(503, ERRORS["restjavad_restarting_503_html"], "text/html")
        fault = self._take_fault(req.method, req.path)
        if fault is not None:
            return self._fault_reply(fault, req)
        try:
            handler, params, access = self._route(req)
            if access != "public":
                self._authenticate(req)
            coord = req.headers.get("x-f5-rest-coordination-id")
            if coord and req.method != "GET" and not req.path.startswith("/mgmt/tm/transaction"):
                return self._queue_command(req, coord)
            if access == "write":
                self._authorize_write(req, params)
            status, body = handler(req, **params)
            return Reply(status, body)
        except RestError as e:
            return Reply(e.status, e.body, e.content_type, e.headers)

    def _route(self, req: _Request):
        path_matched = False
        for method, rx, name, access in _COMPILED:
            m = rx.match(req.path)
            if m:
                path_matched = True
                if method == req.method:
                    return getattr(self, "_h_" + name), {k: unquote(v) for k, v in m.groupdict().items()}, access
        if path_matched:
            raise _err("method_not_allowed_405", method=req.method, path=req.path)
        raise RestError(404, error_body("restjavad_not_ready_404", path=req.path, op_id=self._next_op()))

    # --------------------------------------------------------------------------------------- auth
    def _authenticate(self, req: _Request) -> None:
        tok = req.headers.get("x-f5-auth-token")
        if tok:
            with self._lock:
                t = self._tokens.get(tok)
                if t is None:
                    raise _err("token_missing_401")
                if t.expires <= self.now():
                    raise _err("token_expired_401")
                req.user = t.user
            return
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, pwd = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, pwd = "", None
            if user in self.users and self.users[user] == pwd and self.role(user) != "no-access":
                req.user = user
                return
            raise RestError(401, error_body("login_failed_401", body=json.dumps({"username": user}),
                                            client=req.client, op_id=self._next_op()),
                            headers={"WWW-Authenticate": 'Basic realm="Enterprise Manager"'})
        raise RestError(401, error_body("no_auth_401", path=req.path, client=req.client),
                        headers={"WWW-Authenticate": 'Basic realm="Enterprise Manager"'})

    def _authorize_write(self, req: _Request, params: dict[str, str]) -> None:
        role = self.role(req.user)
        if role in WRITE_ROLES:
            return
        if role == "operator" and "member" in params and req.method == "PATCH":
            body = req.json()
            if isinstance(body, dict) and set(body) <= {"session", "state"}:
                return
        raise _err("authz_failed_401", user=req.user, path=req.path, method=req.method, client=req.client,
                   op_id=self._next_op())

    # ------------------------------------------------------------------------------ token handlers
    def _h_login(self, req: _Request):
        body = req.json()
        if not isinstance(body, dict):
            raise _err("invalid_json_400")
        user, pwd = body.get("username"), body.get("password")
        shown = {k: v for k, v in body.items() if k != "password"}
        if user not in self.users or self.users[user] != pwd or self.role(user) == "no-access":
            with self._lock:
                self.failed_logins += 1
            raise _err("login_failed_401", body=json.dumps(shown), client=req.client, op_id=self._next_op())
        with self._lock:
            now = self.now()
            for old in [k for k, t in self._tokens.items() if t.expires + self.expired_token_retention < now]:
                del self._tokens[old]
            live = sum(1 for t in self._tokens.values() if t.user == user and t.expires > now)
            if live >= self.token_limit and user not in self.token_limit_exempt:
                raise _err("token_limit_400", user_id=self.user_id(user))
            wall = self._wall()
            tok = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]
            t = _Token(tok, user, int(self.token_timeout), now, wall, wall, req.client)
            self._tokens[tok] = t
            self.logins += 1
            req.user = user
            return 200, {
                "username": user,
                "loginReference": {"link": f"https://localhost/mgmt/cm/system/authn/providers/tmos/{_PROVIDER_ID}/login"},
                "loginProviderName": body.get("loginProviderName", "tmos"),
                "token": self._token_json(t),
                "generation": 0,
                "lastUpdateMicros": 0,
            }

    def _token(self, token: str) -> _Token:
        t = self._tokens.get(token)
        if t is None:
            raise _err("object_not_found_404", path=f"/mgmt/shared/authz/tokens/{token}")
        return t

    def _h_tokens_list(self, req: _Request):
        now = self.now()
        with self._lock:
            items = [self._token_json(t) for t in self._tokens.values() if t.user == req.user and t.expires > now]
        return 200, {"items": items, "generation": 0, "kind": "shared:authz:tokens:authtokencollectionstate",
                     "lastUpdateMicros": 0, "selfLink": "https://localhost/mgmt/shared/authz/tokens"}

    def _h_token_get(self, req: _Request, token: str):
        with self._lock:
            return 200, self._token_json(self._token(token))

    def _h_token_patch(self, req: _Request, token: str):
        body = req.json()
        timeout = body.get("timeout") if isinstance(body, dict) else None
        if not _is_int(timeout) or timeout < 1:
            raise _err("token_timeout_invalid_400", value=json.dumps(timeout))
        if timeout > MAX_TOKEN_TIMEOUT:
            raise _err("token_timeout_406")
        with self._lock:
            t = self._token(token)
            t.timeout = timeout
            t.updated_wall = self._wall()
            t.generation += 1
            return 200, self._token_json(t)

    def _h_token_delete(self, req: _Request, token: str):
        with self._lock:
            t = self._token(token)
            del self._tokens[token]
            return 200, self._token_json(t)

    # -------------------------------------------------------------------------- read-only handlers
    def _user_json(self, user: str, tm: bool) -> dict[str, Any]:
        if user not in self.users:
            raise _err("user_not_found_404", user=user)
        access = [{"name": "all-partitions", "role": self.role(user)}]
        if tm:
            return {"kind": "tm:auth:user:userstate", "name": user, "fullPath": user, "generation": 1,
                    "selfLink": self._link(f"/mgmt/tm/auth/user/{user}"), "description": user,
                    "encryptedPassword": "$6$emulator$", "partitionAccess": access, "shell": "none"}
        return {"name": user, "displayName": user, "shell": "none", "partitionAccess": access,
                "generation": 1, "lastUpdateMicros": 0, "kind": "shared:authz:users:usersworkerstate",
                "selfLink": f"https://localhost/mgmt/shared/authz/users/{user}"}

    def _h_shared_user(self, req: _Request, user: str):
        return 200, self._user_json(user, tm=False)

    def _h_tm_user(self, req: _Request, user: str):
        return 200, self._user_json(user, tm=True)

    def _h_device_info(self, req: _Request):
        return 200, {
            "baseMac": "52:54:00:12:34:56", "hostname": self.hostname, "machineId": str(uuid.uuid5(_USER_NS, self.hostname)),
            "address": "127.0.0.1", "build": self.build, "product": "BIG-IP",
            "platformMarketingName": "BIG-IP Virtual Edition", "version": self.version, "edition": "Final",
            "managementAddress": "127.0.0.1", "mcpDeviceName": f"/Common/{self.hostname}", "isClustered": False,
            "isVirtual": True, "hypervisorType": "KVM", "physicalMemory": 8192, "platform": "Z100",
            "restFrameworkVersion": f"{self.version}-{self.build}", "generation": 0, "lastUpdateMicros": 0,
            "kind": "shared:resolver:device-groups:deviceinfostate",
            "selfLink": "https://localhost/mgmt/shared/identified-devices/config/device-info",
        }

    def _h_sys(self, req: _Request):
        subs = ("application", "crypto", "daemon-log-settings", "db", "disk", "dns", "file", "folder",
                "global-settings", "hardware", "httpd", "log-config", "management-ip", "ntp", "performance",
                "provision", "service", "snmp", "software", "sshd", "syslog", "version")
        return 200, {"kind": "tm:sys:syscollectionstate", "selfLink": self._link("/mgmt/tm/sys"),
                     "items": [{"reference": {"link": self._link(f"/mgmt/tm/sys/{s}")}} for s in subs]}

    def _h_sys_version(self, req: _Request):
        e = {"Build": self.build, "Date": "Thu Oct 12 16:25:50 PDT 2023", "Edition": "Final", "Product": "BIG-IP",
             "Title": "Main Package", "Version": self.version}
        return 200, {"kind": "tm:sys:version:versionstats", "selfLink": self._link("/mgmt/tm/sys/version"),
                     "entries": {"https://localhost/mgmt/tm/sys/version/0": {"nestedStats": {
                         "entries": {k: {"description": v} for k, v in e.items()}}}}}

    def _dg_json(self, g: dict[str, Any]) -> dict[str, Any]:
        name = g["name"]
        d = {"kind": "tm:cm:device-group:device-groupstate", "name": name, "partition": "Common",
             "fullPath": f"/Common/{name}", "generation": 1,
             "selfLink": self._link(f"/mgmt/tm/cm/device-group/~Common~{name}"), "asmSync": "disabled",
             "autoSync": g["autoSync"], "fullLoadOnSync": "false", "incrementalConfigSyncSizeMax": 1024,
             "networkFailover": "enabled" if g["type"] == "sync-failover" else "disabled",
             "saveOnAutoSync": "false", "type": g["type"],
             "devicesReference": {"link": self._link(f"/mgmt/tm/cm/device-group/~Common~{name}/devices"),
                                  "isSubcollection": True}}
        d.update({k: v for k, v in g.items() if k not in ("name", "type", "autoSync")})
        return d

    def _h_device_groups(self, req: _Request):
        with self._lock:
            items = [self._dg_json(g) for g in self._device_groups]
        return 200, {"kind": "tm:cm:device-group:device-groupcollectionstate",
                     "selfLink": self._link("/mgmt/tm/cm/device-group"), "items": items}

    def _h_device_group(self, req: _Request, name: str):
        short = _uri_to_full_path(name).rsplit("/", 1)[-1]
        with self._lock:
            for g in self._device_groups:
                if g["name"] == short:
                    return 200, self._dg_json(g)
        raise _err("object_not_found_404", path=f"/Common/{short}")

    # ----------------------------------------------------------------------------- pool handlers
    def _find_pool(self, seg: str) -> _Pool:
        full = _uri_to_full_path(seg)
        p = self._pools.get(full)
        if p is None:
            raise _err("pool_not_found_404", pool=full)
        return p

    def _find_member(self, p: _Pool, seg: str) -> _Member:
        if seg.startswith("~"):
            parts = seg[1:].split("~")
            partition, name = parts[0], parts[-1]
        else:
            partition, name = p.partition, seg
        m = p.members.get(name)
        if m is None or m.partition != partition:
            node, port = _parse_member_name(name)
            if port is None:
                raise _err("object_not_found_404", path=f"/{partition}/{name}")
            raise _err("member_not_found_404", pool=p.full_path, node=f"/{partition}/{node}", port=port)
        return m

    def _select(self, req: _Request, d: dict[str, Any]) -> dict[str, Any]:
        sel = ",".join(req.query.get("$select", []))
        if not sel:
            return d
        keep = {s.strip() for s in sel.split(",") if s.strip()}
        return {k: v for k, v in d.items() if k in keep}

    def _h_pools(self, req: _Request):
        expand = req.flag("expandSubcollections")
        filt = ",".join(req.query.get("$filter", []))
        m = re.match(r"\s*partition\s+eq\s+(\S+)\s*$", filt)
        with self._lock:
            items = [self._select(req, self._pool_json(p, expand)) for p in self._pools.values()
                     if not m or p.partition == m.group(1)]
        return 200, {"kind": "tm:ltm:pool:poolcollectionstate", "selfLink": self._link("/mgmt/tm/ltm/pool"),
                     "items": items}

    def _h_pool_get(self, req: _Request, pool: str):
        with self._lock:
            return 200, self._select(req, self._pool_json(self._find_pool(pool), req.flag("expandSubcollections")))

    def _h_members_get(self, req: _Request, pool: str):
        with self._lock:
            p = self._find_pool(pool)
            items = [self._select(req, self._member_json(p, m)) for m in p.members.values()]
        return 200, {"kind": "tm:ltm:pool:members:memberscollectionstate",
                     "selfLink": self._link(f"/mgmt/tm/ltm/pool/{p.uri_name}/members"), "items": items}

    def _h_member_get(self, req: _Request, pool: str, member: str):
        with self._lock:
            p = self._find_pool(pool)
            return 200, self._select(req, self._member_json(p, self._find_member(p, member)))

    def _h_member_patch(self, req: _Request, pool: str, member: str):
        return self._write_member(req, pool, member, "PATCH")

    def _h_member_put(self, req: _Request, pool: str, member: str):
        return self._write_member(req, pool, member, "PUT")

    def _h_member_delete(self, req: _Request, pool: str, member: str):
        with self._lock:
            p = self._find_pool(pool)
            m = self._find_member(p, member)
            del p.members[m.name]
            self._record(Write(self.now(), p.full_path, m.name, {}, "DELETE", {}, req.user, req.trans_id,
                               self._next_gen()))
            return 200, {}

    def _write_member(self, req: _Request, pool: str, member: str, kind: str):
        body = req.json()
        if not isinstance(body, dict):
            raise _err("invalid_json_400")
        with self._lock:
            p = self._find_pool(pool)
            m = self._find_member(p, member)
            before = self._member_json(p, m)
            changes = self._validate_member(p, m, body, kind)
            if not changes and kind == "PATCH" and not body:
                return 200, before
            for attr, value in changes.items():
                if attr == "props":
                    m.props.update(value)
                else:
                    setattr(m, attr, value)
            m.generation = self._next_gen()
            after = self._member_json(p, m)
            changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                       if k not in ("generation",) and before.get(k) != after.get(k)}
            self._record(Write(self.now(), p.full_path, m.name, copy.deepcopy(body), kind, changed, req.user,
                               req.trans_id, m.generation))
            return 200, after

    def _validate_member(self, p: _Pool, m: _Member, body: dict[str, Any], kind: str) -> dict[str, Any]:
        """Map a PATCH/PUT body to attribute changes, or raise a 400 like BIG-IP."""
        item = f"/ltm/pool/{p.uri_name}/members/{m.uri_name}"
        who = f"{p.full_path} {m.full_path}"
        out: dict[str, Any] = {}
        if kind == "PUT":  # PUT resets what it does not carry
            out.update(ratio=1, connection_limit=0, description="")
        props: dict[str, Any] = {}

        def bad(prop: str, value: Any, why: str) -> RestError:
            return _err("invalid_value_400", value=json.dumps(value), prop=prop, member=who, why=why)

        for k, v in body.items():
            if k == "ratio":
                if not _is_int(v):
                    raise bad(k, v, "must be an integer")
                if not 1 <= v <= self.max_ratio:
                    raise bad(k, v, f"must be in the range 1..{self.max_ratio}")
                out["ratio"] = v
            elif k == "connectionLimit":
                if not _is_int(v) or v < 0:
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
            elif k in _OTHER_MEMBER_PROPS:
                props[k] = v
            elif k in _IDENTITY_PROPS:
                current = self._member_json(p, m).get(k)
                if k in ("kind", "selfLink", "generation", "ephemeral") or v == current:
                    continue
                raise _err("unexpected_property_400", item=item, pair=f"{json.dumps(k)}:{json.dumps(v)}")
            else:
                raise _err("unexpected_property_400", item=item, pair=f"{json.dumps(k)}:{json.dumps(v)}")
        if props:
            out["props"] = props
        return out

    _POOL_PATCHABLE = ("loadBalancingMode", "queueOnConnectionLimit", "queueDepthLimit", "queueTimeLimit",
                       "description", "slowRampTime", "minActiveMembers", "monitor", "serviceDownAction",
                       "reselectTries", "allowNat", "allowSnat", "metadata")

    def _h_pool_patch(self, req: _Request, pool: str):
        """Pool PATCH. A `members` list REPLACES the pool's members (as on BIG-IP); logged as PATCH-POOL."""
        body = req.json()
        if not isinstance(body, dict):
            raise _err("invalid_json_400")
        with self._lock:
            p = self._find_pool(pool)
            for k in body:
                if k not in self._POOL_PATCHABLE and k != "members" and k not in _IDENTITY_PROPS:
                    raise _err("unexpected_property_400", item=f"/ltm/pool/{p.uri_name}",
                               pair=f"{json.dumps(k)}:{json.dumps(body[k])}")
            for k, v in body.items():
                if k == "metadata":
                    p.metadata = v
                elif k in self._POOL_PATCHABLE:
                    p.props[k] = v
            if "members" in body:
                old = p.members
                p.members = {}
                for item in body["members"] or []:
                    spec = {"name": item} if isinstance(item, str) else dict(item)
                    name = spec.get("name", "").split("/")[-1]
                    if name in old:
                        p.members[name] = old[name]
                    else:
                        node, port = _parse_member_name(name)
                        p.members[name] = _Member(name=name, partition=p.partition, address=spec.get("address", node),
                                                  generation=self._next_gen())
                    if "ratio" in spec:
                        p.members[name].ratio = spec["ratio"]
            p.generation = self._next_gen()
            self._record(Write(self.now(), p.full_path, None, copy.deepcopy(body), "PATCH-POOL", {}, req.user,
                               req.trans_id, p.generation))
            return 200, self._pool_json(p, expand=False)

    def _record(self, w: Write) -> None:
        self.writes.append(w)
        if w.trans_id is None:
            self.commits += 1

    # ----------------------------------------------------------------------------- transactions
    def _purge_transactions(self) -> None:
        now = self.now()
        for tid in [tid for tid, t in self._transactions.items() if now - t.created >= t.timeout]:
            del self._transactions[tid]

    def _find_trans(self, tid: Any) -> _Transaction:
        self._purge_transactions()
        try:
            t = self._transactions.get(int(tid))
        except (TypeError, ValueError):
            t = None
        if t is None:
            raise _err("transaction_not_found_404", trans_id=tid)
        return t

    def _h_transaction_create(self, req: _Request):
        with self._lock:
            if self._next_trans is None:
                self._next_trans = int(self._wall() * 1e6)
            tid = self._next_trans
            self._next_trans += 1
            t = _Transaction(tid, req.user, self.now(), int(self.transaction_timeout))
            self._transactions[tid] = t
            return 200, self._trans_json(t)

    def _h_transactions(self, req: _Request):
        with self._lock:
            self._purge_transactions()
            items = [self._trans_json(t) for t in self._transactions.values()]
        return 200, {"kind": "tm:transaction:transactioncollectionstate",
                     "selfLink": self._link("/mgmt/tm/transaction"), "items": items}

    def _h_transaction_get(self, req: _Request, tid: str):
        with self._lock:
            return 200, self._trans_json(self._find_trans(tid))

    def _h_transaction_commands(self, req: _Request, tid: str):
        with self._lock:
            t = self._find_trans(tid)
            return 200, {"kind": "tm:transaction:commandscollectionstate",
                         "selfLink": self._link(f"/mgmt/tm/transaction/{t.trans_id}/commands"),
                         "items": [self._command_json(t, c) for c in t.commands]}

    def _h_transaction_delete(self, req: _Request, tid: str):
        with self._lock:
            t = self._find_trans(tid)
            del self._transactions[t.trans_id]
            return 200, {}

    def _queue_command(self, req: _Request, coord: str) -> Reply:
        with self._lock:
            t = self._find_trans(coord)
            if t.state != "STARTED":
                raise _err("transaction_state_400", old=t.state, new="STARTED")
            req.trans_id = t.trans_id
            body = req.json() if req.body_bytes.strip() else {}
            c = _Command(req.method, req.path, req.query, body, len(t.commands) + 1)
            t.commands.append(c)
            return Reply(200, self._command_json(t, c))

    def _h_transaction_patch(self, req: _Request, tid: str):
        body = req.json()
        if req.headers.get("x-f5-rest-coordination-id"):
            raise _err("transaction_header_left_on_commit_400", trans_id=tid)
        with self._lock:
            t = self._find_trans(tid)
            new_state = body.get("state") if isinstance(body, dict) else None
            if new_state != "VALIDATING" or t.state != "STARTED":
                raise _err("transaction_state_400", old=t.state, new=new_state)
            validate_only = bool(body.get("validateOnly", False))
            self._commit(t, req, validate_only)
            reply = self._trans_json(t)
            reply["validateOnly"] = validate_only
            if t.state in ("COMPLETED", "VALIDATED"):
                self._transactions.pop(t.trans_id, None)
            return 200, reply

    def _commit(self, t: _Transaction, req: _Request, validate_only: bool) -> None:
        """Run every command in order against live state; on the first failure restore everything."""
        saved_pools = copy.deepcopy(self._pools)
        saved_gen, saved_writes, saved_commits = self._generation, len(self.writes), self.commits
        try:
            for c in t.commands:
                sub = _Request(c.method, c.path, c.path, c.query, {}, json.dumps(c.body).encode(), req.client,
                               user=t.user, trans_id=t.trans_id)
                handler, params, access = self._route(sub)
                if access == "write":
                    self._authorize_write(sub, params)
                handler(sub, **params)
        except RestError as e:
            self._pools, self._generation = saved_pools, saved_gen
            del self.writes[saved_writes:]
            self.commits = saved_commits
            reason = e.body.get("message", "") if isinstance(e.body, dict) else str(e.body)
            t.state, t.failure = "FAILED", reason
            raise _err("transaction_failed_400", reason=reason) from None
        if validate_only:
            self._pools, self._generation = saved_pools, saved_gen
            del self.writes[saved_writes:]
            t.state = "VALIDATED"
            return
        t.state = "COMPLETED"
        self.commits = saved_commits + 1

    # ----------------------------------------------------------------------------------- HTTPS
    @property
    def cert_path(self) -> str | None:
        """The server certificate, which is also the CA bundle to verify against (None before start)."""
        return self._certs.cert if self._certs else None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve HTTPS on a daemon thread; return the base URL, e.g. https://127.0.0.1:50123."""
        if self._server is not None:
            return self.base_url  # type: ignore[return-value]
        if self._certs is None:
            self._certs = (tls.make_self_signed(self._cert_dir, dns_names=("localhost", self.hostname))
                           if self._cert_dir else tls.shared_pair())
        ctx = tls.server_context(self._certs)
        self._server = _Server((host, port), self, ctx)
        actual = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"https://{shown}:{actual}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="bigip-emulator", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    def stop(self) -> None:
        """Stop serving and cut every open connection (clients see the BIG-IP go away)."""
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.close_all()
        srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> BigIPEmulator:
        """`with BigIPEmulator(...) as bigip:` serves on 127.0.0.1 (random port) until the block ends."""
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _iso(wall: float) -> str:
    d = _dt.datetime.fromtimestamp(wall, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+0000"


# ------------------------------------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Jetty(9.2.22.v20170606)"
    sys_version = ""
    timeout = 120  # idle keep-alive connections
    wbufsize = 64 * 1024  # headers and body leave in one write (no Nagle / delayed-ACK stall)
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()
        self.request.settimeout(self.timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature; the emulator keeps request_log
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.emulator.handle(self.command, self.path, headers, body, self.client_address[0])
        if reply.dropped:
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        data = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], emulator: BigIPEmulator, ctx: ssl.SSLContext):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.emulator = emulator
        self.ssl_context = ctx
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); not needed here
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls_sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            self._conns.add(tls_sock)
        return tls_sock, addr

    def shutdown_request(self, request) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        pass  # handshake failures, resets: the client sees them; nothing to print

    def close_all(self) -> None:
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


# ------------------------------------------------------------------------------------------------- CLI


def _parse_pool_arg(arg: str) -> tuple[str, list[str]]:
    path, _, members = arg.partition("=")
    return path, [m.strip() for m in members.split(",") if m.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller.sim.bigip", description="Serve a BIG-IP iControl REST emulator.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--pool", action="append", default=[], metavar="/Common/name=ADDR:PORT,...",
                    help="a pool and its members; repeatable")
    ap.add_argument("--lb-mode", default="ratio-least-connections-member")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    ap.add_argument("--token-limit", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    ap.add_argument("--cert-dir", default=None, help="where to write the self-signed cert (default: a temp dir)")
    args = ap.parse_args(argv)

    emu = BigIPEmulator({args.user: args.password}, token_limit=args.token_limit, latency=args.latency,
                        cert_dir=args.cert_dir)
    for spec in args.pool:
        path, members = _parse_pool_arg(spec)
        emu.add_pool(path, members, lb_mode=args.lb_mode)
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored (background jobs)
    try:
        url = emu.start(args.host, args.port)
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"BIG-IP emulator listening on {url}", flush=True)
    print(f"certificate (CA bundle): {emu.cert_path}", flush=True)
    for p in emu._pools.values():  # noqa: SLF001 - the module's own CLI
        print(f"pool {p.full_path} ({p.props['loadBalancingMode']}): {', '.join(p.members) or 'no members'}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
