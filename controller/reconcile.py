"""One reconcile tick: read BIG-IP, scrape engines, plan, apply only the difference.

Membership is cached for `pool_fetch_interval` to decide *whom* to scrape, but a write is never
computed against the cache: when a plan wants to write, the pool is read again and re-planned
against what BIG-IP holds right now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from controller import planner
from controller.clock import Clock, SystemClock
from controller.config import AppConfig, PoolConfig
from controller.errors import AuthError, BigIPError, NotFoundError, TokenLimitError
from controller.faults import FaultLog
from controller.model import MemberPlan, PoolPlan, PoolRef, PoolState, ScrapeResult, TickReport
from controller.ratelimit import WriteBudget
from controller.scrape import target_for as default_target_for


class BigIP(Protocol):
    def read_pool(self, ref: PoolRef) -> PoolState: ...

    def apply(self, ref: PoolRef, plans: Sequence[MemberPlan]): ...


class Scraper(Protocol):
    def scrape(self, targets: Sequence, deadline: float) -> dict[str, ScrapeResult]: ...


@dataclass
class _Cached:
    state: PoolState
    read_at: float


def _scrape_key(pool: PoolRef, member: str) -> str:
    return f"{pool.full_path}|{member}"


class Reconciler:
    """Holds the observation memory and membership cache; everything else is recomputed each tick."""

    def __init__(
        self,
        cfg: AppConfig,
        bigip: BigIP,
        scraper: Scraper,
        *,
        clock: Clock | None = None,
        dry_run: bool = False,
        log=None,
        target_for: Callable | None = None,
        instance: str = "",
    ):
        self.cfg = cfg
        self.bigip = bigip
        self.scraper = scraper
        self.clock = clock or SystemClock()
        self.dry_run = dry_run
        self.faults = FaultLog(log)
        self.log = self.faults.log
        self.target_for = target_for or default_target_for
        self.instance = instance  # this controller's id, written into GUI notes (see planner.other_owner)
        self._silent: str | None = None  # set when BIG-IP gave no reply at all during the current tick
        self._tick_start = 0.0  # a cached membership read before this may not be written against
        self.budget = WriteBudget(cfg.f5.max_writes_per_minute, self.clock)
        self.memory: dict[str, dict[str, planner.Observation]] = {}
        self.cache: dict[str, _Cached] = {}
        self.last_report: TickReport | None = None
        self.last_scrapes: dict[str, dict[str, ScrapeResult]] = {}  # the last tick's, for telemetry's latency histograms

    # -- reading -------------------------------------------------------------------------------
    def _read(self, ref: PoolRef, errors: list[str]) -> PoolState | None:
        if self._silent is not None:  # BIG-IP did not answer at all this tick: do not wait on it again
            errors.append(f"{ref}: not read: {self._silent}")
            self.cache.pop(ref.full_path, None)
            return None
        try:
            state = self.bigip.read_pool(ref)
        except BigIPError as exc:
            self.faults.fault(f"pool:{ref}", "bigip_read_failed", error=str(exc), pool=str(ref), retryable=exc.retryable)
            errors.append(f"{ref}: {exc}")
            self.cache.pop(ref.full_path, None)
            if exc.retryable and exc.status is None:  # no reply at all (refused, timeout, reset)
                self._silent = "BIG-IP gave no reply earlier in this tick"
            elif isinstance(exc, (AuthError, TokenLimitError)):  # trying again per pool could lock the account
                self._silent = f"login failed earlier in this tick ({type(exc).__name__})"
            return None
        self.faults.clear(f"pool:{ref}", "bigip_read_recovered", pool=str(ref))
        self.cache[ref.full_path] = _Cached(state, self.clock.monotonic())
        return state

    def _membership(self, ref: PoolRef, errors: list[str]) -> PoolState | None:
        cached = self.cache.get(ref.full_path)
        if cached and self.clock.monotonic() - cached.read_at < self.cfg.scheduler.pool_fetch_interval:
            return cached.state
        return self._read(ref, errors)

    # -- scraping ------------------------------------------------------------------------------
    def _scrape(self, states: Mapping[str, tuple[PoolConfig, PoolState]]) -> dict[str, dict[str, ScrapeResult]]:
        targets = []
        for pool_cfg, state in states.values():
            keys = self.cfg.keys_for(pool_cfg.engine_type)
            for m in state.members:
                if m.active:
                    t = self.target_for(m, pool_cfg, keys)
                    targets.append(_rekey(t, _scrape_key(pool_cfg.ref, m.key)))
        results = self.scraper.scrape(targets, self.cfg.scheduler.scrape_deadline) if targets else {}
        out: dict[str, dict[str, ScrapeResult]] = {path: {} for path in states}
        for key, result in results.items():
            path, _, member = key.partition("|")
            out.setdefault(path, {})[member] = result
            self._note_scrape(path, member, result)
        return out

    def _note_scrape(self, pool: str, member: str, result: ScrapeResult) -> None:
        key = f"scrape:{pool}|{member}"
        if result.ok:
            self.faults.clear(key, "scrape_recovered", pool=pool, member=member)
        else:
            self.faults.fault(key, "scrape_failed", pool=pool, member=member, reason=result.error, detail=result.detail)

    # -- planning and writing ------------------------------------------------------------------
    def _plan(self, pool_cfg: PoolConfig, state: PoolState, scrapes) -> tuple[PoolPlan, dict]:
        memory = self.memory.get(pool_cfg.ref.full_path, {})
        return planner.plan_pool(state, scrapes, pool_cfg, memory, self.clock.monotonic(), self.clock.wall(), self.instance)

    def _reconcile_pool(self, pool_cfg: PoolConfig, state: PoolState, scrapes, errors: list[str]) -> tuple[PoolPlan, int, int]:
        plan, memory = self._plan(pool_cfg, state, scrapes)
        if plan.writes and not self.dry_run and self.cache[pool_cfg.ref.full_path].read_at < self._tick_start:
            fresh = self._read(pool_cfg.ref, errors)
            if fresh is None:
                return plan, 0, 0
            plan, memory = self._plan(pool_cfg, fresh, scrapes)
        self.memory[pool_cfg.ref.full_path] = memory
        self._note_owners(pool_cfg.ref, plan)
        if self.dry_run or not plan.writes:
            return plan, 0, 0
        return plan, *self._apply(pool_cfg.ref, plan, errors)

    def _note_owners(self, ref: PoolRef, plan: PoolPlan) -> None:
        """Once per member and owner: another live instance wrote it last, so this one keeps off it."""
        for p in plan.members:
            key = f"owner:{ref}|{p.member.key}"
            if p.action == "owned-by-other":
                owner = planner.note_owner(p.member.description)
                self.faults.fault(key, "owned_by_other_instance", pool=str(ref), member=p.member.key,
                                  owner=owner[0] if owner else "", error=owner[0] if owner else "",
                                  instance=self.instance, reason="owned-by-other", detail=p.reason)
            elif p.member.active:
                self.faults.clear(key, "ownership_released", pool=str(ref), member=p.member.key)

    def _apply(self, ref: PoolRef, plan: PoolPlan, errors: list[str]) -> tuple[int, int]:
        writes = self.budget.take(sorted(plan.writes, key=_urgency, reverse=True))
        if len(writes) < len(plan.writes):
            self.faults.fault(f"budget:{ref}", "write_budget_exhausted", pool=str(ref), deferred=len(plan.writes) - len(writes))
        else:
            self.faults.clear(f"budget:{ref}", "write_budget_recovered", pool=str(ref))
        if not writes:
            return 0, 0
        result = self.bigip.apply(ref, writes)
        by_key = {p.member.key: p for p in writes}
        for key in result.applied:
            self._log_change(ref, by_key[key])
        for key, exc in result.failed:
            self.log.warning("write_failed", pool=str(ref), member=key, error=str(exc))
            errors.append(f"{ref} {key}: {exc}")
            if isinstance(exc, NotFoundError):
                self.cache.pop(ref.full_path, None)  # membership changed under us: re-read next tick
        return len(result.applied), len(result.failed)

    def _log_change(self, ref: PoolRef, p: MemberPlan) -> None:
        s = p.sample
        self.log.info(
            "ratio_changed",
            pool=str(ref),
            member=p.member.key,
            ratio_from=p.member.ratio,
            ratio_to=p.ratio,
            limit_from=p.member.connection_limit,
            limit_to=p.connection_limit,
            action=p.action,
            score=None if p.score is None else round(p.score, 4),
            waiting=None if s is None else s.waiting,
            running=None if s is None else s.running,
            kv=None if s is None else s.kv_usage,
            reason=p.reason,
        )

    # -- the tick ------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        self._tick_start = self.clock.monotonic()
        self._silent = None
        errors: list[str] = []
        states = {}
        for pool_cfg in self.cfg.pools:
            state = self._membership(pool_cfg.ref, errors)
            if state is not None:
                states[pool_cfg.ref.full_path] = (pool_cfg, state)
        scrapes = self.last_scrapes = self._scrape(states)
        plans, writes = [], []
        for path, (pool_cfg, state) in states.items():
            plan, ok, bad = self._reconcile_pool(pool_cfg, state, scrapes.get(path, {}), errors)
            plans.append(plan)
            if ok or bad:
                writes.append((path, ok, bad))
        applied, failed = sum(w[1] for w in writes), sum(w[2] for w in writes)
        report = TickReport(self._tick_start, self.clock.monotonic(), tuple(plans), applied, failed, self.dry_run,
                            tuple(errors), tuple(writes))
        self.last_report = report
        return report


def _urgency(p: MemberPlan) -> int:
    """Under a write cap, the largest corrections go first."""
    return abs(p.ratio - p.member.ratio) + abs(p.connection_limit - p.member.connection_limit)


def _rekey(target, key: str):
    """Scrape results come back keyed by target; make the key unique across pools."""
    return replace(target, member=key)
