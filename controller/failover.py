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
No active unit (one configured host that is standby; both units standby; two units both claiming to
be active): nothing is read or written, and the error says why. A single host whose state cannot be
read at all (an old unit, a restricted role) is taken as standalone, with a warning once.

Each unit has its own `BigIPClient`, so its own token under the existing token rules (at most one live
token per unit, extended before expiry, deleted at exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller import logs
from controller.bigip import ApplyResult, BigIPClient
from controller.clock import Clock, SystemClock
from controller.config import F5Config
from controller.errors import AuthError, BigIPError, NotActiveError
from controller.faults import FaultLog
from controller.model import MemberPlan, PoolRef, PoolState, TokenCounters
from controller.token import TokenManager
from controller.tokenstore import TokenStore

#: cm/failover-status `status` -> cm/device `failoverState`.
STATES = {"ACTIVE": "active", "STANDBY": "standby", "OFFLINE": "offline", "FORCED OFFLINE": "forced-offline"}
UNKNOWN, UNREACHABLE = "unknown", "unreachable"
_UNREADABLE = (401, 403, 404)


@dataclass(frozen=True)
class UnitStatus:
    """Where one configured unit stands: active, standby, offline, forced-offline, unknown or unreachable."""

    host: str
    state: str
    detail: str = ""
    error: BigIPError | None = None


def read_state(client: BigIPClient) -> str:
    """The unit's failover state; UNKNOWN when neither endpoint is readable. Other errors propagate."""
    try:
        reply = client.get("/mgmt/tm/cm/failover-status")
        status = _status(reply)
        if status:
            return STATES.get(status.upper(), status.lower().replace(" ", "-"))
    except BigIPError as exc:
        if not _unreadable(exc):
            raise
    try:
        reply = client.get("/mgmt/tm/cm/device")
    except BigIPError as exc:
        if not _unreadable(exc):
            raise
        return UNKNOWN
    items = reply.get("items", []) if isinstance(reply, dict) else []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and str(item.get("selfDevice", "")).lower() == "true":
            state = item.get("failoverState")
            return str(state).lower() if isinstance(state, str) and state else UNKNOWN
    return UNKNOWN


def _unreadable(exc: BigIPError) -> bool:
    """Not readable by this user or on this version; a failed login is not that (it propagates)."""
    if isinstance(exc, AuthError):
        return "permission denied" in exc.message
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
                 log: Any = None, factory: Callable[..., BigIPClient] = BigIPClient, recheck: float = 0.0,
                 token_store: TokenStore | None = None):
        self.cfg = cfg
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
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"FailoverClient(hosts={list(self.hosts)!r}, active={self.active_host!r})"

    # -- where things stand --------------------------------------------------------------------
    def status(self) -> list[UnitStatus]:
        """Every configured unit's failover state, asked now."""
        out = []
        for host, client in self.units.items():
            try:
                out.append(UnitStatus(host, read_state(client)))
            except BigIPError as exc:
                out.append(UnitStatus(host, UNREACHABLE, str(exc), exc))
        return out

    def active(self, max_age: float = 0.0) -> BigIPClient:
        """The active unit's client, confirmed within `max_age` seconds (0: now); NotActiveError when none is."""
        with self._lock:
            now = self.clock.monotonic()
            if self.active_host is not None and self._confirmed_at is not None and now - self._confirmed_at < max_age:
                return self.units[self.active_host]
            self._confirmed_at = None
            if self.active_host is not None:
                try:
                    if read_state(self.units[self.active_host]) == "active":
                        self._confirmed_at = now
                        return self.units[self.active_host]
                except BigIPError:
                    if len(self.units) == 1:
                        raise  # one host: its own error says more than "no active unit"
            return self._find()

    def _find(self) -> BigIPClient:
        statuses = self.status()
        active = [s.host for s in statuses if s.state == "active"]
        if len(self.units) == 1 and statuses[0].state == UNKNOWN:
            self.faults.fault("bigip:state", "bigip_failover_state_unreadable", host=statuses[0].host,
                              hint="cm/failover-status and cm/device not readable: taken as a standalone unit")
            active = [statuses[0].host]
        if len(self.units) == 1 and statuses[0].error is not None:
            self.active_host = None
            raise statuses[0].error  # one host: its own error (unreachable, login refused) says it best
        if len(active) != 1:
            previous, self.active_host = self.active_host, None
            why = self._why_none(statuses, active)
            self.faults.fault("bigip:active", "bigip_no_active_unit", error=why, previous=previous or "")
            raise NotActiveError(why)
        new = active[0]
        if self.active_host is not None and new != self.active_host:
            self.failovers += 1
            self.log.warning("bigip_failover", from_host=self.active_host, to_host=new,
                             units={s.host: s.state for s in statuses})
        elif not self.faults.clear("bigip:active", "bigip_active_unit", host=new) and self.active_host is None \
                and len(self.units) > 1:
            self.log.info("bigip_active_unit", host=new, units={s.host: s.state for s in statuses})
        self.active_host = new
        self._confirmed_at = self.clock.monotonic()
        return self.units[new]

    @staticmethod
    def _why_none(statuses: Sequence[UnitStatus], active: Sequence[str]) -> str:
        states = ", ".join(f"{s.host} {s.state}" for s in statuses)
        if len(active) > 1:
            return f"{len(active)} units report active ({states}): split brain? nothing read or written"
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

    def version(self) -> str:
        return self._reader().version()

    def whoami(self) -> dict:
        return self._reader().whoami()

    def device_groups(self) -> list[dict]:
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
        self.units[self.hosts[0]].begin_tick(seconds)

    def end_tick(self) -> None:
        self.units[self.hosts[0]].end_tick()

    # -- tokens and lifecycle ------------------------------------------------------------------
    @property
    def tokens(self) -> TokenManager:
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


def connect(cfg: F5Config, *, clock: Clock | None = None, log: Any = None) -> FailoverClient:
    return FailoverClient(cfg, clock=clock, log=log)
