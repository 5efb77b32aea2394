"""The controller's own Prometheus metrics, on a registry of its own (so two instances never clash).

Naming follows the Prometheus conventions: base units (`_seconds`), `_total` on counters (added by
the client), `_ratio` on every 0-1 gauge. Per member, an unknown value removes the series rather than
leaving a stale or made-up number. `process_*` come from a ProcessCollector on this registry.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from controller import __version__
from controller.model import (
    INTERNAL_FAILURES,
    NOT_SCRAPED,
    POOL_RESULTS,
    MemberPlan,
    PoolPlan,
    Reason,
    ScrapeResult,
    TickReport,
    TokenCounters,
)
from controller.policy.shares import shares, unit_scores

PREFIX = "f5lr_"
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BIGIP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCRAPE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # few: one histogram per member
TOKEN_COUNTERS = ("logins", "extensions", "deletions")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")

# (name, help) of the per-member gauges, labelled {pool, member}.
MEMBER_GAUGES: tuple[tuple[str, str], ...] = (
    ("score_ratio", "Member score on the sideband scheduler's 0-1 scale: the S1 value, or the policy weight "
                    "divided by the pool's largest; absent without fresh metrics"),
    ("policy_weight", "The scoring policy's own output for the member (s1: 0-1; balance: a ratio-like weight); "
                      "absent without fresh metrics"),
    ("ratio_weight", "BIG-IP ratio weight of the member at the start of the tick (1-65535)"),
    ("planned_ratio_weight", "BIG-IP ratio weight the controller planned for the member this tick"),
    ("connection_limit", "Connection limit BIG-IP held for the member at the start of the tick (0 = unlimited)"),
    ("planned_connection_limit", "Connection limit the controller planned for the member this tick (0 = unlimited)"),
    ("share_ratio", "Expected share of new connections (0-1): ratio over the sum of the active members' ratios"),
    ("waiting_requests", "Requests waiting in the engine's queue"),
    ("running_requests", "Requests running on the engine"),
    ("kv_usage_ratio", "KV-cache use of the engine (0-1)"),
    ("up", "1 when the member's /metrics were read this tick, 0 when its load is unknown"),
    ("active", "1 when BIG-IP sends the member new traffic (enabled and not down), else 0"),
    ("ttft_seconds", "Measured mean time to first token of the member (seconds), from its engine's TTFT histogram; "
                     "absent where the engine exports none or too few requests finished"),
    ("speed_ratio", "Measured service rate of the member relative to the pool's fastest (0-1), what its ratio "
                    "leaks toward; absent until measured"),
    ("held", "1 when an admin keeps the controller off the member (description 'f5-llm-ratio: hold', "
             "pools[].exclude, or its pool paused), else 0"),
)

# (name, help) of the per-pool figures, labelled {pool}; absent when the pool was not read or no member has the figure.
POOL_GAUGES: tuple[tuple[str, str], ...] = (
    ("waiting_requests", "Average waiting queue over the pool's members with fresh metrics"),
    ("kv_usage_ratio", "Average KV-cache use (0-1) over the pool's members with fresh metrics that export it"),
    ("ready_members", "Active members of the pool whose /metrics were read this tick"),
    ("active_members", "Members of the pool that BIG-IP sends new traffic (enabled and not down)"),
)


def scrape_label(slug: str | None) -> str:
    """A bounded label value from a ScrapeResult.error slug ("timeout", "http-503", ...).

    None is a member that was not scraped; anything that is not a short slug is folded into "other",
    so no error text can ever create unbounded series.
    """
    slug = NOT_SCRAPED if slug is None else slug
    return slug if _SLUG.match(slug) else "other"


#: A hook that sees each iControl REST call that got a reply: (method, HTTP status, seconds until the reply).
RequestHook = Callable[[str, int, float], None]


class FailoverState(Protocol):
    """The HA state of the daemon's BIG-IP client (controller.ltm.failover.FailoverClient)."""

    @property
    def hosts(self) -> tuple[str, ...]: ...  # the configured units

    @property
    def active_host(self) -> str | None: ...  # the unit known to be active; None when none is

    @property
    def failovers(self) -> int: ...  # times the active unit changed while running


class _TokenSource(FailoverState, Protocol):
    """What telemetry reads of the daemon's BIG-IP client."""

    def token_counters(self) -> TokenCounters: ...


class Reconciler(Protocol):
    """What telemetry reads of the daemon's reconciler (controller.loop.reconcile.Reconciler)."""

    @property
    def bigip(self) -> _TokenSource: ...

    @property
    def last_scrapes(self) -> Mapping[str, Mapping[str, ScrapeResult]]: ...  # the last tick's, {pool: {member: result}}


def token_counters(rec: Reconciler) -> dict[str, int]:
    """{"logins": n, "extensions": n, "deletions": n} of a reconciler's BIG-IP client."""
    return asdict(rec.bigip.token_counters())


TICK_RESULTS = ("ok", "blind", "error")


def tick_result(report: TickReport) -> str:
    """ok; blind when the only failures are pools whose members' load could not be read; else error."""
    failures = report.failures
    if not failures:
        return "ok"
    return "blind" if all(o.reason is Reason.BLIND for o in failures) else "error"


def writes_per_pool(report: TickReport) -> dict[str, tuple[int, int]]:
    """{pool: (applied, failed)} for every planned pool, as the reconciler counted them."""
    out = {plan.pool.ref.full_path: (0, 0) for plan in report.plans}
    out.update({path: (applied, failed) for path, applied, failed in report.pool_writes})
    return out


class TokenCollector:
    """BIG-IP token counters read live through a callable.

    A config reload builds a new BIG-IP client whose counters start at 0 again; an offset keeps the
    exported counters monotonic, so rate() sees no spurious reset.
    """

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None
        self._last: dict[str, int] = {}
        self._offset: dict[str, int] = {}
        self._lock = threading.Lock()

    def _monotonic(self, name: str, value: int) -> int:
        with self._lock:
            if value < self._last.get(name, 0):
                self._offset[name] = self._offset.get(name, 0) + self._last[name]
            self._last[name] = value
            return value + self._offset.get(name, 0)

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        try:
            counters = dict(self.source())
        except Exception:  # noqa: BLE001 - a broken source must not break /metrics
            return
        for name in TOKEN_COUNTERS:
            if name in counters:
                c = CounterMetricFamily(f"{PREFIX}bigip_token_{name}", f"BIG-IP token {name} by this process")
                c.add_metric([], self._monotonic(name, int(counters[name])))
                yield c


class FailoverCollector:
    """HA state of the BIG-IP client, read live: with `f5.host` listing a device group's units, the client
    knows which unit is active and counts failovers; a single-host client exports nothing here."""

    def __init__(self) -> None:
        self.source: Callable[[], FailoverState] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        try:
            client = self.source()
            failovers, active = client.failovers, client.active_host
        except Exception:  # noqa: BLE001 - a broken source must not break /metrics
            return
        c = CounterMetricFamily(PREFIX + "bigip_failovers", "Times the active BIG-IP unit changed while running")
        c.add_metric([], failovers)
        yield c
        g = GaugeMetricFamily(PREFIX + "bigip_active_unit_known",
                              "1 when one configured BIG-IP unit is known to be active, 0 when none is (all standby "
                              "or unreachable: nothing is written)")
        g.add_metric([], 1.0 if active else 0.0)
        yield g


class Metrics:
    """Every metric of one controller process, and how a tick report updates them."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        p = PREFIX
        self.tick_duration = Histogram(p + "tick_duration_seconds", "Duration of one reconcile tick", buckets=TICK_BUCKETS, registry=r)
        self.last_success = Gauge(p + "last_success_timestamp_seconds",
                                  "Unix time of the last tick without errors (0 = none since start)", registry=r)
        self.ticks = Counter(p + "ticks", "Reconcile ticks by result: ok, blind (a pool's load unreadable) or error",
                             ["result"], registry=r)
        self.scrape_errors = Counter(p + "scrape_errors", "Member /metrics reads that could not be used, by reason",
                                     ["pool", "member", "reason"], registry=r)
        self.scrape_duration = Histogram(p + "scrape_duration_seconds", "Time to read and parse one member's /metrics",
                                         ["pool", "member"], buckets=SCRAPE_BUCKETS, registry=r)
        self.bigip_writes = Counter(p + "bigip_writes", "Member writes to BIG-IP by result", ["pool", "result"], registry=r)
        self.bigip_request_duration = Histogram(p + "bigip_request_duration_seconds",
                                                "iControl REST call latency until the reply headers, by method and status class",
                                                ["method", "code"], buckets=BIGIP_BUCKETS, registry=r)
        self.last_tick = Gauge(p + "last_tick_timestamp_seconds", "Unix time the last tick completed, whatever became "
                               "of its pools (0 = none since start): the loop is alive", registry=r)
        self.pool_ready = Gauge(p + "pool_ready", "1 when the pool was read, seen and steered in the last tick (/readyz), "
                                "else 0", ["pool"], registry=r)
        self.pool_paused = Gauge(p + "pool_paused", "1 when an admin paused the controller on the pool (its BIG-IP "
                                 "description contains 'f5-llm-ratio: pause'), else 0", ["pool"], registry=r)
        self.pool_ticks = Counter(p + "pool_ticks", "Ticks per pool by result: ok, paused, blind or error",
                                  ["pool", "result"], registry=r)
        self.pool = {name: Gauge(f"{p}pool_{name}", doc, ["pool"], registry=r) for name, doc in POOL_GAUGES}
        self.config_reloads = Counter(p + "config_reloads", "Config reloads (SIGHUP) by result: applied or rejected",
                                      ["result"], registry=r)
        self.pool_up = Gauge(p + "pool_up", "1 when the pool was read from BIG-IP this tick, else 0", ["pool"], registry=r)
        self.pool_blind = Gauge(p + "pool_blind", "1 when the pool was read but no active member had fresh metrics "
                                "this tick (blind: nothing written), else 0", ["pool"], registry=r)
        self.blind_ticks = Gauge(p + "blind_ticks", "Ticks in a row in which at least one pool was blind", registry=r)
        self.dry_run = Gauge(p + "dry_run", "1 when the controller plans but does not write", registry=r)
        self.observe_errors = Counter(p + "telemetry_observe_errors", "Ticks telemetry failed to record (a bug)", registry=r)
        self.member = {name: Gauge(f"{p}member_{name}", doc, ["pool", "member"], registry=r) for name, doc in MEMBER_GAUGES}
        Info(p + "build", "Controller version", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        for result in TICK_RESULTS:
            self.ticks.labels(result)  # present at 0 from the start, so rate() works from tick one
        for result in ("applied", "rejected"):
            self.config_reloads.labels(result)
        self.tokens = TokenCollector()
        r.register(self.tokens)
        self.failover = FailoverCollector()
        r.register(self.failover)
        # The labelled children in use, per gauge: set() through a kept child is 5x cheaper than .labels()
        self._member_series: dict[str, dict[tuple[str, str], Any]] = {name: {} for name, _ in MEMBER_GAUGES}
        self._scrape_series: set[tuple[str, str, str]] = set()
        self._duration_series: set[tuple[str, str]] = set()
        self.pools_seen: set[str] = set()

    # -- one tick --------------------------------------------------------------------------------
    def record(self, report: TickReport, scrapes: Mapping[str, Mapping[str, ScrapeResult]] | None,
               policies: Mapping[str, str], configured: Iterable[str], wall: float) -> None:
        self.tick_duration.observe(max(0.0, report.finished - report.started))
        self.ticks.labels(tick_result(report)).inc()
        self.dry_run.set(1 if report.dry_run else 0)
        if report.ok:
            self.last_success.set(wall)
        present = self._record_members(report, policies)
        self._record_scrapes(report, scrapes)
        self._forget_departed(report, present)
        for path, (applied, failed) in writes_per_pool(report).items():
            self.bigip_writes.labels(path, "applied").inc(applied)
            self.bigip_writes.labels(path, "failed").inc(failed)
        read = {plan.pool.ref.full_path for plan in report.plans}
        for path in (read | set(configured)) - self.pools_seen:
            for result in POOL_RESULTS:
                self.pool_ticks.labels(path, result)  # at 0 from the pool's first tick, so increase() works
        self.pools_seen |= read | set(configured)
        blind = {plan.pool.ref.full_path for plan in report.plans if plan.blind}
        for path in self.pools_seen:
            self.pool_up.labels(path).set(1 if path in read else 0)
            self.pool_blind.labels(path).set(1 if path in blind else 0)
            result = report.pool_result(path)
            self.pool_ready.labels(path).set(1 if result == "ok" else 0)
            self.pool_paused.labels(path).set(1 if result == "paused" else 0)
            self.pool_ticks.labels(path, result).inc()
        if not any(o.reason in INTERNAL_FAILURES for o in report.outcomes):
            self.last_tick.set(wall)
        by_path = {plan.pool.ref.full_path: plan for plan in report.plans}
        for path in self.pools_seen:
            values = pool_values(by_path[path]) if path in by_path else {}
            for name, _ in POOL_GAUGES:
                value = values.get(name)
                if value is None:
                    _remove_quietly(self.pool[name], path)
                else:
                    self.pool[name].labels(path).set(value)

    def _record_members(self, report: TickReport, policies: Mapping[str, str]) -> set[tuple[str, str]]:
        present: set[tuple[str, str]] = set()
        for plan in report.plans:
            path = plan.pool.ref.full_path
            current = shares(plan, planned=False)
            unit = unit_scores(plan, policies.get(path, ""))
            for p in plan.members:
                labels = (path, p.member.key)
                present.add(labels)
                for name, value in member_values(p, current[p.member.key], unit.get(p.member.key)).items():
                    self._put(name, labels, value)
        for name, series in self._member_series.items():  # members that left, or whose pool was not read
            for labels in series.keys() - present:
                self._drop(name, labels)
        return present

    def _put(self, name: str, labels: tuple[str, str], value: float | None) -> None:
        if value is None or not math.isfinite(value):
            self._drop(name, labels)
            return
        children = self._member_series[name]
        child = children.get(labels)
        if child is None:
            child = children[labels] = self.member[name].labels(*labels)
        child.set(value)

    def _drop(self, name: str, labels: tuple[str, str]) -> None:
        if self._member_series[name].pop(labels, None) is not None:
            self.member[name].remove(*labels)

    def _record_scrapes(self, report: TickReport, scrapes: Mapping[str, Mapping[str, ScrapeResult]] | None) -> None:
        if scrapes is not None:
            for pool, results in scrapes.items():
                for key, result in results.items():
                    if result.duration > 0 and not result.carried:  # a carried result was counted when read
                        self.scrape_duration.labels(pool, key).observe(result.duration)
                        self._duration_series.add((pool, key))
                    if not result.ok:
                        self._scrape_error(pool, key, scrape_label(result.error or "unknown"))
            return
        for plan in report.plans:  # no scrape results handed over: the plans' members whose load is unknown
            for p in plan.members:
                if p.action.unknown and p.member.active:
                    self._scrape_error(plan.pool.ref.full_path, p.member.key, scrape_label(p.scrape_error))

    def _scrape_error(self, pool: str, member: str, reason: str) -> None:
        self.scrape_errors.labels(pool, member, reason).inc()
        self._scrape_series.add((pool, member, reason))

    def _forget_departed(self, report: TickReport, present: set[tuple[str, str]]) -> None:
        """A member's scrape series go once it has left a pool that was read (not on a read failure)."""
        read = {plan.pool.ref.full_path for plan in report.plans}
        for series in list(self._scrape_series):
            if series[0] in read and series[:2] not in present:
                self._scrape_series.discard(series)
                self.scrape_errors.remove(*series)
        for labels in list(self._duration_series):
            if labels[0] in read and labels not in present:
                self._duration_series.discard(labels)
                self.scrape_duration.remove(*labels)

    def forget_pool(self, path: str) -> None:
        """Drop every series of a pool that is no longer configured."""
        for result in ("applied", "failed"):
            _remove_quietly(self.bigip_writes, path, result)
        _remove_quietly(self.pool_up, path)
        _remove_quietly(self.pool_blind, path)
        _remove_quietly(self.pool_ready, path)
        _remove_quietly(self.pool_paused, path)
        for result in POOL_RESULTS:
            _remove_quietly(self.pool_ticks, path, result)
        for gauge in self.pool.values():
            _remove_quietly(gauge, path)
        for name, members in self._member_series.items():
            for labels in [s for s in members if s[0] == path]:
                self._drop(name, labels)
        for errors in [s for s in self._scrape_series if s[0] == path]:
            self._scrape_series.discard(errors)
            self.scrape_errors.remove(*errors)
        for labels in [s for s in self._duration_series if s[0] == path]:
            self._duration_series.discard(labels)
            self.scrape_duration.remove(*labels)
        self.pools_seen.discard(path)

    # -- outside a tick --------------------------------------------------------------------------
    def bigip_request(self, method: str, status: int, seconds: float) -> None:
        """One iControl REST call that got a reply (the `BigIP.observe_requests` hook): its latency."""
        try:
            self.bigip_request_duration.labels(method.upper() or "GET", f"{int(status) // 100}xx").observe(max(0.0, seconds))
        except Exception:  # noqa: BLE001 - metrics must never break a BIG-IP call
            pass

    def bigip_response_hook(self, response: Any, *_args: Any, **_kw: Any) -> Any:
        """A requests response hook (for a client handed a session of its own): as `bigip_request`."""
        try:
            self.bigip_request(str(response.request.method or "GET"), int(response.status_code),
                               response.elapsed.total_seconds())
        except Exception:  # noqa: BLE001 - metrics must never break a BIG-IP call
            pass
        return response

    def reloaded(self, applied: bool) -> None:
        self.config_reloads.labels("applied" if applied else "rejected").inc()


def member_values(p: MemberPlan, share: float, unit_score: float | None) -> dict[str, float | None]:
    s = p.sample
    return {
        "score_ratio": unit_score,
        "policy_weight": p.score,
        "ratio_weight": p.member.ratio,
        "planned_ratio_weight": p.ratio,
        "connection_limit": p.member.connection_limit,
        "planned_connection_limit": p.connection_limit,
        "share_ratio": share,
        "waiting_requests": s.waiting if s else None,
        "running_requests": s.running if s else None,
        "kv_usage_ratio": s.kv_usage if s else None,
        "up": 1.0 if s is not None else 0.0,
        "active": 1.0 if p.member.active else 0.0,
        "ttft_seconds": p.ttft,
        "speed_ratio": p.speed,
        "held": 1.0 if p.action.by_admin else 0.0,
    }


def pool_values(plan: PoolPlan) -> dict[str, float | None]:
    """The pool's figures for POOL_GAUGES: averages over the active members with fresh metrics."""
    fresh = [p.sample for p in plan.members if p.sample is not None and p.member.active]
    kv = [s.kv_usage for s in fresh if s.kv_usage is not None]
    return {
        "waiting_requests": sum(s.waiting for s in fresh) / len(fresh) if fresh else None,
        "kv_usage_ratio": sum(kv) / len(kv) if kv else None,
        "ready_members": float(len(fresh)),
        "active_members": float(sum(1 for p in plan.members if p.member.active)),
    }


def _remove_quietly(metric: MetricWrapperBase, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
