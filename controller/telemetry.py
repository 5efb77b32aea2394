"""What SREs see of the controller: Prometheus /metrics, /healthz and a /status JSON page.

Everything is derived from the `TickReport` each tick hands to `observe()`, so telemetry can never
disagree with what the reconciler actually saw and did. The HTTP server only reads a snapshot;
nothing it does can slow down or break a tick, and nothing a tick does can kill the server.

Endpoints (GET; HEAD gives the same status without a body):

    /metrics          Prometheus text (OpenMetrics when asked), from this instance's own registry
    /healthz          200 when a successful tick finished within `health_ticks` tick intervals, else 503
    /status           pools, members, scores, ratios and expected traffic shares as JSON; the field
                      names of the sideband scheduler's `/pools/status` are kept, ours are added
    /health, /pools/status   aliases of the two above, so the scheduler's existing monitors keep working

Secrets: a TickReport holds none, and the free text that reaches /status (plan reasons, tick errors)
is passed through the process-wide log redactor as well, as a second line of defence.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from controller import __version__, logs
from controller.clock import Clock, SystemClock
from controller.config import AppConfig, TelemetryConfig
from controller.errors import ConfigError
from controller.model import NOT_SCRAPED, MemberPlan, Outcome, PoolPlan, ScrapeResult, TickReport, TokenCounters

PREFIX = "f5lr_"
SYSTEM_CLOCK = SystemClock()  # stateless; shared as the default clock
DEFAULT_HEALTH_TICKS = 3
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_COUNTERS = ("logins", "extensions", "deletions")
MAX_ERRORS_SHOWN = 20  # /status and /healthz stay small even when every member of every pool fails
HANDLER_TIMEOUT = 10.0  # seconds a slow client may hold a server thread

# A scrape error reason becomes a label value, so it must stay a short slug from a small set.
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_JSON = "application/json; charset=utf-8"

# (name, help) of the per-member gauges, labelled {pool, member}. An unknown value removes the
# series rather than leaving a stale or made-up number.
_MEMBER_GAUGES: tuple[tuple[str, str], ...] = (
    ("score", "Score of the member this tick (0..1); absent without fresh metrics"),
    ("ratio", "Ratio BIG-IP held for the member at the start of the tick"),
    ("planned_ratio", "Ratio the controller planned for the member this tick"),
    ("connection_limit", "Connection limit BIG-IP held for the member (0 = unlimited)"),
    ("share", "Expected share of new traffic (0..1): ratio / sum of ratios of active members"),
    ("waiting", "Requests waiting in the engine's queue"),
    ("running", "Requests running on the engine"),
    ("kv_usage", "KV cache usage of the engine (0..1)"),
    ("up", "1 when the member's /metrics were read this tick, 0 when its load is unknown"),
    ("active", "1 when BIG-IP sends the member new traffic (enabled and not down), else 0"),
)


# -- pure helpers ------------------------------------------------------------------------------

class _TokenSource(Protocol):
    def token_counters(self) -> TokenCounters: ...


class _Reconciler(Protocol):
    @property
    def bigip(self) -> _TokenSource: ...


class Observed(Protocol):
    """What `attach` reads of a Daemon: its config and reconciler (both replaced by a reload) and its tick hooks."""

    @property
    def cfg(self) -> AppConfig: ...

    @property
    def rec(self) -> _Reconciler: ...

    @property
    def on_tick(self) -> list[Callable[[TickReport], None]]: ...


def scrape_label(slug: str | None) -> str:
    """A bounded label value from a ScrapeResult.error slug ("timeout", "http-503", ...).

    None is a member that was not scraped; anything that is not a short slug is folded into "other",
    so no error text can ever create unbounded series.
    """
    slug = NOT_SCRAPED if slug is None else slug
    return slug if _SLUG.match(slug) else "other"


def engine_types(cfg: AppConfig) -> dict[str, str]:
    """{pool full path: engine_type} from an AppConfig, for `Telemetry.set_pools`."""
    return {p.ref.full_path: p.engine_type for p in cfg.pools}


def token_counters(rec: _Reconciler) -> dict[str, int]:
    """{"logins": n, "extensions": n, "deletions": n} of a reconciler's BIG-IP client."""
    return asdict(rec.bigip.token_counters())


def shares(plan: PoolPlan, planned: bool = True) -> dict[str, float]:
    """Expected share of new connections per member: ratio / sum of ratios of active members.

    Pools whose LB mode ignores ratios (round robin, least connections, ...) are shown as an even
    split among active members: there the ratio has no say, so ratio-based shares would mislead.
    """
    active = [p for p in plan.members if p.member.active]
    weights = {p.member.key: float(p.ratio if planned else p.member.ratio) for p in active}
    if not plan.pool.honours_ratio:
        weights = {k: 1.0 for k in weights}
    total = sum(w for w in weights.values() if w > 0)
    return {p.member.key: (weights.get(p.member.key, 0.0) / total if total > 0 else 0.0) for p in plan.members}


def writes_per_pool(report: TickReport) -> dict[str, tuple[int, int]]:
    """{pool: (applied, failed)} for every planned pool, as the reconciler counted them."""
    out = {plan.pool.ref.full_path: (0, 0) for plan in report.plans}
    out.update({path: (applied, failed) for path, applied, failed in report.pool_writes})
    return out


def _num(value: float | None, digits: int = 4) -> float | None:
    """JSON-safe number: NaN/inf become null (json.dumps would emit invalid JSON otherwise)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


def _scrub(text: str) -> str:
    """Known secrets, token URLs and URL credentials out of free text bound for /status."""
    return logs.REDACTOR.scrub(text or "")


def _split_path(full_path: str) -> tuple[str, str]:
    parts = full_path.strip("/").split("/")
    return (parts[0] if len(parts) > 1 else "Common"), parts[-1]


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


# -- JSON views --------------------------------------------------------------------------------

def member_view(p: MemberPlan, share: float, planned_share: float) -> dict:
    """One member as /status shows it; the seed's fields (ip, port, score, metrics) come first."""
    m, s = p.member, p.sample
    return {
        "ip": m.scrape_host.strip("[]"),
        "port": m.port,
        "score": _num(p.score),
        "metrics": {
            "waiting_queue": _num(s.waiting) if s else None,
            "cache_usage": _num(s.kv_usage) if s else None,
            "running": _num(s.running) if s else None,
        },
        "name": m.name,
        "session": m.session,
        "state": m.state,
        "active": m.active,
        "up": s is not None,
        "engine": (s.engine or None) if s else None,
        "ratio": m.ratio,
        "planned_ratio": p.ratio,
        "connection_limit": m.connection_limit,
        "planned_connection_limit": p.connection_limit,
        "share": _num(share, 6),
        "planned_share": _num(planned_share, 6),
        "action": p.action.value,
        "reason": _scrub(p.reason),
        "speed": {"value": _num(p.speed), "source": p.speed_source or None},
    }


def pool_view(plan: PoolPlan, engine_type: str) -> dict:
    ref, pool = plan.pool.ref, plan.pool
    current, planned = shares(plan, planned=False), shares(plan, planned=True)
    members = [member_view(p, current[p.member.key], planned[p.member.key]) for p in plan.members]
    return {
        "name": ref.name,
        "partition": ref.partition,
        "engine_type": engine_type,
        "member_count": len(members),
        "members": members,
        "full_path": ref.full_path,
        "load_balancing_mode": pool.load_balancing_mode,
        "honours_ratio": pool.honours_ratio,
        "neutral": plan.neutral or None,
        "active_member_count": sum(1 for p in plan.members if p.member.active),
        "fresh_member_count": sum(1 for p in plan.members if p.sample is not None),
        "note": _scrub(plan.note),
    }


def missing_pool_view(full_path: str, engine_type: str, outcome: Outcome | None) -> dict:
    """A configured pool the tick could not read: listed, empty, with the reason."""
    partition, name = _split_path(full_path)
    why = outcome.message if outcome is not None and outcome.failed else "not read this tick"
    return {
        "name": name,
        "partition": partition,
        "engine_type": engine_type,
        "member_count": 0,
        "members": [],
        "full_path": full_path,
        "error": _scrub(why),
    }


# -- custom collectors (values computed at scrape time) ----------------------------------------

class _SinceLastSuccess:
    """Seconds since the last successful tick; before the first one, seconds since start-up,
    so an alert on this gauge also fires for a daemon that never succeeds."""

    def __init__(self, telemetry: Telemetry):
        self.t = telemetry

    def collect(self):
        g = GaugeMetricFamily(PREFIX + "seconds_since_last_success", "Seconds since the last tick without errors")
        g.add_metric([], self.t.seconds_since_success())
        yield g


class _TokenCollector:
    """BIG-IP token counters read live from the TokenManager through a callable.

    A config reload builds a new BIG-IP client whose counters start at 0 again; an offset keeps the
    exported counters monotonic, so rate() sees no spurious reset (best effort: a drop is noticed
    only if the new client's count is still below the old one at the next scrape).
    """

    def __init__(self):
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

    def collect(self):
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


# -- the telemetry object ----------------------------------------------------------------------

class Telemetry:
    """Metrics registry, tick snapshot and HTTP server of one controller process."""

    poll_interval = 0.5  # seconds serve_forever may take to notice stop(); tests lower it

    def __init__(
        self,
        cfg: TelemetryConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        tick_seconds: float,
        engine_types: Mapping[str, str] | None = None,
        token_source: Callable[[], Mapping[str, int]] | None = None,
        health_ticks: int = DEFAULT_HEALTH_TICKS,
    ):
        self.cfg = cfg
        self.clock = clock
        self.tick_seconds = float(tick_seconds)
        self.health_ticks = health_ticks
        self.log = logs.get()
        self.registry = CollectorRegistry(auto_describe=True)  # our own: no clash between instances
        self._lock = threading.RLock()  # one observe() at a time; /metrics sees a whole tick
        self._started_mono = clock.monotonic()
        self._last_ok_mono: float | None = None
        self._last_ok_wall: float | None = None
        self._last_tick: dict | None = None
        self._pools_views: list[dict] = []
        self._dry_run = False
        self._engine_types: dict[str, str] = dict(engine_types or {})
        self._member_series: dict[str, set[tuple[str, str]]] = {name: set() for name, _ in _MEMBER_GAUGES}
        self._scrape_series: set[tuple[str, str, str]] = set()
        self._pools_seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._define_metrics()
        self.set_token_source(token_source)

    # -- metric definitions ----------------------------------------------------------------
    def _define_metrics(self) -> None:
        r, p = self.registry, PREFIX
        self.tick_duration = Histogram(p + "tick_duration_seconds", "Duration of one reconcile tick", buckets=TICK_BUCKETS, registry=r)
        self.last_success = Gauge(p + "last_success_timestamp_seconds", "Unix time of the last tick without errors (0 = never)", registry=r)
        self.ticks = Counter(p + "ticks", "Reconcile ticks by result", ["result"], registry=r)
        self.scrape_errors = Counter(
            p + "scrape_errors", "Members whose /metrics could not be used, per tick", ["pool", "member", "reason"], registry=r
        )
        self.bigip_writes = Counter(p + "bigip_writes", "Member writes to BIG-IP by result", ["pool", "result"], registry=r)
        self.pool_up = Gauge(p + "pool_up", "1 when the pool was read from BIG-IP this tick, else 0", ["pool"], registry=r)
        self.dry_run_gauge = Gauge(p + "dry_run", "1 when the controller plans but does not write", registry=r)
        self.observe_errors = Counter(p + "telemetry_observe_errors", "Ticks telemetry failed to record (a bug)", registry=r)
        self.member_gauges = {
            name: Gauge(f"{p}member_{name}", doc, ["pool", "member"], registry=r) for name, doc in _MEMBER_GAUGES
        }
        Info(p + "build", "Controller version", registry=r).info({"version": __version__})
        for result in ("ok", "error"):
            self.ticks.labels(result)  # present at 0 from the start, so rate() works from tick one
        r.register(_SinceLastSuccess(self))
        self._tokens = _TokenCollector()
        r.register(self._tokens)

    # -- configuration -----------------------------------------------------------------------
    def set_token_source(self, source: Callable[[], Mapping[str, int]] | None) -> None:
        """A callable returning {"logins": n, "extensions": n, ...}; see `token_counters`."""
        self._tokens.source = source

    def set_pools(self, engine_types: Mapping[str, str]) -> None:
        """The configured pools {full_path: engine_type}. Series of pools no longer listed are dropped."""
        with self._lock:
            self._engine_types = dict(engine_types)
            for path in self._pools_seen - set(self._engine_types):
                self._forget_pool(path)

    # -- recording a tick --------------------------------------------------------------------
    def observe(self, report: TickReport, scrapes: Mapping[str, Mapping[str, ScrapeResult]] | None = None) -> None:
        """Record one tick. Never raises: telemetry must not be the reason a tick fails.

        `scrapes` ({pool: {member: ScrapeResult}}) counts every failed scrape when the caller has
        them; without it the failures are those of the plans' members whose load is unknown.
        """
        try:
            with self._lock:
                self._observe(report, scrapes)
        except Exception as exc:  # noqa: BLE001
            self.observe_errors.inc()
            self.log.error("telemetry_observe_failed", error=f"{type(exc).__name__}: {exc}")

    def _observe(self, report: TickReport, scrapes) -> None:
        now_mono, now_wall = self.clock.monotonic(), self.clock.wall()
        duration = max(0.0, report.finished - report.started)
        self.tick_duration.observe(duration)
        self.ticks.labels("ok" if report.ok else "error").inc()
        self.dry_run_gauge.set(1 if report.dry_run else 0)
        self._dry_run = report.dry_run
        if report.ok:
            self._last_ok_mono, self._last_ok_wall = now_mono, now_wall
            self.last_success.set(now_wall)
        self._record_members(report)
        self._record_scrape_errors(report, scrapes)
        self._record_writes(report)
        self._record_pools(report)
        self._last_tick = self._tick_view(report, duration, now_wall)

    def _record_members(self, report: TickReport) -> None:
        present: set[tuple[str, str]] = set()
        for plan in report.plans:
            path = plan.pool.ref.full_path
            current = shares(plan, planned=False)
            for p in plan.members:
                labels = (path, p.member.key)
                present.add(labels)
                for name, value in self._member_values(p, current[p.member.key]).items():
                    self._put(name, labels, value)
        # Members that left a pool, or whose pool was not read, must not linger as stale series.
        for name, series in self._member_series.items():
            for labels in series - present:
                self._drop(name, labels)
        self._forget_departed_scrape_series(report, present)

    @staticmethod
    def _member_values(p: MemberPlan, share: float) -> dict[str, float | None]:
        s = p.sample
        return {
            "score": p.score,
            "ratio": p.member.ratio,
            "planned_ratio": p.ratio,
            "connection_limit": p.member.connection_limit,
            "share": share,
            "waiting": s.waiting if s else None,
            "running": s.running if s else None,
            "kv_usage": s.kv_usage if s else None,
            "up": 1.0 if s is not None else 0.0,
            "active": 1.0 if p.member.active else 0.0,
        }

    def _put(self, name: str, labels: tuple[str, str], value: float | None) -> None:
        if value is None or not math.isfinite(float(value)):
            self._drop(name, labels)  # unknown is absent, not a stale or made-up number
            return
        self.member_gauges[name].labels(*labels).set(float(value))
        self._member_series[name].add(labels)

    def _drop(self, name: str, labels: tuple[str, str]) -> None:
        if labels in self._member_series[name]:
            self._member_series[name].discard(labels)
            self.member_gauges[name].remove(*labels)

    def _record_scrape_errors(self, report: TickReport, scrapes) -> None:
        for pool, member, reason in self._scrape_failures(report, scrapes):
            self.scrape_errors.labels(pool, member, reason).inc()
            self._scrape_series.add((pool, member, reason))

    @staticmethod
    def _scrape_failures(report: TickReport, scrapes) -> Iterable[tuple[str, str, str]]:
        if scrapes is not None:
            for pool, results in scrapes.items():
                for key, result in results.items():
                    if not result.ok:
                        yield pool, key, scrape_label(result.error or "unknown")
            return
        for plan in report.plans:
            for p in plan.members:
                if p.action.unknown and p.member.active:
                    yield plan.pool.ref.full_path, p.member.key, scrape_label(p.scrape_error)

    def _forget_departed_scrape_series(self, report: TickReport, present: set[tuple[str, str]]) -> None:
        """Error counters of a member go once it has left a pool that was read (not on a read failure)."""
        read = {plan.pool.ref.full_path for plan in report.plans}
        for series in list(self._scrape_series):
            pool, member, _ = series
            if pool in read and (pool, member) not in present:
                self._scrape_series.discard(series)
                self.scrape_errors.remove(*series)

    def _record_writes(self, report: TickReport) -> None:
        for path, (applied, failed) in writes_per_pool(report).items():
            self.bigip_writes.labels(path, "applied").inc(applied)
            self.bigip_writes.labels(path, "failed").inc(failed)

    def _record_pools(self, report: TickReport) -> None:
        read = {plan.pool.ref.full_path for plan in report.plans}
        self._pools_seen |= read | set(self._engine_types)
        for path in self._pools_seen:
            self.pool_up.labels(path).set(1 if path in read else 0)
        views = [pool_view(plan, self._engine_type(plan)) for plan in report.plans]
        views += [missing_pool_view(path, et, report.pool_outcome(path))
                  for path, et in self._engine_types.items() if path not in read]
        self._pools_views = views

    def _engine_type(self, plan: PoolPlan) -> str:
        """Configured engine type; else what the engines' pages identified as; else ""."""
        configured = self._engine_types.get(plan.pool.ref.full_path)
        if configured:
            return configured
        detected = [p.sample.engine for p in plan.members if p.sample is not None and p.sample.engine]
        return max(set(detected), key=detected.count) if detected else ""

    def _forget_pool(self, path: str) -> None:
        """Drop every series of a pool that is no longer configured."""
        for result in ("applied", "failed"):
            self._remove_quietly(self.bigip_writes, path, result)
        self._remove_quietly(self.pool_up, path)
        for name, series in self._member_series.items():
            for labels in [s for s in series if s[0] == path]:
                self._drop(name, labels)
        for series in [s for s in self._scrape_series if s[0] == path]:
            self._scrape_series.discard(series)
            self.scrape_errors.remove(*series)
        self._pools_seen.discard(path)
        self._pools_views = [v for v in self._pools_views if v["full_path"] != path]

    @staticmethod
    def _remove_quietly(metric, *labels: str) -> None:
        try:
            metric.remove(*labels)
        except KeyError:
            pass

    def _tick_view(self, report: TickReport, duration: float, wall: float) -> dict:
        return {
            "at": _iso(wall),
            "at_epoch": _num(wall, 3),
            "duration_seconds": _num(duration, 4),
            "ok": report.ok,
            "applied": report.applied,
            "failed": report.failed,
            "pools": len(report.plans),
            "error_count": len(report.errors),
            "errors": [_scrub(e) for e in report.errors[:MAX_ERRORS_SHOWN]],
        }

    # -- reading -----------------------------------------------------------------------------
    def seconds_since_success(self) -> float:
        since = self._last_ok_mono if self._last_ok_mono is not None else self._started_mono
        return max(0.0, self.clock.monotonic() - since)

    def health(self) -> tuple[int, dict]:
        """(HTTP status, body) for /healthz."""
        limit = self.health_ticks * self.tick_seconds
        with self._lock:
            last_ok, last_tick = self._last_ok_mono, self._last_tick
        if last_ok is None:
            return 503, self._unhealthy("no successful tick yet", limit, last_tick)
        age = max(0.0, self.clock.monotonic() - last_ok)
        if age > limit:
            why = f"no successful tick for {age:.1f}s (limit {limit:g}s = {self.health_ticks} tick intervals)"
            return 503, self._unhealthy(why, limit, last_tick)
        body = {
            "status": "healthy",
            "message": f"last successful tick {age:.1f}s ago",
            "last_success_seconds_ago": _num(age, 3),
            "limit_seconds": limit,
        }
        return 200, body

    def _unhealthy(self, reason: str, limit: float, last_tick: dict | None) -> dict:
        body = {"status": "unhealthy", "reason": reason, "message": reason, "limit_seconds": limit}
        if last_tick is not None:
            body["last_tick_errors"] = last_tick["errors"]
        return body

    def status(self) -> dict:
        """The /status document. Built from the last tick's snapshot; nothing here is live I/O."""
        with self._lock:
            pools = list(self._pools_views)
            last_tick = dict(self._last_tick) if self._last_tick else None
            dry_run, last_ok_wall = self._dry_run, self._last_ok_wall
        if last_tick is not None:
            last_tick["seconds_ago"] = _num(max(0.0, self.clock.wall() - (last_tick["at_epoch"] or 0.0)), 3)
            last_tick["last_success_at"] = None if last_ok_wall is None else _iso(last_ok_wall)
        return {"pools": pools, "last_tick": last_tick, "dry_run": dry_run, "version": __version__}

    def metrics(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) for /metrics: OpenMetrics when the scraper asks for it."""
        encoder, content_type = choose_encoder(accept)
        with self._lock:  # a scrape never sees half a tick
            return encoder(self.registry), content_type

    # -- HTTP --------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int] | None:
        return None if self._server is None else tuple(self._server.server_address[:2])  # type: ignore[return-value]

    def start(self) -> tuple[str, int]:
        """Listen on cfg.host:cfg.port (0 = any free port) in a daemon thread; returns the address."""
        if self._server is not None:
            return self.address  # type: ignore[return-value]
        try:
            self._server = _Server((self.cfg.host, self.cfg.port), _handler_for(self))
        except OSError as exc:
            raise ConfigError(
                f"telemetry: cannot listen on {self.cfg.host}:{self.cfg.port} ({exc.strerror or exc}); "
                "set telemetry.port to a free port or telemetry.enabled: false"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": self.poll_interval}, name="f5lr-telemetry", daemon=True
        )
        self._thread.start()
        host, port = self.address  # type: ignore[misc]
        self.log.info("telemetry_listening", url=f"http://{host}:{port}/metrics")
        return host, port

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def route(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        """(status, content type, body) for one GET. Exceptions become a 500, never a dead server."""
        handler = _ROUTES.get(urlsplit(path).path.rstrip("/") or "/")
        if handler is None:
            return 404, _JSON, _json({"error": "not found", "endpoints": sorted({"/metrics", "/healthz", "/status"})})
        try:
            return handler(self, accept)
        except Exception as exc:  # noqa: BLE001
            self.log.error("telemetry_request_failed", path=path, error=f"{type(exc).__name__}: {exc}")
            return 500, _JSON, _json({"error": "internal error"})


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n").encode()


def _get_metrics(t: Telemetry, accept: str) -> tuple[int, str, bytes]:
    body, content_type = t.metrics(accept)
    return 200, content_type, body


def _get_health(t: Telemetry, _accept: str) -> tuple[int, str, bytes]:
    code, body = t.health()
    return code, _JSON, _json(body)


def _get_status(t: Telemetry, _accept: str) -> tuple[int, str, bytes]:
    return 200, _JSON, _json(t.status())


_ROUTES: dict[str, Callable[[Telemetry, str], tuple[int, str, bytes]]] = {
    "/metrics": _get_metrics,
    "/healthz": _get_health,
    "/health": _get_health,  # the sideband scheduler's path
    "/status": _get_status,
    "/pools/status": _get_status,  # the sideband scheduler's path
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block shutdown

    def __init__(self, address: tuple[str, int], handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler_for(t: Telemetry):
    class Handler(BaseHTTPRequestHandler):
        server_version = "f5-llm-ratio"
        sys_version = ""
        timeout = HANDLER_TIMEOUT

        def do_GET(self) -> None:
            self._reply(with_body=True)

        def do_HEAD(self) -> None:
            self._reply(with_body=False)

        def _reply(self, with_body: bool) -> None:
            code, content_type, body = t.route(self.path, self.headers.get("Accept", ""))
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away; nothing to tell it

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # an access line per Prometheus scrape would flood journald

    return Handler


# -- wiring ------------------------------------------------------------------------------------

def attach(telemetry: Telemetry, daemon: Observed) -> Telemetry:
    """Feed a Daemon's ticks into telemetry. Reads `daemon.cfg` and `daemon.rec` at each use,
    so a SIGHUP reload (new config, new BIG-IP client) is followed without re-wiring."""

    def on_tick(report: TickReport) -> None:
        try:
            telemetry.tick_seconds = daemon.cfg.scheduler.tick_seconds
            telemetry.set_pools(engine_types(daemon.cfg))
        except Exception:  # noqa: BLE001 - observe() below must still run; the failure is counted
            telemetry.observe_errors.inc()
        telemetry.observe(report)

    telemetry.set_token_source(lambda: token_counters(daemon.rec))
    telemetry.set_pools(engine_types(daemon.cfg))
    daemon.on_tick.append(on_tick)
    return telemetry


def serve(daemon: Observed, *, clock: Clock = SYSTEM_CLOCK) -> Telemetry | None:
    """Build, attach and start telemetry for a Daemon per its config; None when disabled."""
    cfg = daemon.cfg
    if not cfg.telemetry.enabled:
        return None
    telemetry = Telemetry(cfg.telemetry, clock=clock, tick_seconds=cfg.scheduler.tick_seconds)
    attach(telemetry, daemon)
    telemetry.start()
    return telemetry
