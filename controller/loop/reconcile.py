"""One reconcile tick: read BIG-IP, scrape engines, plan, apply only the difference.

Membership is cached for `pool_fetch_interval` to decide *whom* to scrape, but a write is never
computed against the cache: when a plan wants to write, the pool is read again and re-planned
against what BIG-IP holds right now.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from structlog.typing import FilteringBoundLogger

from controller import model
from controller.clock import Clock, SystemClock
from controller.config.schema import AppConfig, EngineKeys, PoolConfig
from controller.engines.scrape import Target
from controller.engines.scrape import target_for as default_target_for
from controller.errors import AuthError, BigIPError, NotFoundError, TokenLimitError
from controller.faultlog import FaultLog
from controller.loop.ratelimit import WriteBudget
from controller.model import (
    Action,
    Kind,
    Member,
    MemberPlan,
    Outcome,
    PoolPlan,
    PoolRef,
    PoolState,
    Reason,
    ScrapeKey,
    ScrapeResult,
    TickReport,
    TokenCounters,
)
from controller.policy import planner


class ApplyResult(Protocol):
    """What BigIP.apply reports: member keys written, and (member key, error) for those not written."""

    @property
    def applied(self) -> Sequence[str]: ...

    @property
    def failed(self) -> Sequence[tuple[str, BigIPError]]: ...

    @property
    def deferred(self) -> Sequence[str]: ...  # not attempted: an earlier write of the tick timed out


class BigIP(Protocol):
    """Everything the reconciler and the daemon call on the BIG-IP client."""

    def read_pool(self, ref: PoolRef) -> PoolState: ...

    def apply(self, ref: PoolRef, plans: Sequence[MemberPlan]) -> ApplyResult: ...

    def patch_pool(self, ref: PoolRef, fields: Mapping[str, Any]) -> None:
        """PATCH the pool's own `fields` (queueTimeLimit); BigIPError when it was not written."""
        ...

    def begin_tick(self, seconds: float | None = None) -> None: ...  # one budget for the tick's calls (f5.tick_budget)

    def end_tick(self) -> None: ...

    def token_counters(self) -> TokenCounters: ...

    def observe_requests(self, hook: Callable[[str, int, float], None]) -> None:
        """Call `hook(method, status, seconds)` after every iControl REST call that got a reply (telemetry's
        latency histogram). Adding the same hook twice adds it once."""
        ...

    def unit(self) -> str:
        """The BIG-IP unit reads and writes go to now (HA: the active one, confirmed); BigIPError if none."""
        ...

    def close(self) -> None: ...


class Scraper(Protocol):
    """Everything the reconciler and the daemon call on the scraper. Results are keyed by `Target.key`."""

    def scrape(self, targets: Sequence[Target], deadline: float) -> Mapping[ScrapeKey, ScrapeResult]: ...

    def close(self) -> None: ...


class PoolNotes:
    """What the reconciler says about each pool and member, once per cause: the fault log's start and clear
    lines (scrapes, owners, fallback, steerability, write failures), admin holds, hand edits and each change
    written. Holds what that needs to remember: the holds in force and the ratios this instance wrote."""

    def __init__(self, faults: FaultLog, instance: str = ""):
        self.faults = faults
        self.log = faults.log
        self.instance = instance  # this controller's id, as in GUI notes
        # Admin holds in force, {key: event that logged their start}: each is logged once as it starts and stops.
        self.held: dict[str, str] = {}
        # The ratio this instance last wrote to (or, after a logged hand edit, last saw on) each member, per pool:
        # a different ratio read back is a hand edit, logged once (`hand_edit_overwritten`). Memory of what was
        # written decides nothing here; the plan is still made from what BIG-IP holds.
        self.written: dict[str, dict[str, int]] = {}

    def scrape(self, pool: str, member: str, result: ScrapeResult) -> None:
        key = f"scrape:{pool}|{member}"
        if result.ok:
            self.faults.clear(key, "scrape_recovered", pool=pool, member=member)
        else:
            self.faults.fault(key, "scrape_failed", pool=pool, member=member, reason=result.error, detail=result.detail)

    def owners(self, ref: PoolRef, plan: PoolPlan) -> None:
        """Once per member and owner: another live instance wrote it last, so this one keeps off it."""
        for p in plan.members:
            key = f"owner:{ref}|{p.member.key}"
            if p.action is Action.OWNED_BY_OTHER:
                owner = planner.note_owner(p.member.description)
                self.faults.fault(key, "owned_by_other_instance", pool=str(ref), member=p.member.key,
                                  owner=owner[0] if owner else "", error=owner[0] if owner else "",
                                  instance=self.instance, reason=p.action.value, detail=p.reason)
            elif p.member.active:
                self.faults.clear(key, "ownership_released", pool=str(ref), member=p.member.key)

    def fallback(self, ref: PoolRef, plan: PoolPlan) -> None:
        """The sideband's `fallback`, logged when it starts and when it ends, not every tick: a pool left to
        BIG-IP (pool_fallback), a member over a threshold (taking no new connections) and back under it."""
        pool_key = f"fallback:{ref}"
        if plan.note == planner.POOL_FALLBACK_NOTE:
            self.faults.fault(pool_key, "pool_fallback", signature="pool_fallback", pool=str(ref), reason=plan.note)
        else:
            self.faults.clear(pool_key, "pool_fallback_ended", pool=str(ref))
        for p in plan.members:
            key = f"threshold:{ref}|{p.member.key}"
            if p.action is Action.OVER_THRESHOLD:
                self.faults.fault(key, "member_over_threshold", signature="over-threshold", pool=str(ref),
                                  member=p.member.key, reason=p.reason, ratio=p.ratio, connection_limit=p.connection_limit)
            elif p.sample is not None:
                self.faults.clear(key, "member_under_threshold", pool=str(ref), member=p.member.key)

    def admin(self, ref: PoolRef, plan: PoolPlan) -> None:
        """Holds, excludes and pauses: each logged once when it starts and once when it stops."""
        now: dict[str, tuple[str, dict[str, object]]] = {}
        path = ref.full_path
        if plan.paused:
            now[f"pause:{path}"] = ("pool_paused", {"pool": path, "marker": model.PAUSE_MARKER,
                                                    "description": plan.pool.description})
        else:
            for p in plan.members:
                if p.action is Action.HELD:
                    now[f"hold:{path}|{p.member.key}"] = ("member_held", {
                        "pool": path, "member": p.member.key, "marker": model.HOLD_MARKER, "ratio": p.member.ratio,
                        "connection_limit": p.member.connection_limit, "description": p.member.description})
                elif p.action is Action.EXCLUDED:
                    now[f"exclude:{path}|{p.member.key}"] = ("member_excluded", {
                        "pool": path, "member": p.member.key, "ratio": p.member.ratio, "by": "pools[].exclude"})
        present = {p.member.key for p in plan.members}
        for key, (event, fields) in now.items():
            if key not in self.held:
                self.held[key] = event
                self.log.info(event, **fields)
        released = {"pool_paused": "pool_resumed", "member_held": "member_released", "member_excluded": "member_included"}
        for key in [k for k in self.held if k not in now and k.split(":", 1)[1].split("|")[0] == path]:
            member = key.split("|", 1)[1] if "|" in key else None
            if member is not None and plan.paused and member in present:
                continue  # still held; its pool's pause covers it meanwhile
            event = self.held.pop(key)
            if member is not None and member not in present:
                continue  # the member left the pool: nothing to release
            self.log.info(released[event], pool=path, **({"member": member} if member else {}))

    def hand_edits(self, ref: PoolRef, plan: PoolPlan) -> None:
        """A ratio this instance wrote, changed on BIG-IP by someone else: logged once with the old (ours) and
        new (theirs) value and what the controller does about it, so it is not silently undone."""
        written = self.written.setdefault(ref.full_path, {})
        for p in plan.members:
            ours = written.get(p.member.key)
            if ours is None:  # not written by this process: the ratio this instance's own GUI note names, if any
                ours = planner.noted_ratio(p.member.description, self.instance)
            if ours is None or p.member.ratio == ours:
                continue
            written[p.member.key] = p.member.ratio  # logged once per edit
            if p.action.by_admin or p.action is Action.OWNED_BY_OTHER:
                continue  # kept as edited: nothing is overwritten
            self.log.warning("hand_edit_overwritten", pool=ref.full_path, member=p.member.key, field="ratio", old=ours,
                             new=p.member.ratio, planned=p.ratio, action=p.action.value,
                             hint=f"to keep a hand-set ratio, add '{model.HOLD_MARKER}' to the member's description "
                                  "on BIG-IP (or list it in pools[].exclude)")
        for key in [k for k in written if k not in {p.member.key for p in plan.members}]:
            del written[key]

    def steerable(self, pool_cfg: PoolConfig, state: PoolState) -> tuple[Outcome, ...]:
        """A pool whose mode or members let no ratio take effect fails its tick, logged once per cause."""
        problems = [model.mode_problem(state) if pool_cfg.weights.drives_ratio else "", model.fqdn_problem(state)]
        why = "; ".join(p for p in problems if p)
        key = f"steer:{state.ref}"
        if not why:
            self.faults.clear(key, "pool_steerable", pool=str(state.ref), mode=state.load_balancing_mode)
            return ()
        self.faults.fault(key, "pool_not_steerable", pool=str(state.ref), mode=state.load_balancing_mode, reason=why)
        return (Outcome(kind=Kind.POOL, reason=Reason.NOT_STEERABLE, pool=state.ref.full_path, detail=why),)

    def write_failures(self, ref: PoolRef, failed: Sequence[tuple[str, BigIPError]], applied: int) -> None:
        """Write failures go through the fault log, per pool: once when they start (with the first error),
        once when a tick's writes to the pool all land again (with the count of failed writes)."""
        key = f"write:{ref}"
        if failed:
            first_key, first = failed[0]
            self.faults.fault(key, "write_failed", pool=str(ref), member=first_key, error=str(first), failed=len(failed),
                              members=[k for k, _ in failed][:10], count=len(failed),
                              signature=f"{type(first).__name__}|{first.status}")
        elif applied:
            self.faults.clear(key, "write_recovered", pool=str(ref))

    def change(self, ref: PoolRef, p: MemberPlan) -> None:
        """A member written: logged, and its ratio remembered (see hand_edits)."""
        self.written.setdefault(ref.full_path, {})[p.member.key] = p.ratio
        s = p.sample
        self.log.info(
            "ratio_changed",
            pool=str(ref),
            member=p.member.key,
            ratio_from=p.member.ratio,
            ratio_to=p.ratio,
            limit_from=p.member.connection_limit,
            limit_to=p.connection_limit,
            action=p.action.value,
            score=None if p.score is None else round(p.score, 4),
            waiting=None if s is None else s.waiting,
            running=None if s is None else s.running,
            kv=None if s is None else s.kv_usage,
            ttft=None if p.ttft is None else round(p.ttft, 4),
            speed=None if p.speed is None else round(p.speed, 4),
            reason=p.reason,
            **_address(p),
        )


@dataclass
class _Cached:
    state: PoolState
    read_at: float


#: The BIG-IP client a Reconciler drives: the daemon's is a controller.ltm.failover.FailoverClient.
B = TypeVar("B", bound=BigIP)


class Reconciler(Generic[B]):
    """Holds the observation memory and membership cache; everything else is recomputed each tick."""

    def __init__(
        self,
        cfg: AppConfig,
        bigip: B,
        scraper: Scraper,
        *,
        clock: Clock | None = None,
        dry_run: bool = False,
        log: FilteringBoundLogger | None = None,
        target_for: Callable[[Member, PoolConfig, EngineKeys | None], Target] | None = None,
        instance: str = "",
        settle: float = 0.0,
        rng: Callable[[], float] = random.random,
    ):
        self.cfg = cfg
        self.bigip = bigip
        self.scraper = scraper
        self.clock = clock or SystemClock()
        self.dry_run = dry_run
        self.faults = FaultLog(log, clock=self.clock)
        self.log = self.faults.log
        self.target_for = target_for or default_target_for
        self.instance = instance  # this controller's id, written into GUI notes (see planner.other_owner)
        # Two instances started together: before its first write this one waits a random share of `settle`
        # seconds (drawn once, from `rng`), then writes only against a pool read after that wait, so the
        # other's notes, if it wrote first, keep this one off those members (planner.other_owner).
        self.settle = settle
        self.rng = rng
        self.settle_at: float | None = None  # monotonic time the first write may happen; None until drawn
        self._settled = settle <= 0
        self._silent: str | None = None  # set when BIG-IP gave no reply at all during the current tick
        self._tick_start = 0.0  # a cached membership read before this may not be written against
        self._unit: str | None = None  # the BIG-IP unit the cache was read from
        self._carried: dict[str, PoolState] = {}  # after a failover: each pool as the previous active unit held it
        self.budget = WriteBudget(cfg.f5.max_writes_per_minute, self.clock)
        self.memory: dict[str, dict[str, planner.Observation]] = {}
        self.cache: dict[str, _Cached] = {}
        self.last_report: TickReport | None = None
        self.last_scrapes: dict[str, dict[str, ScrapeResult]] = {}  # the last tick's, for telemetry's latency histograms
        self.notes = PoolNotes(self.faults, instance)  # what is logged once per cause, and what that remembers
        self._good: dict[ScrapeKey, ScrapeResult] = {}  # each member's last good scrape (see _scrape)

    # -- reading -------------------------------------------------------------------------------
    def _read(self, ref: PoolRef) -> PoolState | Outcome:
        """The pool as BIG-IP holds it now, or the failed Outcome saying why not."""
        if self._silent is not None:  # BIG-IP did not answer at all this tick: do not wait on it again
            self.cache.pop(ref.full_path, None)
            return Outcome(kind=Kind.POOL, reason=Reason.NOT_READ, pool=ref.full_path, detail=f"not read: {self._silent}")
        try:
            state = self.bigip.read_pool(ref)
        except BigIPError as exc:
            self.faults.fault(f"pool:{ref}", "bigip_read_failed", error=str(exc), pool=str(ref), retryable=exc.retryable,
                              signature=f"{type(exc).__name__}|{exc.status}")  # the text may vary (a deadline's seconds)
            self.cache.pop(ref.full_path, None)
            if exc.retryable and exc.status is None:  # no reply at all (refused, timeout, reset)
                self._silent = "BIG-IP gave no reply earlier in this tick"
            elif isinstance(exc, (AuthError, TokenLimitError)):  # trying again per pool could lock the account
                self._silent = f"login failed earlier in this tick ({type(exc).__name__})"
            return Outcome(kind=Kind.POOL, reason=Reason.READ_FAILED, pool=ref.full_path, detail=str(exc), error=exc)
        self.faults.clear(f"pool:{ref}", "bigip_read_recovered", pool=str(ref))
        self.cache[ref.full_path] = _Cached(state, self.clock.monotonic())
        return state

    def _check_unit(self) -> None:
        """Each tick: which unit is active. After a failover nothing read from the old unit is trusted."""
        try:
            unit = self.bigip.unit()
        except BigIPError as exc:
            self.cache.clear()
            self._unit = None
            self._silent = exc.message
            return
        if unit != self._unit:
            if self._unit is not None:  # a failover: damp from what the old active unit held, not the new one's
                self._carried = {path: c.state for path, c in self.cache.items()}
                self.notes.written.clear()  # the new unit's ratios differ by sync, not by a hand
            self.cache.clear()
            self._unit = unit

    def _membership(self, ref: PoolRef) -> PoolState | Outcome:
        cached = self.cache.get(ref.full_path)
        if cached and self.clock.monotonic() - cached.read_at < self.cfg.scheduler.pool_fetch_interval:
            return cached.state
        return self._read(ref)

    # -- scraping ------------------------------------------------------------------------------
    def _scrape(self, states: Mapping[str, tuple[PoolConfig, PoolState]]) -> dict[str, dict[str, ScrapeResult]]:
        """Scrape every active member, the longest-unscraped first, within the tick's scrape deadline.

        A fleet too large to scrape whole within one tick is scraped in turns: the members the deadline
        left unreached (never sent a request) are the most recently scraped ones, and each of them keeps
        its last good result (`carried`) while that is younger than its pool's `weights.stale_after`, so
        the pool is planned on every member's latest figures and is never blind just because the tick was
        short. A request cut off in flight is the member's own slowness: unknown, as before."""
        targets: list[tuple[float, int, Target]] = []
        stale_after: dict[str, float] = {}
        never = float("-inf")
        for pool_cfg, state in states.values():
            keys = self.cfg.keys_for(pool_cfg.engine_type)
            for i, m in enumerate(m for m in state.members if state.serving(m)):
                target = self.target_for(m, pool_cfg, keys)
                last = self._good.get(target.key)
                # Oldest sample first; among equals (never scraped) the pools take turns, so no pool waits
                # for another to be scraped whole.
                targets.append((last.at if last is not None else never, i, target))
            stale_after[pool_cfg.ref.full_path] = pool_cfg.weights.stale_after
        targets.sort(key=lambda e: e[:2])
        order = [t for _, _, t in targets]
        results = self.scraper.scrape(order, self.cfg.scheduler.scrape_deadline) if order else {}
        now = self.clock.monotonic()
        good: dict[ScrapeKey, ScrapeResult] = {}
        out: dict[str, dict[str, ScrapeResult]] = {path: {} for path in states}
        unreached = 0
        for key, result in results.items():
            last = self._good.get(key)
            if result.ok:
                good[key] = result
            elif not result.reached and last is not None and now - last.at < stale_after.get(key.pool, 0.0):
                good[key] = last
                out.setdefault(key.pool, {})[key.member] = replace(last, carried=True)
                unreached += 1
                continue  # not reached this tick, with a recent sample: not a failure of the member's
                # (a request cut off in flight is: that member was slow, and is unknown as before)
            out.setdefault(key.pool, {})[key.member] = result
            if result.reached:
                self.notes.scrape(key.pool, key.member, result)
            else:
                unreached += 1  # the fleet did not fit the tick: one line for all of them, below
        self._good = good  # members no longer scraped are forgotten
        if unreached:
            self.faults.fault("scrape:turns", "scrape_in_turns", members=len(order), not_reached=unreached,
                              deadline_seconds=self.cfg.scheduler.scrape_deadline,
                              reason="more members than one tick's scrape deadline reaches: the longest-unscraped "
                                     "go first, the rest keep their last sample (up to weights.stale_after)")
        else:
            self.faults.clear("scrape:turns", "scrape_all_in_one_tick", members=len(order))
        return out

    # -- planning and writing ------------------------------------------------------------------
    def _plan(self, pool_cfg: PoolConfig, state: PoolState,
              scrapes: Mapping[str, ScrapeResult]) -> tuple[PoolPlan, dict[str, planner.Observation]]:
        memory = self.memory.get(pool_cfg.ref.full_path, {})
        carried = self._carried.get(pool_cfg.ref.full_path)
        basis = _rebase(state, carried) if carried is not None else state
        plan, observed = planner.plan_pool(basis, scrapes, pool_cfg, memory, self.clock.monotonic(), self.clock.wall(),
                                           self.instance)
        return (_onto(plan, state) if carried is not None else plan), observed

    def _reconcile_pool(
        self, pool_cfg: PoolConfig, state: PoolState, scrapes: Mapping[str, ScrapeResult]
    ) -> tuple[PoolPlan, tuple[Outcome, ...]]:
        """The pool's plan and what became of it: a failed re-read, or one Outcome per member written."""
        plan, memory = self._plan(pool_cfg, state, scrapes)
        cached_before_tick = self.cache[pool_cfg.ref.full_path].read_at < self._tick_start
        # The first write (after the settle delay) is planned on a read made just now, after the scrapes:
        # the shorter the gap from this read to the write, the smaller the window two instances can share.
        wants = bool(plan.writes or plan.pool_changes)
        if wants and not self.dry_run and self._may_write_yet() and (cached_before_tick or not self._settled):
            fresh = self._read(pool_cfg.ref)
            if isinstance(fresh, Outcome):
                return plan, (fresh,)
            plan, memory = self._plan(pool_cfg, fresh, scrapes)
        self.memory[pool_cfg.ref.full_path] = memory
        self._carried.pop(pool_cfg.ref.full_path, None)
        self.notes.owners(pool_cfg.ref, plan)
        self.notes.fallback(pool_cfg.ref, plan)
        self.notes.admin(pool_cfg.ref, plan)
        if not self.dry_run:  # a dry run overwrites nothing
            self.notes.hand_edits(pool_cfg.ref, plan)
        if self.dry_run or not (plan.writes or plan.pool_changes) or not self._may_write_yet():
            return plan, ()
        done = self._apply(pool_cfg.ref, plan) if plan.writes else ()
        return plan, done + self._apply_pool(pool_cfg.ref, plan)

    def _apply_pool(self, ref: PoolRef, plan: PoolPlan) -> tuple[Outcome, ...]:
        """The pool's own setting (queueTimeLimit, the opt-in goodput mode): one PATCH when it differs from
        what BIG-IP holds, within the write budget (a change the budget has no room for waits a tick)."""
        changes = plan.pool_changes
        if not changes or not self.budget.take([changes]):
            if changes:
                self.faults.fault(f"budget:{ref}", "write_budget_exhausted", pool=str(ref), deferred=1)
            return ()
        before = {"queueTimeLimit": plan.pool.queue_time_limit_ms}
        try:
            self.bigip.patch_pool(ref, changes)
        except BigIPError as exc:
            self.faults.fault(f"setting:{ref}", "pool_setting_write_failed", pool=str(ref), error=str(exc),
                              fields=sorted(changes), signature=f"{type(exc).__name__}|{exc.status}")
            return (Outcome(kind=Kind.SETTING, reason=Reason.WRITE_FAILED, pool=ref.full_path, member="",
                            detail=f"queueTimeLimit not written: {exc}", error=exc),)
        self.faults.clear(f"setting:{ref}", "pool_setting_write_recovered", pool=str(ref))
        for field, value in changes.items():
            self.log.info("pool_setting_changed", pool=str(ref), field=field, value_from=before.get(field),
                          value_to=value, reason=plan.queue_note)
        return (Outcome(kind=Kind.SETTING, reason=Reason.APPLIED, pool=ref.full_path,
                        detail=f"queueTimeLimit {before['queueTimeLimit']} -> {changes['queueTimeLimit']} ms"),)

    def arm_settle(self, seconds: float) -> None:
        """Wait a random share of `seconds` (drawn at the next tick) before this instance's first write."""
        self.settle, self.settle_at, self._settled = seconds, None, seconds <= 0

    def _draw_settle(self) -> None:
        """At the first tick: when the first write may happen (this tick's start + a random delay)."""
        if self._settled or self.settle_at is not None:
            return
        delay = max(0.0, min(1.0, self.rng())) * self.settle
        self.settle_at = self._tick_start + delay
        self.log.info("first_write_settling", delay_seconds=round(delay, 3), max_seconds=self.settle,
                      instance=self.instance)

    def _may_write_yet(self) -> bool:
        """False until the settle delay before this instance's first write has passed.

        Ticks that start before `settle_at` write nothing (not a failure: nothing is wrong). A tick that
        starts at or after it writes only against a pool read in that tick (see _reconcile_pool), i.e.
        after the delay, so the notes another instance wrote meanwhile keep this one off those members.
        The delay runs from the first tick, so a start into a BIG-IP outage does not delay the first write
        after the outage.
        """
        return self._settled or (self.settle_at is not None and self._tick_start >= self.settle_at)

    @property
    def settling(self) -> bool:
        """Waiting out the settle delay before the first write (settle_at says until when)."""
        return not self._settled and self.settle_at is not None

    def _apply(self, ref: PoolRef, plan: PoolPlan) -> tuple[Outcome, ...]:
        writes = self.budget.take(sorted(plan.writes, key=_urgency, reverse=True))
        if len(writes) < len(plan.writes):
            self.faults.fault(f"budget:{ref}", "write_budget_exhausted", pool=str(ref), deferred=len(plan.writes) - len(writes))
        else:
            self.faults.clear(f"budget:{ref}", "write_budget_recovered", pool=str(ref))
        if not writes:
            return ()
        result = self.bigip.apply(ref, writes)
        by_key = {p.member.key: p for p in writes}
        outcomes = []
        for key in result.applied:
            self.notes.change(ref, by_key[key])
            outcomes.append(Outcome(kind=Kind.MEMBER, reason=Reason.APPLIED, pool=ref.full_path, member=key))
        for key in result.deferred:  # an earlier write timed out: this one waits for the next tick
            outcomes.append(Outcome(kind=Kind.MEMBER, reason=Reason.WRITE_DEFERRED, pool=ref.full_path, member=key,
                                    detail="not attempted: an earlier write in this tick timed out"))
        self.notes.write_failures(ref, result.failed, len(result.applied))
        for key, exc in result.failed:
            outcomes.append(Outcome(kind=Kind.MEMBER, reason=Reason.WRITE_FAILED, pool=ref.full_path, member=key,
                                    detail=str(exc), error=exc))
            if isinstance(exc, NotFoundError):
                self.cache.pop(ref.full_path, None)  # membership changed under us: re-read next tick
        return tuple(outcomes)

    # -- the tick ------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        self.bigip.begin_tick()  # one budget for all of this tick's BIG-IP calls (f5.tick_budget)
        try:
            return self._tick()
        finally:
            self.bigip.end_tick()

    def _tick(self) -> TickReport:
        self._tick_start = self.clock.monotonic()
        self._silent = None
        self._draw_settle()
        self._check_unit()
        outcomes: list[Outcome] = []
        states = {}
        for pool_cfg in self.cfg.pools:
            state = self._membership(pool_cfg.ref)
            if isinstance(state, Outcome):
                outcomes.append(state)
            else:
                states[pool_cfg.ref.full_path] = (pool_cfg, state)
        scrapes = self.last_scrapes = self._scrape(states)
        plans = []
        for path, (pool_cfg, state) in states.items():
            plan, done = self._reconcile_pool(pool_cfg, state, scrapes.get(path, {}))
            plans.append(plan)
            if not any(o.kind is Kind.POOL for o in done):  # a failed re-read speaks for the pool itself
                outcomes.append(_read_outcome(plan, path))
                if not plan.paused:  # a paused pool is written nothing, whatever its mode
                    outcomes += self.notes.steerable(pool_cfg, plan.pool)
            outcomes += done
        self._settled = self._may_write_yet()
        report = TickReport(started=self._tick_start, finished=self.clock.monotonic(), plans=tuple(plans),
                            outcomes=tuple(outcomes), dry_run=self.dry_run)
        self.last_report = report
        return report


def _read_outcome(plan: PoolPlan, path: str) -> Outcome:
    """READ; PAUSED when an admin paused the pool; BLIND when no active member had fresh metrics: the pool
    was read but not seen, so not ok."""
    if plan.paused:
        return Outcome(kind=Kind.POOL, reason=Reason.PAUSED, pool=path,
                       detail=f"paused: the pool's BIG-IP description contains '{model.PAUSE_MARKER}'; nothing written")
    if plan.blind:
        return Outcome(kind=Kind.POOL, reason=Reason.BLIND, pool=path,
                       detail="blind: no active member has fresh metrics; nothing written")
    return Outcome(kind=Kind.POOL, reason=Reason.READ, pool=path)


def _address(p: MemberPlan) -> dict[str, str]:
    """The member's address for a log line, where its name (as BIG-IP shows it) does not say it."""
    return {"address": p.member.address} if p.member.display != p.member.name else {}


def _rebase(state: PoolState, carried: PoolState) -> PoolState:
    """`state` (read from the new active unit) with the ratios and limits the previous active unit held.

    Until the failover, traffic was steered by those; the new unit's own values are whatever it held at
    its last sync. Damping from them would take several ticks to converge; from these it takes one."""
    old = {m.key: m for m in carried.members}
    members = tuple(replace(m, ratio=old[m.key].ratio, connection_limit=old[m.key].connection_limit)
                    if m.key in old else m for m in state.members)
    return replace(state, members=members)


def _onto(plan: PoolPlan, actual: PoolState) -> PoolPlan:
    """A plan made on a rebased state, diffed against what the unit really holds (still only what it accepts)."""
    by_key = {m.key: m for m in actual.members}
    out = []
    for p in plan.members:
        m = by_key.get(p.member.key, p.member)
        moved = replace(p, member=m)
        if moved.changes and not p.changes:
            moved = replace(moved, action=Action.WRITE, reason=f"{p.reason}; restoring the previous active unit's "
                                                               "setting after a failover")
        out.append(planner.writable(moved, actual.honours_ratio))
    return replace(plan, pool=actual, members=tuple(out))


def _urgency(p: MemberPlan) -> int:
    """Under a write cap, the largest corrections go first."""
    return abs(p.ratio - p.member.ratio) + abs(p.connection_limit - p.member.connection_limit)

