"""Models of how LTM picks a pool member for a new connection. Pure: no HTTP, no wall clock.

Two layers:

- **Selectors** (`make_selector(mode)`): given plain `MemberView`s (name, ratio, connection limit, active
  connections, session, state) return the member a new connection goes to, or None when no member is
  eligible. `decide()` adds LTM's queueing rule on top. The traffic benchmark calls these directly.
- **`DataPlane`**: per-pool connection counts, `pick`/`release`, and the connection queue
  (`queueOnConnectionLimit`, `queueDepthLimit`, `queueTimeLimit`) served FIFO as slots free up. Pool
  configuration comes from a `source(pool) -> PoolView` callable: a `PoolTable` for standalone use, or the
  BIG-IP emulator's live state (`BigIPEmulator.dataplane`), so ratios written over REST apply at once.

Eligibility, as LTM: a member whose session is `user-disabled` or whose state is down (`down`,
`user-down`, `forced-down`, `offline`) gets no new connections whatever its ratio; a member with
`connection_limit > 0` that already has that many connections is not eligible. When no member is
eligible but some available member is only at its limit, a pool with `queueOnConnectionLimit` queues
the connection (QUEUED); otherwise it is rejected (None). A ratio below 1 (invalid on BIG-IP) makes the
member ineligible in the ratio modes.

Modelling choices (LTM's exact internals are not published):

- `ratio-member` / `dynamic-ratio-member`: smooth weighted round robin (the nginx algorithm). Over every
  window of sum(ratios) picks each member gets exactly `ratio` picks, interleaved rather than in bursts
  (ratios 3:1 give A A B A, not A A A B). `dynamic-ratio-member` uses the same `ratio` field.
- `ratio-least-connections-member`: the member minimising (connections + 1) / ratio, i.e. its load
  relative to its ratio once it takes this connection; with equal connections the higher ratio wins
  (also at zero connections). Exact ties go round robin. `count_new=False` gives connections / ratio.
- `least-connections-member`: fewest connections, ties round robin.
- `round-robin`: next eligible member after the last pick, in member order.
- `observed-member` / `predictive-member` are approximated by least connections (they need LTM's
  per-second history); `*-node` modes are approximated by their `*-member` counterparts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.model import INACTIVE_SESSIONS, INACTIVE_STATES, groups_in_use

#: `decide` / `DataPlane.pick` result when the connection is held in the pool's queue.
QUEUED = "queued"

Decision = str | None  # a member name, QUEUED, or None (rejected)


@dataclass(slots=True)
class MemberView:
    """What LTM knows about a member at selection time."""

    name: str
    ratio: int = 1
    connection_limit: int = 0  # 0: unlimited
    connections: int = 0
    session: str = "monitor-enabled"
    state: str = "up"
    priority_group: int = 0  # `priorityGroup`: counts when the pool's minActiveMembers > 0

    @property
    def available(self) -> bool:
        """Enabled and not down: may take new connections if under its limit."""
        return self.session not in INACTIVE_SESSIONS and self.state not in INACTIVE_STATES

    @property
    def at_limit(self) -> bool:
        return self.connection_limit > 0 and self.connections >= self.connection_limit

    @property
    def eligible(self) -> bool:
        return self.available and not self.at_limit


def as_view(m: MemberView | Mapping[str, Any]) -> MemberView:
    """Accept a MemberView or a dict using either python or REST field names."""
    if isinstance(m, MemberView):
        return m
    return MemberView(
        name=m["name"],
        ratio=int(m.get("ratio", 1)),
        connection_limit=int(m.get("connection_limit", m.get("connectionLimit", 0))),
        connections=int(m.get("connections", 0)),
        session=m.get("session", "monitor-enabled"),
        state=m.get("state", "up"),
        priority_group=int(m.get("priority_group", m.get("priorityGroup", 0))),
    )


# ---------------------------------------------------------------------------------------------- selectors


class Selector:
    """Base: `pick(members)` returns the chosen member's name or None. Keeps only rotation state."""

    mode = ""
    uses_ratio = False

    def __init__(self) -> None:
        self._cursor = 0

    def _ok(self, m: MemberView) -> bool:
        return m.eligible and (m.ratio >= 1 or not self.uses_ratio)

    def pick(self, members: Sequence[MemberView]) -> str | None:
        raise NotImplementedError

    def reset(self) -> None:
        self._cursor = 0

    def _scan(self, members: Sequence[MemberView], better: Callable[[MemberView, MemberView], bool]) -> str | None:
        """Best eligible member by `better`; exact ties go to the first one at or after the cursor."""
        n = len(members)
        if n == 0:
            return None
        start = self._cursor % n
        best_i = -1
        best: MemberView | None = None
        for k in range(n):
            i = (start + k) % n
            m = members[i]
            if not self._ok(m):
                continue
            if best is None or better(m, best):
                best, best_i = m, i
        if best is None:
            return None
        self._cursor = best_i + 1
        return best.name


class RoundRobin(Selector):
    mode = "round-robin"

    def pick(self, members: Sequence[MemberView]) -> str | None:
        return self._scan(members, lambda a, b: False)


class LeastConnections(Selector):
    mode = "least-connections-member"

    def pick(self, members: Sequence[MemberView]) -> str | None:
        return self._scan(members, lambda a, b: a.connections < b.connections)


class RatioLeastConnections(Selector):
    mode = "ratio-least-connections-member"
    uses_ratio = True

    def __init__(self, count_new: bool = True) -> None:
        super().__init__()
        self.count_new = 1 if count_new else 0

    def pick(self, members: Sequence[MemberView]) -> str | None:
        c = self.count_new
        # (a.conns + c) / a.ratio < (b.conns + c) / b.ratio, without floats
        return self._scan(members, lambda a, b: (a.connections + c) * b.ratio < (b.connections + c) * a.ratio)


class SmoothRatio(Selector):
    """Smooth weighted round robin: each pick, every eligible member's credit grows by its ratio; the
    member with the most credit wins and pays back the total. Ties go to member order."""

    mode = "ratio-member"
    uses_ratio = True

    def __init__(self) -> None:
        super().__init__()
        self._credit: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        self._credit.clear()

    def pick(self, members: Sequence[MemberView]) -> str | None:
        credit = self._credit
        total = 0
        best: str | None = None
        best_credit = 0
        for m in members:
            if not self._ok(m):
                continue
            cur = credit.get(m.name, 0) + m.ratio
            credit[m.name] = cur
            total += m.ratio
            if best is None or cur > best_credit:
                best, best_credit = m.name, cur
        if best is None:
            return None
        credit[best] -= total
        if len(credit) > 2 * len(members) + 8:  # forget members that left the pool
            names = {m.name for m in members}
            for k in [k for k in credit if k not in names]:
                del credit[k]
        return best


_FACTORIES: dict[str, Callable[[], Selector]] = {
    "round-robin": RoundRobin,
    "least-connections-member": LeastConnections,
    "least-connections-node": LeastConnections,
    "observed-member": LeastConnections,
    "observed-node": LeastConnections,
    "predictive-member": LeastConnections,
    "predictive-node": LeastConnections,
    "ratio-member": SmoothRatio,
    "ratio-node": SmoothRatio,
    "dynamic-ratio-member": SmoothRatio,
    "dynamic-ratio-node": SmoothRatio,
    "ratio-session": SmoothRatio,
    "ratio-least-connections-member": RatioLeastConnections,
    "ratio-least-connections-node": RatioLeastConnections,
}

MODES = tuple(_FACTORIES)


def make_selector(mode: str) -> Selector:
    """A fresh selector for a BIG-IP `loadBalancingMode`. Raises ValueError for modes not modelled."""
    try:
        sel = _FACTORIES[mode]()
    except KeyError:
        raise ValueError(f"load balancing mode {mode!r} is not modelled; known: {', '.join(MODES)}") from None
    sel.mode = mode
    return sel


def decide(selector: Selector, members: Sequence[MemberView], queue_on_connection_limit: bool = False) -> Decision:
    """LTM's decision for one new connection: a member name, QUEUED, or None (reset/rejected)."""
    name = selector.pick(members)
    if name is not None:
        return name
    if queue_on_connection_limit and any(
        m.available and m.at_limit and (m.ratio >= 1 or not selector.uses_ratio) for m in members
    ):
        return QUEUED
    return None


# ---------------------------------------------------------------------------------------------- data plane


@dataclass
class PoolView:
    """One pool's configuration as the data plane needs it. Connections in `members` are ignored."""

    mode: str
    members: list[MemberView]
    queue_on_connection_limit: bool = False
    queue_depth_limit: int = 0  # 0: unlimited
    queue_time_limit_ms: int = 0  # 0: unlimited; BIG-IP's queueTimeLimit is in milliseconds
    min_active_members: int = 0  # > 0: priority-group activation (only the groups in use take connections)


def in_use(members: Sequence[MemberView], min_active_members: int) -> Sequence[MemberView]:
    """The members LTM may pick with priority-group activation: those of the groups in use
    (`controller.model.groups_in_use`: highest group first, lower ones added while fewer than
    `min_active_members` members are available). All of them when activation is off."""
    used = groups_in_use(((m.priority_group, m.available) for m in members), min_active_members)
    return members if used is None else [m for m in members if m.priority_group in used]


class PoolTable:
    """A mutable pool registry usable as a DataPlane source when no emulator is involved."""

    def __init__(self) -> None:
        self._pools: dict[str, PoolView] = {}
        self._lock = threading.Lock()

    def set_pool(self, pool: str, mode: str, members: Iterable[MemberView | Mapping[str, Any] | str], *,
                 queue_on_connection_limit: bool = False, queue_depth_limit: int = 0,
                 queue_time_limit_ms: int = 0) -> PoolTable:
        views = [MemberView(m) if isinstance(m, str) else as_view(m) for m in members]
        with self._lock:
            self._pools[pool] = PoolView(mode, views, queue_on_connection_limit, queue_depth_limit,
                                         queue_time_limit_ms)
        return self

    def set_member(self, pool: str, name: str, **changes: Any) -> None:
        """Change `ratio`, `connection_limit`, `session` or `state` of one member."""
        with self._lock:
            for m in self._pools[pool].members:
                if m.name == name:
                    for k, v in changes.items():
                        setattr(m, k, v)
                    return
        raise KeyError(f"{pool}: no member {name}")

    def set_pool_options(self, pool: str, **changes: Any) -> None:
        with self._lock:
            pv = self._pools[pool]
            for k, v in changes.items():
                setattr(pv, k, v)

    def __call__(self, pool: str) -> PoolView:
        with self._lock:
            pv = self._pools[pool]
            return PoolView(pv.mode, [MemberView(m.name, m.ratio, m.connection_limit, 0, m.session, m.state,
                                                 m.priority_group) for m in pv.members],
                            pv.queue_on_connection_limit, pv.queue_depth_limit, pv.queue_time_limit_ms,
                            pv.min_active_members)


@dataclass
class PoolStats:
    picks: Counter[str] = field(default_factory=Counter)  # per member, including connections served from the queue
    queued: int = 0
    dequeued: int = 0
    rejected: int = 0
    expired: int = 0


@dataclass
class _Queued:
    ticket: Any
    since: float


class _Named(Protocol):
    """A pool reference (controller.model.PoolRef): the data plane keys pools by full path."""

    @property
    def full_path(self) -> str: ...


#: A pool, by its full path or by a reference to it.
PoolName = str | _Named


def _key(pool: PoolName) -> str:
    return pool if isinstance(pool, str) else pool.full_path


class DataPlane:
    """Per-pool connection accounting on top of the selectors. Thread-safe.

    `pick(pool, ticket)` returns a member name (the connection is counted), QUEUED (the ticket waits in
    the pool's FIFO queue) or None (rejected: no available member, or the queue is full).
    `release(pool, member)` ends a connection and returns the queued tickets it let through as
    `[(ticket, member)]`. After raising limits or ratios, `drain(pool)` serves what the queue can.
    Queued tickets older than queueTimeLimit are dropped; `expire()` returns them.
    """

    def __init__(self, source: Callable[[str], PoolView] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.table: PoolTable | None = None
        if source is None:
            self.table = PoolTable()
            source = self.table
        self._source = source
        self._clock = clock
        self._lock = threading.RLock()
        self._conns: dict[str, Counter[str]] = {}
        self._queues: dict[str, deque[_Queued]] = {}
        self._selectors: dict[str, Selector] = {}
        self._stats: dict[str, PoolStats] = {}
        self._expired: list[tuple[str, Any]] = []

    # -- internals
    def _view(self, pool: str) -> PoolView:
        pv = self._source(pool)
        conns = self._conns.setdefault(pool, Counter())
        for m in pv.members:
            m.connections = conns.get(m.name, 0)
        return pv

    def _selector(self, pool: str, mode: str) -> Selector:
        sel = self._selectors.get(pool)
        if sel is None or sel.mode != mode:
            sel = self._selectors[pool] = make_selector(mode)
        return sel

    def _stat(self, pool: str) -> PoolStats:
        return self._stats.setdefault(pool, PoolStats())

    def _purge(self, pool: str, pv: PoolView) -> None:
        q = self._queues.get(pool)
        if not q or pv.queue_time_limit_ms <= 0:
            return
        deadline = self._clock() - pv.queue_time_limit_ms / 1000.0
        while q and q[0].since <= deadline:
            self._expired.append((pool, q.popleft().ticket))
            self._stat(pool).expired += 1

    def _drain(self, pool: str, pv: PoolView) -> list[tuple[Any, str]]:
        out: list[tuple[Any, str]] = []
        q = self._queues.get(pool)
        if not q:
            return out
        sel = self._selector(pool, pv.mode)
        conns = self._conns[pool]
        by_name = {m.name: m for m in pv.members}
        serving = in_use(pv.members, pv.min_active_members)
        while q:
            name = sel.pick(serving)
            if name is None:
                break
            item = q.popleft()
            conns[name] += 1
            by_name[name].connections += 1
            st = self._stat(pool)
            st.picks[name] += 1
            st.dequeued += 1
            out.append((item.ticket, name))
        return out

    # -- API
    def pick(self, pool: PoolName, ticket: Any = None) -> Decision:
        pool = _key(pool)
        with self._lock:
            pv = self._view(pool)
            self._purge(pool, pv)
            st = self._stat(pool)
            q = self._queues.setdefault(pool, deque())
            if q and pv.queue_on_connection_limit:
                decision: Decision = QUEUED  # FIFO: nobody overtakes the queue
            else:
                decision = decide(self._selector(pool, pv.mode), in_use(pv.members, pv.min_active_members),
                                  pv.queue_on_connection_limit)
            if decision == QUEUED:
                if pv.queue_depth_limit and len(q) >= pv.queue_depth_limit:
                    st.rejected += 1
                    return None
                q.append(_Queued(ticket, self._clock()))
                st.queued += 1
                return QUEUED
            if decision is None:
                st.rejected += 1
                return None
            self._conns[pool][decision] += 1
            st.picks[decision] += 1
            return decision

    def release(self, pool: PoolName, member: str) -> list[tuple[Any, str]]:
        pool = _key(pool)
        with self._lock:
            conns = self._conns.setdefault(pool, Counter())
            if conns.get(member, 0) > 0:
                conns[member] -= 1
            pv = self._view(pool)
            self._purge(pool, pv)
            return self._drain(pool, pv)

    def drain(self, pool: PoolName) -> list[tuple[Any, str]]:
        pool = _key(pool)
        with self._lock:
            pv = self._view(pool)
            self._purge(pool, pv)
            return self._drain(pool, pv)

    def cancel(self, pool: PoolName, ticket: Any) -> bool:
        """Remove a queued ticket (the client gave up). True if it was queued."""
        pool = _key(pool)
        with self._lock:
            q = self._queues.get(pool)
            if not q:
                return False
            for item in q:
                if item.ticket == ticket:
                    q.remove(item)
                    return True
            return False

    def expire(self, pool: PoolName | None = None) -> list[tuple[str, Any]]:
        """Drop queued tickets past queueTimeLimit; return every (pool, ticket) dropped since the last call."""
        with self._lock:
            pools = [_key(pool)] if pool is not None else list(self._queues)
            for p in pools:
                self._purge(p, self._view(p))
            out, self._expired = self._expired, []
            return out

    def connections(self, pool: PoolName) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self._conns.get(_key(pool), Counter()).items() if v}

    def queue_length(self, pool: PoolName) -> int:
        with self._lock:
            return len(self._queues.get(_key(pool), ()))

    def queued_tickets(self, pool: PoolName) -> list[Any]:
        with self._lock:
            return [i.ticket for i in self._queues.get(_key(pool), ())]

    def stats(self, pool: PoolName) -> PoolStats:
        with self._lock:
            st = self._stat(_key(pool))
            return PoolStats(Counter(st.picks), st.queued, st.dequeued, st.rejected, st.expired)

    def reset(self, pool: PoolName | None = None) -> None:
        """Forget connections, queues, rotation state and stats (of one pool, or all)."""
        with self._lock:
            pools = [_key(pool)] if pool is not None else list(set(self._conns) | set(self._queues) | set(self._stats))
            for p in pools:
                self._conns.pop(p, None)
                self._queues.pop(p, None)
                self._selectors.pop(p, None)
                self._stats.pop(p, None)
