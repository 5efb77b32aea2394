"""The emulator's state and clock, shared by every mixin (pools, faults, HA, serving)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from controller.sim import tls
from controller.sim.bigip.state import Fault, LoggedRequest, Node, Pool, Token, Transaction, Write
from controller.sim.dataplane import PoolName

_USER_NS = uuid.UUID("0b9f6e4e-8f1a-4c55-9f7e-8d1c2a3b4c5d")
FAILOVER_STATES = ("active", "standby", "offline", "forced-offline")


@runtime_checkable
class Monotonic(Protocol):
    """A clock the emulator can run on (controller.clock.FakeClock, SystemClock)."""

    def monotonic(self) -> float: ...


@runtime_checkable
class Walled(Monotonic, Protocol):
    """... that also tells the wall time (token expiry dates follow it)."""

    def wall(self) -> float: ...


class EmulatorCore:
    """State, knobs and clock of one emulated BIG-IP unit. Everything here is guarded by `_lock`."""

    def __init__(self, users: dict[str, str] | None = None, *,
                 version: str = "17.1.1", build: str = "0.0.2", hostname: str = "bigip1.example.com",
                 token_timeout: int = 1200, token_limit: int = 100, token_limit_exempt: Sequence[str] = (),
                 transaction_timeout: int = 120, max_ratio: int = 65535,
                 roles: dict[str, str] | None = None, user_ids: dict[str, str] | None = None,
                 clock: Monotonic | Callable[[], float] | None = None, latency: float | Callable[[], float] = 0.0,
                 cert_dir: str | None = None, trans_id_start: int | None = None,
                 management_ip: str = "127.0.0.1"):
        self.users: dict[str, str] = dict(users if users is not None else {"admin": "admin"})
        self.roles: dict[str, str] = dict(roles or {})  # user -> role; users not listed are "admin"
        self.user_ids: dict[str, str] = dict(user_ids or {})
        #: user -> status (401, 403 or 404) with which /mgmt/tm/cm/* is refused to that user (Auditor: 401)
        self.cm_refusals: dict[str, int] = {}
        self.cm_refusal_plain = False  # a 401 on cm/* says just "Unauthorized" instead of F5's "Authorization failed"
        self.version = version
        self.build = build
        self.hostname = hostname
        self.management_ip = management_ip
        # knobs (plain attributes: safe to set from any thread)
        self.token_timeout = token_timeout
        self.token_limit = token_limit
        self.token_limit_exempt = set(token_limit_exempt)
        self.transaction_timeout = transaction_timeout
        self.max_ratio = max_ratio
        self.latency = latency
        self.down = False
        self.expired_token_retention = 3600.0  # expired tokens answer "has expired" this long, then "does not exist"
        #: What GET /mgmt/shared/appsvcs/declare answers; None: AS3 not installed (404).
        self.as3_declaration: dict[str, Any] | None = None
        # clock: a callable, or an object with monotonic() (and optionally wall()), e.g. controller.clock.FakeClock
        self._mono: Callable[[], float] = time.monotonic
        self._wall_fn: Callable[[], float] | None = None
        if isinstance(clock, Walled):
            self._mono, self._wall_fn = clock.monotonic, clock.wall
        elif isinstance(clock, Monotonic):
            self._mono = clock.monotonic
        elif clock is not None:
            self._mono = clock
        self._mono0 = self._mono()
        self._wall0 = time.time()

        self._lock = threading.RLock()
        self._pools: dict[str, Pool] = {}
        self._nodes: dict[str, Node] = {}
        self._tokens: dict[str, Token] = {}
        self._transactions: dict[int, Transaction] = {}
        self._faults: list[Fault] = []
        self._generation = 100
        self._op_id = 1000
        self._next_trans = trans_id_start
        self._device_groups: list[dict[str, Any]] = [
            {"name": "datasync-global-dg", "type": "sync-only", "autoSync": "enabled"},
            {"name": "device_trust_group", "type": "sync-only", "autoSync": "enabled"},
        ]
        # HA: a standalone unit is active; ha.pair() links units and sets their roles
        self.failover_state = "active"
        self.failover_since = self._mono0
        self.peers: list[Any] = []  # other BigIPEmulator units of the same device group
        #: floating traffic group -> this unit's state for it ("active", "standby"); None: traffic-group-1
        #: follows `failover_state` (active/standby). HAPair.set_active_active sets it.
        self.traffic_groups: dict[str, str] | None = None
        self.sync_pending = False  # a change not yet synced (auto-sync off)
        self._sync_due = False  # a REST write happened; push to peers after the request
        self.writes: list[Write] = []
        self.request_log: list[LoggedRequest] = []
        self.logins = 0
        self.failed_logins = 0
        self.commits = 0  # config changes: one per applied write outside a transaction, one per commit
        # HTTPS
        self._cert_dir = cert_dir
        self._certs: tls.CertPair | None = None
        self.base_url: str | None = None

    # -- time -----------------------------------------------------------------------------------
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

    def _next_op(self) -> int:
        with self._lock:
            self._op_id += 1
            return self._op_id

    @property
    def generation(self) -> int:
        return self._generation

    def _link(self, path: str, ver: bool = True) -> str:
        return "https://localhost" + path + (f"?ver={self.version}" if ver else "")

    # -- users ----------------------------------------------------------------------------------
    def user_id(self, user: str) -> str:
        return self.user_ids.get(user) or str(uuid.uuid5(_USER_NS, user))

    def role(self, user: str) -> str:
        return self.roles.get(user, "admin")

    def deny_cm(self, user: str, status: int = 401, plain: bool = False) -> None:
        """Refuse /mgmt/tm/cm/* to `user` with `status` (401, 403 or 404), as restricted accounts are refused.
        `plain`: a 401 body that says only "Unauthorized" (not F5's "Authorization failed: user=...")."""
        if status not in (401, 403, 404):
            raise ValueError(f"status {status}: expected 401, 403 or 404")
        self.cm_refusals[user] = status
        self.cm_refusal_plain = plain

    # -- logs -----------------------------------------------------------------------------------
    def _record(self, w: Write) -> None:
        self.writes.append(w)
        self._sync_due = True
        if w.trans_id is None:
            self.commits += 1

    def clear_logs(self) -> None:
        with self._lock:
            self.writes.clear()
            self.request_log.clear()

    def _pool_key(self, pool: PoolName) -> str:
        full_path = pool if isinstance(pool, str) else pool.full_path
        if not full_path.startswith("/"):
            full_path = "/Common/" + full_path
        return full_path
