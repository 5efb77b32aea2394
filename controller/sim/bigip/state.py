"""The emulator's records: pools, members, nodes, tokens, transactions, faults, requests and replies.

Plain dataclasses with no behaviour beyond derived read-back values; the emulator's mixins own the
locking and the rules.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import re
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import quote

from controller.sim.bigip.errors import err

FAULT_KINDS = ("mcpd", "html503", "notregistered", "drop", "expired", "missing")
SESSION_WRITES = ("user-enabled", "user-disabled")
STATE_WRITES = ("user-up", "user-down")
HEALTH_STATES = ("up", "down", "unchecked", "checking")
#: States of an FQDN template member (its address is any6); BIG-IP reports these instead of up/down.
FQDN_STATES = ("fqdn-up", "fqdn-down", "fqdn-checking", "fqdn-up-no-addr")
WRITE_ROLES = frozenset({"admin", "resource-admin", "manager", "application-editor"})
#: Roles refused on /mgmt/tm/cm/* (401) unless `cm_refusals` says otherwise for the user.
CM_DENIED_ROLES = frozenset({"auditor"})
MAX_TOKEN_TIMEOUT = 36000
PROVIDER_ID = "1f44a60e-11a7-3c51-a49f-82983026b41b"

#: Member properties a client may send besides the five the controller writes; accepted as BIG-IP does.
OTHER_MEMBER_PROPS = ("dynamicRatio", "priorityGroup", "rateLimit", "monitor", "logging", "inheritProfile",
                      "fqdn", "appService", "profiles", "trafficGroup", "metadata")
#: Properties echoed back by clients that BIG-IP ignores when they match.
IDENTITY_PROPS = ("name", "partition", "fullPath", "subPath", "kind", "selfLink", "generation", "address",
                  "ephemeral")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Write:
    """One applied change. `kind`: PATCH, PUT, DELETE (member), PATCH-POOL or PATCH-NODE.

    `failover_state` is the unit's failover state when the write was applied ("active", "standby", ...),
    so a test can count writes that landed on a standby unit."""

    time: float  # emulator clock
    pool: str
    member: str | None
    body: dict[str, Any]
    kind: str = "PATCH"
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (old, new) read-back values
    user: str = ""
    trans_id: int | None = None
    generation: int = 0
    failover_state: str = "active"


LoggedRequest = namedtuple("LoggedRequest", "time method path query status user trans_id")


def _member_props() -> dict[str, Any]:
    return {"dynamicRatio": 1, "ephemeral": "false", "fqdn": {"autopopulate": "disabled"}, "inheritProfile": "enabled",
            "logging": "disabled", "monitor": "default", "priorityGroup": 0, "rateLimit": "disabled"}


class _Addressed:
    """The path and URI segment of an object named by partition and name (a member, a node)."""

    name: str
    partition: str

    @property
    def full_path(self) -> str:
        return f"/{self.partition}/{self.name}"

    @property
    def uri_name(self) -> str:
        return "~" + self.partition + "~" + quote(self.name, safe=":.")


@dataclass
class Member(_Addressed):
    name: str
    partition: str
    address: str
    ratio: int = 1
    connection_limit: int = 0
    description: str = ""
    enabled: bool = True  # session != user-disabled
    forced_down: bool = False  # state user-down
    health: str = "up"  # monitor result: up, down, unchecked, checking (or fqdn-* for an FQDN template)
    generation: int = 1
    props: dict[str, Any] = field(default_factory=_member_props)

    @property
    def session(self) -> str:
        if not self.enabled:
            return "user-disabled"
        return "user-enabled" if self.health == "unchecked" else "monitor-enabled"

    @property
    def state(self) -> str:
        return "user-down" if self.forced_down else self.health

    @property
    def ephemeral(self) -> bool:
        return self.props.get("ephemeral") == "true"


@dataclass
class Node(_Addressed):
    """An LTM node: one per address (or FQDN) shared by every pool member that uses it."""

    name: str
    partition: str
    address: str
    ratio: int = 1
    connection_limit: int = 0
    generation: int = 1
    ephemeral: bool = False
    fqdn: dict[str, Any] = field(default_factory=lambda: {"addressFamily": "ipv4", "autopopulate": "disabled",
                                                           "downInterval": 5, "interval": "3600"})
    state: str = "unchecked"
    session: str = "user-enabled"


@dataclass
class Pool:
    partition: str
    sub_path: str
    name: str
    generation: int
    props: dict[str, Any]
    members: dict[str, Member] = field(default_factory=dict)
    metadata: list[dict[str, str]] | None = None

    @property
    def full_path(self) -> str:
        return "/" + "/".join([self.partition] + ([self.sub_path] if self.sub_path else []) + [self.name])

    @property
    def uri_name(self) -> str:
        return self.full_path.replace("/", "~")


@dataclass
class Token:
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
class Command:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    command_id: int


@dataclass
class Transaction:
    trans_id: int
    user: str
    created: float
    timeout: int
    state: str = "STARTED"
    failure: str = ""
    commands: list[Command] = field(default_factory=list)


@dataclass
class Fault:
    kind: str | tuple[int, Any]
    remaining: int
    path: re.Pattern[str] | None
    method: str | None


@dataclass
class Request:
    method: str
    path: str  # raw path, no query, no trailing slash (segments are decoded by the router)
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
                    raise err("invalid_json_400") from None
        return self._json

    def flag(self, name: str) -> bool:
        return any(v.lower() == "true" for v in self.query.get(name, []))

    def first(self, name: str) -> str:
        return ",".join(self.query.get(name, []))


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


# -- names and paths ----------------------------------------------------------------------------


def parse_member_name(name: str) -> tuple[str, int | None]:
    """(node, port) of `10.0.0.1:80`, `10.0.0.1%2:80`, `2001:db8::1.80`, `web1:80`; port None if absent."""
    sep = "." if name.count(":") > 1 else ":"
    node, _, port = name.rpartition(sep)
    if node and port.isdigit():
        return node, int(port)
    return name, None


def is_ip(node: str) -> bool:
    try:
        ipaddress.ip_address(node.split("%", 1)[0])
        return True
    except ValueError:
        return False


def parse_pool_path(full_path: str) -> tuple[str, str, str]:
    parts = [p for p in full_path.strip("/").split("/") if p]
    if len(parts) == 1:
        return "Common", "", parts[0]
    if len(parts) < 1:
        raise ValueError(f"bad pool path {full_path!r}")
    return parts[0], "/".join(parts[1:-1]), parts[-1]


def uri_to_full_path(seg: str) -> str:
    """`~Common~pool` -> `/Common/pool`; a bare `pool` -> `/Common/pool`. `seg` is already URL-decoded."""
    if seg.startswith("~"):
        return seg.replace("~", "/")
    if seg.startswith("/"):
        return seg
    return "/Common/" + seg


def bad_percent(raw: str) -> bool:
    """True when `raw` holds a '%' that does not start a %XX escape (a route domain sent as `%1`, not `%251`)."""
    return bool(_BAD_PERCENT.search(raw))


def is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def iso(wall: float) -> str:
    d = _dt.datetime.fromtimestamp(wall, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+0000"
