"""HA pairs: find the active unit of a device group and read and write only there.

Most production BIG-IPs are an active/standby pair in a sync-failover device group. Config written on
a standby is lost, or overwrites the active at the next sync. So `f5.host` may list the management
addresses of every unit, and `FailoverClient` (which the daemon uses even for one host) asks a unit
where it stands before it trusts it:

1. `GET /mgmt/tm/cm/failover-status`: `entries.*.nestedStats.entries.status.description`, one of
   ACTIVE, STANDBY, OFFLINE, FORCED OFFLINE;
2. if that is not readable (404, or a role that may not read it), `GET /mgmt/tm/cm/device` and the
   `failoverState` of the item with `selfDevice: "true"`.

Every write first confirms that the unit it goes to is still active (one GET); a pool read does too,
unless that was confirmed less than `recheck` seconds ago (the daemon uses half a tick, so a tick that
only reads costs one extra GET).
When it is not, every configured unit is asked, the active one is used from then on, and one
`bigip_failover` line is logged. A unit that is standby, offline or forced offline is never written.
No active unit (one configured host that is standby; both units standby): nothing is read or written,
and the error says why.

Active/active: a sync-failover device group may run every unit active (one floating traffic group per
unit, or none at all). When several units report ACTIVE, each is asked for its traffic groups
(`GET /mgmt/tm/cm/traffic-group/stats`: `trafficGroup`, `deviceName`, `failoverState` per row; where that is
not readable, the "active for /Common/traffic-group-N" lines of its cm/failover-status details). If no
floating traffic group is active on two devices and the units share a sync-failover device group, it
is active/active: reads and writes go to one active unit (the one in use, else the first in `f5.host`
order) and the group's config sync carries the ratios to the others. A floating traffic group active on
two devices is split brain (or traffic groups that cannot be read, or units that share no
sync-failover group): nothing is read or written.

Accounts that may not read cm/* (Auditor, some Manager setups: 401/403; or 404): the unit's state is
unknown, so nothing is written and the error names the missing permission and the fix, unless
`f5.standalone: true` says the unit has no peer, in which case cm/* is never asked and the unit is
written. A refused cm/* call is not retried, and not asked again until the next tick (`begin_tick`).

Each unit has its own `BigIPClient`, so its own token under the existing token rules (at most one live
token per unit, extended before expiry, deleted at exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller import logs
from controller.clock import Clock, SystemClock
from controller.config.schema import F5Config
from controller.errors import AuthError, BigIPError, NotActiveError, StateUnreadableError
from controller.faultlog import FaultLog
from controller.ltm.client import ApplyResult, BigIPClient
from controller.ltm.token import BasicAuth, TokenManager
from controller.ltm.tokenstore import TokenStore
from controller.model import MemberPlan, PoolRef, PoolState, TokenCounters

#: cm/failover-status `status` -> cm/device `failoverState`.
STATES = {"ACTIVE": "active", "STANDBY": "standby", "OFFLINE": "offline", "FORCED OFFLINE": "forced-offline"}
UNKNOWN, UNREACHABLE, STANDALONE = "unknown", "unreachable", "standalone"
_UNREADABLE = (401, 403, 404)
FAILOVER_STATUS, DEVICES = "/mgmt/tm/cm/failover-status", "/mgmt/tm/cm/device"
TRAFFIC_GROUP_STATS = "/mgmt/tm/cm/traffic-group/stats"
LOCAL_ONLY = "traffic-group-local-only"  # active on every unit by design; never a sign of split brain


@dataclass(frozen=True)
class UnitStatus:
    """Where one configured unit stands: active, standby, offline, forced-offline, unknown or unreachable."""

    host: str
    state: str
    detail: str = ""
    error: BigIPError | None = None
    refused: str = ""  # when cm/* was not readable: what BIG-IP answered (state UNKNOWN)


def read_state(client: BigIPClient) -> str:
    """The unit's failover state; UNKNOWN when neither endpoint is readable. Other errors propagate."""
    return probe(client)[0]


def probe(client: BigIPClient) -> tuple[str, str]:
    """(failover state, "") or (UNKNOWN, what BIG-IP answered) when neither endpoint is readable.

    Each cm/* call is made once (no retry: a refusal would only be refused again); errors other than a
    refusal (401, 403, 404) propagate."""
    refusals = []
    try:
        reply = _get_cm(client, FAILOVER_STATUS)
        status = _status(reply)
        if status:
            return STATES.get(status.upper(), status.lower().replace(" ", "-")), ""
    except BigIPError as exc:
        if not _unreadable(exc):
            raise
        refusals.append(f"{FAILOVER_STATUS}: HTTP {exc.status}")
    try:
        reply = _get_cm(client, DEVICES)
    except BigIPError as exc:
        if not _unreadable(exc):
            raise
        refusals.append(f"{DEVICES}: HTTP {exc.status}")
        return UNKNOWN, "; ".join(refusals)
    items = reply.get("items", []) if isinstance(reply, dict) else []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and str(item.get("selfDevice", "")).lower() == "true":
            state = item.get("failoverState")
            if isinstance(state, str) and state:
                return state.lower(), ""
    return UNKNOWN, "; ".join(refusals) or f"{DEVICES}: no selfDevice entry"


def _get_cm(client: BigIPClient, path: str) -> Any:
    """One cm/* GET. A refusal or a 404 (of any kind: a role may be answered "not registered") is not retried,
    since asking again gets the same answer and stretches the tick; a 5xx (mcpd lost, restjavad restarting)
    is retried as any call is."""
    try:
        return client.get(path, retry=False)
    except BigIPError as exc:
        if not exc.retryable or exc.status is None or exc.status < 500:
            raise
    return client.get(path)


def traffic_groups(reply: Any) -> dict[str, set[str]]:
    """From `cm/traffic-group/stats`: each floating traffic group -> the devices it is active on."""
    out: dict[str, set[str]] = {}
    entries = reply.get("entries") if isinstance(reply, dict) else None
    for entry in entries.values() if isinstance(entries, dict) else ():
        nested = entry.get("nestedStats", {}).get("entries", {}) if isinstance(entry, dict) else {}
        if not isinstance(nested, dict):
            continue
        group, device, state = (str((nested.get(k) or {}).get("description", "")) if isinstance(nested.get(k), dict)
                                else "" for k in ("trafficGroup", "deviceName", "failoverState"))
        if not group or group.rsplit("/", 1)[-1] == LOCAL_ONLY:
            continue
        devices = out.setdefault(group, set())
        if state.lower() == "active" and device:
            devices.add(device)
    return out


def active_for(reply: Any) -> set[str]:
    """The floating traffic groups a unit's cm/failover-status details call active ("active for /Common/tg")."""
    out: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get("description")
            text = value if isinstance(value, str) else ""
            if text.lower().startswith("active for "):
                group = text[len("active for "):].strip()
                if group.rsplit("/", 1)[-1] != LOCAL_ONLY:
                    out.add(group)
            for value in node.values():
                walk(value)

    walk(reply)
    return out


def unreadable_message(host: str, username: str, refused: str) -> str:
    """Why nothing is written when a unit's failover state cannot be read, and the two fixes."""
    return (f"BIG-IP {host}: failover state not readable by user {username} ({refused}): the account lacks "
            "permission to read /mgmt/tm/cm/* (Auditor and some Manager setups are refused there), so whether "
            "this unit is active is unknown and nothing is written; fix: give the user a role that can read "
            "/mgmt/tm/cm/failover-status (e.g. Administrator), or, if this unit has no peer, set "
            "f5.standalone: true (cm/* is then not asked)")


def _unreadable(exc: BigIPError) -> bool:
    """Not readable by this user or on this version; a failed login is not that (it propagates)."""
    if isinstance(exc, AuthError):  # a refused login names the login path; a refusal of cm/* names cm/*
        return "permission denied" in exc.message or exc.path.startswith("/mgmt/tm/cm/")
    return exc.status in _UNREADABLE


def _status(reply: Any) -> str:
    entries = reply.get("entries") if isinstance(reply, dict) else None
    for entry in entries.values() if isinstance(entries, dict) else ():
        nested = entry.get("nestedStats", {}).get("entries", {}) if isinstance(entry, dict) else {}
        desc = nested.get("status", {}).get("description") if isinstance(nested, dict) else None
        if isinstance(desc, str) and desc:
            return desc
    return ""


class FailoverClient:
    """The BigIP seam over every configured unit; reads and writes go to the active unit only."""

    def __init__(self, cfg: F5Config, *, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
                 log: logs.Log | None = None, factory: Callable[..., BigIPClient] = BigIPClient, recheck: float = 0.0,
                 token_store: TokenStore | None = None, read_only: bool = False):
        self.cfg = cfg
        #: `plan` / dry-run: when the failover state is not readable, read (never write) the first such unit
        self.read_only = read_only
        self.clock = clock or SystemClock()
        self.recheck = recheck
        self._confirmed_at: float | None = None
        self.hosts: tuple[str, ...] = cfg.units
        self.units: dict[str, BigIPClient] = {
            h: factory(replace(cfg, host=h, hosts=(h,)), clock=clock, sleep=sleep, token_store=token_store)
            for h in self.hosts}
        first = self.units[self.hosts[0]]
        for c in self.units.values():  # failover checks on every unit count against one tick's budget
            c.budget = first.budget
        self.faults = FaultLog(log or logs.get())
        self.log = self.faults.log
        self.active_host: str | None = None
        self.failovers = 0  # times the active unit changed while running
        self.active_active = False  # several units active in one sync-failover group (not split brain)
        self._split = ""  # why several active units were taken for split brain
        self._group_checked = False  # active/active confirmed (no split brain) this tick
        self._refused: dict[str, str] = {}  # host -> cm/* refusal seen this tick: not asked again until the next
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"FailoverClient(hosts={list(self.hosts)!r}, active={self.active_host!r})"

    # -- where things stand --------------------------------------------------------------------
    def status(self) -> list[UnitStatus]:
        """Every configured unit's failover state, asked now (a unit refused cm/* this tick is not asked again)."""
        if self.cfg.standalone:
            return [UnitStatus(self.hosts[0], STANDALONE, "f5.standalone: true: cm/* not asked")]
        out = []
        for host, client in self.units.items():
            if host in self._refused:
                out.append(UnitStatus(host, UNKNOWN, refused=self._refused[host]))
                continue
            try:
                state, refused = probe(client)
            except BigIPError as exc:
                out.append(UnitStatus(host, UNREACHABLE, str(exc), exc))
                continue
            if refused:
                self._refused[host] = refused
            out.append(UnitStatus(host, state, refused=refused))
        return out

    def active(self, max_age: float = 0.0) -> BigIPClient:
        """The active unit's client, confirmed within `max_age` seconds (0: now); NotActiveError when none is."""
        with self._lock:
            if self.cfg.standalone:  # a unit with no peer: nothing to ask
                self.active_host = self.hosts[0]
                return self.units[self.hosts[0]]
            now = self.clock.monotonic()
            if self.active_host is not None and self._confirmed_at is not None and now - self._confirmed_at < max_age:
                return self.units[self.active_host]
            self._confirmed_at = None
            # the unit in use is still active: enough, except that an active/active group is checked for split
            # brain (every unit's traffic groups) once per tick, not before every write
            settled = not self.active_active or self._group_checked
            if self.active_host is not None and settled and self.active_host not in self._refused:
                try:
                    state, refused = probe(self.units[self.active_host])
                    if state == "active":
                        self._confirmed_at = now
                        return self.units[self.active_host]
                    if refused:
                        self._refused[self.active_host] = refused
                except BigIPError:
                    if len(self.units) == 1:
                        raise  # one host: its own error says more than "no active unit"
            return self._find()

    def _find(self) -> BigIPClient:
        statuses = self.status()
        active = [s.host for s in statuses if s.state == "active"]
        if len(self.units) == 1 and statuses[0].error is not None:
            self.active_host = None
            raise statuses[0].error  # one host: its own error (unreachable, login refused) says it best
        unknown = [s for s in statuses if s.state == UNKNOWN and s.refused]
        if not active and unknown:
            why = unreadable_message(unknown[0].host, self.cfg.username, unknown[0].refused)
            if self.read_only:  # a plan writes nothing: read the unit, and say that a run would not write it
                self.faults.fault("bigip:state", "bigip_failover_state_unreadable", error=why,
                                  hint=f"plan reads {unknown[0].host} anyway; run would write nothing")
                self.active_host = unknown[0].host
                return self.units[unknown[0].host]
            self.active_host = None
            self.faults.fault("bigip:state", "bigip_failover_state_unreadable", error=why)
            raise StateUnreadableError(why)
        self.faults.clear("bigip:state", "bigip_failover_state_readable")
        chosen = self._pick(statuses, active)
        if chosen is None:
            previous, self.active_host = self.active_host, None
            why = self._why_none(statuses, active)
            self.faults.fault("bigip:active", "bigip_no_active_unit", error=why, previous=previous or "")
            raise NotActiveError(why)
        new = chosen
        if self.active_host is not None and new != self.active_host:
            self.failovers += 1
            self.log.warning("bigip_failover", from_host=self.active_host, to_host=new,
                             units={s.host: s.state for s in statuses})
        elif not self.faults.clear("bigip:active", "bigip_active_unit", host=new) and self.active_host is None \
                and len(self.units) > 1:
            self.log.info("bigip_active_unit", host=new, units={s.host: s.state for s in statuses},
                          active_active=self.active_active)
        self.active_host = new
        self._confirmed_at = self.clock.monotonic()
        return self.units[new]

    def _pick(self, statuses: Sequence[UnitStatus], active: Sequence[str]) -> str | None:
        """The unit to use: the one active unit, or one of an active/active group; None when there is none."""
        self._split = ""
        if len(active) == 1:
            self.active_active = False
            return active[0]
        if len(active) < 2:
            return None
        why = self._split_brain(active)
        if why:
            self._split = why
            self.active_active = False
            return None
        self.active_active = self._group_checked = True
        return self.active_host if self.active_host in active else active[0]

    def _split_brain(self, active: Sequence[str]) -> str:
        """Why several active units are split brain; "" when they are an active/active group."""
        claims: dict[str, set[str]] = {}
        for host in active:
            try:
                found = traffic_groups(_get_cm(self.units[host], TRAFFIC_GROUP_STATS))
            except BigIPError as exc:
                try:  # older units, or a role refused the stats: "active for /Common/traffic-group-1" lines
                    found = {g: {host} for g in active_for(_get_cm(self.units[host], FAILOVER_STATUS))}
                except BigIPError:
                    return (f"traffic groups not readable on {host} (HTTP {exc.status}), so active/active cannot be "
                            "told apart")
            for group, devices in found.items():
                claims.setdefault(group, set()).update(devices)
        doubled = sorted(g for g, devices in claims.items() if len(devices) > 1)
        if doubled:
            return "traffic group(s) " + ", ".join(f"{g} active on {', '.join(sorted(claims[g]))}" for g in doubled)
        shared: set[str] | None = None
        for host in active:  # the sync-failover groups every active unit is in (the same names across a trust domain)
            try:
                groups = self.units[host].device_groups()
            except BigIPError as exc:
                return f"device groups not readable on {host} (HTTP {exc.status})"
            names = {str(g.get("name")) for g in groups if g.get("type") == "sync-failover"}
            shared = names if shared is None else shared & names
        if not shared:
            return "the units share no sync-failover device group, so a write on one would not reach the others"
        return ""

    def _why_none(self, statuses: Sequence[UnitStatus], active: Sequence[str]) -> str:
        states = ", ".join(f"{s.host} {s.state}" for s in statuses)
        if len(active) > 1:
            return (f"{len(active)} units report active ({states}) and {self._split}: split brain? nothing read "
                    "or written")
        if len(statuses) == 1:
            return (f"BIG-IP {statuses[0].host} is {statuses[0].state}, not active: nothing written; point f5.host "
                    "at the active unit or list every unit of the device group")
        return f"no unit of the device group is active ({states}): nothing written"

    # -- the BigIP seam ------------------------------------------------------------------------
    def unit(self) -> str:
        """The active unit's address, confirmed now (or within `recheck`); NotActiveError when none is."""
        self.active(self.recheck)
        return self.active_host or self.hosts[0]

    def read_pool(self, ref: PoolRef) -> PoolState:
        return self.active(self.recheck).read_pool(ref)

    def apply(self, ref: PoolRef, plans: Sequence[MemberPlan]) -> ApplyResult:
        try:
            client = self.active()
        except BigIPError as exc:
            result = ApplyResult()
            result.failed.extend((p.member.key, exc) for p in plans if p.changes)
            return result
        return client.apply(ref, plans)

    def patch_pool(self, ref: PoolRef, fields: Mapping[str, Any]) -> None:
        """A pool's own setting, written to the active unit only (NotActiveError when none is)."""
        self.active().patch_pool(ref, fields)

    def version(self) -> str:
        return self._reader().version()

    def whoami(self) -> dict[str, Any]:
        return self._reader().whoami()

    def device_groups(self) -> list[dict[str, Any]]:
        return self._reader().device_groups()

    def get(self, path: str, *, retry: bool = True) -> Any:
        return self._reader().get(path, retry=retry)

    def _reader(self) -> BigIPClient:
        """For `check`: the active unit, else the first unit (reads only)."""
        try:
            return self.active()
        except NotActiveError:
            return next(iter(self.units.values()))

    # -- the tick's BIG-IP budget (f5.tick_budget): one budget shared by every unit's calls ------
    def begin_tick(self, seconds: float | None = None) -> None:
        with self._lock:
            self._refused.clear()  # cm/* refusals are asked about again once per tick
            self._group_checked = False  # and an active/active group is checked for split brain again
        self.units[self.hosts[0]].begin_tick(seconds)

    def end_tick(self) -> None:
        self.units[self.hosts[0]].end_tick()

    # -- tokens and lifecycle ------------------------------------------------------------------
    @property
    def tokens(self) -> TokenManager | BasicAuth:
        """The token manager of the active unit (the first unit before one is known)."""
        return self.units[self.active_host or self.hosts[0]].tokens

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for c in self.units.values() for s in c.tokens.secrets())

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.units.values())

    def observe_requests(self, hook: Callable[[str, int, float], None]) -> None:
        """Every unit's calls (failover checks included) reach `hook`; see BigIPClient.observe_requests."""
        for c in self.units.values():
            c.observe_requests(hook)

    def token_counters(self) -> TokenCounters:
        total = [c.token_counters() for c in self.units.values()]
        return TokenCounters(logins=sum(t.logins for t in total), extensions=sum(t.extensions for t in total),
                             deletions=sum(t.deletions for t in total))

    def close(self) -> None:
        for c in self.units.values():
            c.close()


def connect(cfg: F5Config, *, clock: Clock | None = None, log: logs.Log | None = None) -> FailoverClient:
    return FailoverClient(cfg, clock=clock, log=log)
