"""The telemetry object of one controller process: it records each tick and serves what it recorded.

Everything is derived from the `TickReport` each tick hands to `observe()`, so telemetry can never
disagree with what the reconciler actually saw and did. The HTTP server only reads snapshots;
nothing it does can slow down or break a tick, and nothing a tick does can kill the server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client.exposition import choose_encoder

from controller import __version__, logs
from controller.clock import Clock, SystemClock
from controller.config.schema import AppConfig, TelemetryConfig
from controller.errors import ConfigError
from controller.model import INTERNAL_FAILURES, Kind, PoolPlan, Reason, ScrapeResult, TickReport
from controller.telemetry import history as hist
from controller.telemetry import httpserve, page
from controller.telemetry import status as views
from controller.telemetry.metrics import Metrics, Reconciler, RequestHook, token_counters

SYSTEM_CLOCK = SystemClock()  # stateless; shared as the default clock
DEFAULT_HEALTH_TICKS = 3
MAX_ERRORS_SHOWN = 20  # /status and /healthz stay small even when every member of every pool fails
JSON = "application/json; charset=utf-8"
Reply = tuple[int, str, bytes]
#: A JSON document this server answers with (or keeps to build one from).
Doc = dict[str, Any]
#: A request's query, as urllib.parse.parse_qs gives it.
Query = dict[str, list[str]]


class Telemetry:
    """Metrics registry, tick snapshot, hour of history and HTTP server of one controller process."""

    poll_interval = 0.5  # seconds serve_forever may take to notice stop(); tests lower it

    def __init__(
        self,
        cfg: TelemetryConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        tick_seconds: float,
        engine_types: Mapping[str, str] | None = None,
        policies: Mapping[str, str] | None = None,
        token_source: Callable[[], Mapping[str, int]] | None = None,
        health_ticks: int = DEFAULT_HEALTH_TICKS,
    ):
        self.cfg = cfg
        self.clock = clock
        self.tick_seconds = float(tick_seconds)
        self.health_ticks = health_ticks
        self.log = logs.get()
        self.instruments = Metrics()
        self.registry = self.instruments.registry
        self.observe_errors = self.instruments.observe_errors
        self.history = hist.History()
        self._ttft = hist.Ttft()
        self._lock = threading.RLock()  # one observe() at a time; /metrics sees a whole tick
        self._started_mono = clock.monotonic()
        self._last_ok_mono: float | None = None
        self._last_ok_wall: float | None = None
        self._alive_mono: float | None = None  # the loop last completed a tick (or waited out a backoff)
        self._blind_streak = 0  # ticks in a row in which some pool was blind
        self._all_blind_streak = 0  # ticks in a row in which every pool read was blind: the loop sees nothing
        self._blind_pools: tuple[str, ...] = ()
        self._readiness: list[Doc] | None = None  # per configured pool, from the last tick (/readyz)
        self._ready_at_mono: float | None = None
        self._last_tick: Doc | None = None
        self._pools_views: list[Doc] = []
        self._dry_run = False
        self._engine_types: dict[str, str] = dict(engine_types or {})
        self._policies: dict[str, str] = dict(policies or {})
        self._server: httpserve.Server | None = None
        self.set_token_source(token_source)

    # -- configuration ---------------------------------------------------------------------------
    def set_token_source(self, source: Callable[[], Mapping[str, int]] | None) -> None:
        """A callable returning {"logins": n, "extensions": n, ...}; see `metrics.token_counters`."""
        self.instruments.tokens.source = source

    def set_pools(self, engine_types: Mapping[str, str], policies: Mapping[str, str] | None = None) -> None:
        """The configured pools {full_path: engine_type} (and policy names). Pools no longer listed are dropped."""
        with self._lock:
            self._engine_types = dict(engine_types)
            if policies is not None:
                self._policies = dict(policies)
            for path in self.instruments.pools_seen - set(self._engine_types):
                self.instruments.forget_pool(path)
            self._pools_views = [v for v in self._pools_views if v["full_path"] in self._engine_types]
            self.history.forget(self._engine_types)

    # -- recording a tick ------------------------------------------------------------------------
    def observe(self, report: TickReport, scrapes: Mapping[str, Mapping[str, ScrapeResult]] | None = None) -> None:
        """Record one tick. Never raises: telemetry must not be the reason a tick fails.

        `scrapes` ({pool: {member: ScrapeResult}}) gives scrape latencies and exact error reasons when
        the caller has them; without it the reasons are read from the plans.
        """
        try:
            with self._lock:
                self._observe(report, scrapes)
        except Exception as exc:  # noqa: BLE001
            self.observe_errors.inc()
            self.log.error("telemetry_observe_failed", error=f"{type(exc).__name__}: {exc}")

    def _observe(self, report: TickReport, scrapes: Mapping[str, Mapping[str, ScrapeResult]] | None) -> None:
        now_mono, now_wall = self.clock.monotonic(), self.clock.wall()
        self.instruments.record(report, scrapes, self._policies, self._engine_types, now_wall)
        self._dry_run = report.dry_run
        blind = tuple(plan.pool.ref.full_path for plan in report.plans if plan.blind)
        self._blind_streak, self._blind_pools = (self._blind_streak + 1, blind) if blind else (0, ())
        self.instruments.blind_ticks.set(self._blind_streak)
        configured = list(self._engine_types) or _pools_of(report)
        every_blind = bool(blind) and set(blind) >= set(configured)  # a pool not read is not blind: not every pool is
        self._all_blind_streak = self._all_blind_streak + 1 if every_blind else 0
        if not any(o.reason in INTERNAL_FAILURES for o in report.outcomes):  # a tick that broke did not complete
            self._alive_mono = now_mono
        self._readiness = _readiness(report, configured)
        self._ready_at_mono = now_mono
        # A blind tick is not ok, but its blindness is judged by telemetry.blind_ticks below, not by age.
        if report.ok or (blind and all(o.reason is Reason.BLIND for o in report.failures)):
            self._last_ok_mono, self._last_ok_wall = now_mono, now_wall
        read = {plan.pool.ref.full_path for plan in report.plans}
        views_ = [views.pool_view(plan, self._engine_type(plan), self._policies.get(plan.pool.ref.full_path, ""), report.dry_run)
                  for plan in report.plans]
        for view in views_:  # how the pool fared this tick, as /readyz and f5lr_pool_ready say it
            view["result"] = report.pool_result(view["full_path"])
            view["problem"] = views.scrub(report.pool_problem(view["full_path"])) or None
        views_ += [views.missing_pool_view(path, et, report.pool_outcome(path))
                   for path, et in self._engine_types.items() if path not in read]
        self._pools_views = views_
        for plan, view in zip(report.plans, views_, strict=False):
            self._add_ttft(plan, view)
            self.history.record(plan.pool.ref.full_path, now_wall, _history_row(view, report.dry_run))
            self.history.add_changes(_changes(plan, report, now_wall))
        self._last_tick = _tick_view(report, now_wall)

    def _add_ttft(self, plan: PoolPlan, view: Doc) -> None:
        """Each member's mean TTFT since the last tick, where its engine exports the histogram."""
        seen = {}
        for p in plan.members:
            c = p.sample.counters if p.sample is not None else None
            seen[p.member.key] = (c.ttft_sum, c.ttft_count) if c is not None else (None, None)
        ttft = self._ttft.update(plan.pool.ref.full_path, seen)
        for m in view["members"]:
            m["ttft_seconds"] = views.num(ttft.get(m["name"]), 4)

    def _engine_type(self, plan: PoolPlan) -> str:
        """Configured engine type; else what the engines' pages identified as; else ""."""
        configured = self._engine_types.get(plan.pool.ref.full_path)
        if configured:
            return configured
        detected = [p.sample.engine for p in plan.members if p.sample is not None and p.sample.engine]
        return max(set(detected), key=detected.count) if detected else ""

    # -- reading ---------------------------------------------------------------------------------
    def seconds_since_success(self) -> float:
        since = self._last_ok_mono if self._last_ok_mono is not None else self._started_mono
        return max(0.0, self.clock.monotonic() - since)

    def alive(self) -> None:
        """The loop is alive without a tick: it is waiting out a backoff from a BIG-IP that fails every read
        (`Daemon.on_wait`). Liveness counts it as a completed tick; readiness does not."""
        with self._lock:
            self._alive_mono = self.clock.monotonic()

    def health(self) -> tuple[int, Doc]:
        """(HTTP status, body) for /healthz: liveness. 200 while ticks complete, whatever became of their pools
        (blind, unreadable or failing pools included: /readyz and the per-pool metrics say which); 503 when
        no tick completed within `health_ticks` tick intervals (the loop is stuck, or every tick breaks), or
        when every pool read has been blind for `telemetry.blind_ticks` ticks in a row (the loop sees nothing)."""
        limit = self.health_ticks * self.tick_seconds
        with self._lock:
            alive, last_tick, last_ok = self._alive_mono, self._last_tick, self._last_ok_mono
            streak, blind = self._all_blind_streak, self._blind_pools
        if streak >= self.cfg.blind_ticks:
            why = (f"blind for {streak} tick(s) (limit telemetry.blind_ticks = {self.cfg.blind_ticks}): no active member "
                   f"has fresh metrics in any pool ({', '.join(blind)})")
            body = _unhealthy(why, limit, last_tick)
            body["blind_pools"], body["blind_ticks"] = list(blind), streak
            return 503, body
        if alive is None:
            return 503, _unhealthy("no successful tick yet", limit, last_tick)
        age = max(0.0, self.clock.monotonic() - alive)
        if age > limit:
            why = f"no tick completed for {age:.1f}s (limit {limit:g}s = {self.health_ticks} tick intervals): the loop is stuck"
            return 503, _unhealthy(why, limit, last_tick)
        since_ok = None if last_ok is None else views.num(max(0.0, self.clock.monotonic() - last_ok), 3)
        return 200, {"status": "healthy", "message": f"last tick completed {age:.1f}s ago",
                     "last_tick_seconds_ago": views.num(age, 3), "last_success_seconds_ago": since_ok,
                     "limit_seconds": limit}

    def readiness(self) -> tuple[int, Doc]:
        """(HTTP status, body) for /readyz: 200 when every configured pool was steered in the last tick (read,
        seen, written as planned; not paused), else 503 naming each pool that was not and why. A last tick
        older than `health_ticks` intervals makes every pool not ready."""
        limit = self.health_ticks * self.tick_seconds
        with self._lock:
            pools = [dict(p) for p in self._readiness] if self._readiness is not None else None
            at = self._ready_at_mono
            configured = list(self._engine_types)
        if pools is None or at is None:
            pools = [{"pool": path, "ready": False, "result": "error", "reason": "no tick yet"} for path in configured]
            return 503, {"status": "not ready", "ready": False, "reason": "no tick yet", "pools": pools,
                         "not_ready": pools}
        age = max(0.0, self.clock.monotonic() - at)
        if age > limit:
            for p in pools:  # the loop is waiting (a BIG-IP backoff) or stuck: nothing is steered now
                stale = f"no tick for {age:.1f}s (limit {limit:g}s)"
                p.update(ready=False, result="error", reason=stale if p["ready"] else f"{p['reason']}; {stale}")
        not_ready = [p for p in pools if not p["ready"]]
        body = {"status": "not ready" if not_ready else "ready", "ready": not not_ready, "pools": pools,
                "not_ready": not_ready, "last_tick_seconds_ago": views.num(age, 3)}
        if not_ready:
            body["reason"] = "; ".join(f"{p['pool']}: {p['reason']}" for p in not_ready[:MAX_ERRORS_SHOWN])
        return (503 if not_ready else 200), body

    def status(self) -> Doc:
        """The /status document. Built from the last tick's snapshot; nothing here is live I/O."""
        with self._lock:
            pools = list(self._pools_views)
            last_tick = dict(self._last_tick) if self._last_tick else None
            dry_run, last_ok_wall = self._dry_run, self._last_ok_wall
        if last_tick is not None:
            last_tick["seconds_ago"] = views.num(max(0.0, self.clock.wall() - (last_tick["at_epoch"] or 0.0)), 3)
            last_tick["last_success_at"] = None if last_ok_wall is None else views.iso(last_ok_wall)
        return {"pools": pools, "last_tick": last_tick, "dry_run": dry_run, "version": __version__,
                "tick_seconds": self.tick_seconds}

    def history_doc(self, pool: str | None = None, since: float | None = None) -> Doc:
        doc = self.history.snapshot(now=self.clock.wall(), pool=pool, since=since)
        with self._lock:  # priority groups as of the last tick, for the page's pool headings and member cards
            latest = {v["full_path"]: v for v in self._pools_views if v.get("priority_groups")}
        for p in doc.get("pools", []):
            view = latest.get(p.get("pool"))
            if view is not None:
                p["priority_groups"] = view["priority_groups"]
                p["member_groups"] = {m["name"]: m["priority_group"] for m in view["members"]}
        doc["tick_seconds"] = self.tick_seconds
        doc["dry_run"] = self._dry_run
        return doc

    def metrics(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) for /metrics: OpenMetrics when the scraper asks for it."""
        encoder, content_type = choose_encoder(accept)
        with self._lock:  # a scrape never sees half a tick
            return encoder(self.registry), content_type

    # -- HTTP ------------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int] | None:
        return None if self._server is None else self._server.address

    def start(self) -> tuple[str, int]:
        """Listen on cfg.host:cfg.port (0 = any free port) in a daemon thread; returns the address."""
        if self._server is not None and self._server.address is not None:
            return self._server.address
        server = httpserve.Server(self.app, host=self.cfg.host, port=self.cfg.port, name="f5lr-telemetry",
                                  server_header="f5-llm-ratio", methods=("GET", "HEAD"), poll_interval=self.poll_interval)
        try:
            host, port = server.start()
        except OSError as exc:
            raise ConfigError(
                f"telemetry: cannot listen on {self.cfg.host}:{self.cfg.port} ({exc.strerror or exc}); "
                "set telemetry.port to a free port or telemetry.enabled: false"
            ) from None
        self._server = server
        self.log.info("telemetry_listening", url=f"http://{host}:{port}/")
        return host, port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def app(self, req: httpserve.Request) -> httpserve.Response:
        code, content_type, body = self.route(req.target, req.header("accept"))
        headers = {"Cache-Control": "no-store"}
        if content_type.startswith("text/html"):
            headers["Content-Security-Policy"] = page.CSP
        return httpserve.Response(status=code, body=body, content_type=content_type, headers=headers)

    def route(self, target: str, accept: str = "") -> Reply:
        """(status, content type, body) for one GET. Exceptions become a 500, never a dead server."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path in page.ASSETS:
                name, content_type = page.ASSETS[path]
                return 200, content_type, page.read(name)
            handler = _ROUTES.get(path)
            if handler is not None:
                return handler(self, accept, query)
            pool = _pool_route(path)
            if pool is not None:
                return _get_pool_status(self, pool, query)
        except Exception as exc:  # noqa: BLE001
            self.log.error("telemetry_request_failed", path=parts.path, error=f"{type(exc).__name__}: {exc}")
            return 500, JSON, _json({"error": "internal error"})
        return 404, JSON, _json({"error": "not found", "endpoints": ENDPOINTS})


# -- what a tick leaves behind --------------------------------------------------------------------

def _history_row(view: Doc, dry_run: bool) -> dict[str, tuple[float | None, ...]]:
    """{member: values in history.FIELDS order} from a pool view: the ratio and limit BIG-IP balances on
    after the tick (the planned ones unless this is a dry run), the expected share, the load."""
    rows: dict[str, tuple[float | None, ...]] = {}
    for m in view["members"]:
        share = m["ratio_percent"] / 100.0 if m["ratio_percent"] is not None else None
        metrics = m["metrics"]
        ratio = m["ratio"] if dry_run else m["planned_ratio"]
        limit = (m["connection_limit"] if dry_run else m["planned_connection_limit"]) or None  # 0: unlimited, no line
        rows[m["name"]] = (ratio, limit, share, metrics["waiting_queue"], metrics["running_req"],
                           metrics["cache_usage"], m["speed"]["value"], m.get("ttft_seconds"))
    return rows


def _changes(plan: PoolPlan, report: TickReport, wall: float) -> list[Doc]:
    """The ratio/limit changes of one pool this tick: the facts of the `ratio_changed` log lines, from the
    tick's member Outcomes (applied, or write-failed with why); in a dry run, the planned writes."""
    path = plan.pool.ref.full_path
    if report.dry_run:
        done = {p.member.key: "planned" for p in plan.writes}
        details: dict[str, str] = {}
    else:
        mine = [o for o in report.outcomes if o.kind is Kind.MEMBER and o.pool == path]
        done = {o.member: o.reason.value for o in mine}
        details = {o.member: o.detail for o in mine if o.failed}
    out = []
    for p in plan.writes:
        if p.member.key not in done:
            continue  # deferred by the write budget: nothing happened to it this tick
        s = p.sample
        out.append({
            "at": views.iso(wall), "at_epoch": round(wall, 3), "pool": path, "member": p.member.key,
            "ratio_from": p.member.ratio, "ratio_to": p.ratio,
            "limit_from": p.member.connection_limit, "limit_to": p.connection_limit,
            "action": p.action.value, "score": views.num(p.score),
            "waiting": views.num(s.waiting) if s else None, "running": views.num(s.running) if s else None,
            "kv": views.num(s.kv_usage) if s else None, "reason": views.scrub(p.reason),
            "outcome": done[p.member.key], "error": views.scrub(details.get(p.member.key, "")) or None,
            "dry_run": report.dry_run,
        })
    return out


def _tick_view(report: TickReport, wall: float) -> Doc:
    return {
        "at": views.iso(wall),
        "at_epoch": views.num(wall, 3),
        "duration_seconds": views.num(max(0.0, report.finished - report.started), 4),
        "ok": report.ok,
        "applied": report.applied,
        "failed": report.failed,
        "pools": len(report.plans),
        "error_count": len(report.errors),
        "errors": [views.scrub(e) for e in report.errors[:MAX_ERRORS_SHOWN]],
    }


def _pools_of(report: TickReport) -> list[str]:
    """The pools a tick planned or failed to read, in tick order (when telemetry knows no configured pools)."""
    seen = [plan.pool.ref.full_path for plan in report.plans]
    seen += [o.pool for o in report.outcomes if o.kind is Kind.POOL and o.pool]
    return list(dict.fromkeys(seen))


def _readiness(report: TickReport, pools: list[str]) -> list[Doc]:
    """Per pool: {pool, ready, result (model.POOL_RESULTS), reason}. Ready means steered this tick."""
    out = []
    for path in pools:
        result = report.pool_result(path)
        reason = "steered" if result == "ok" else views.scrub(report.pool_problem(path) or result)
        out.append({"pool": path, "ready": result == "ok", "result": result, "reason": reason})
    return out


def _unhealthy(reason: str, limit: float, last_tick: Doc | None) -> Doc:
    body: dict[str, Any] = {"status": "unhealthy", "reason": reason, "message": reason, "limit_seconds": limit}
    if last_tick is not None:
        body["last_tick_errors"] = last_tick["errors"]
    return body


# -- routes ----------------------------------------------------------------------------------------

def _json(obj: Any) -> bytes:
    return (json.dumps(obj, allow_nan=False, separators=(",", ":")) + "\n").encode()


def _get_metrics(t: Telemetry, accept: str, _q: Query) -> Reply:
    body, content_type = t.metrics(accept)
    return 200, content_type, body


def _get_health(t: Telemetry, _accept: str, _q: Query) -> Reply:
    code, body = t.health()
    return code, JSON, _json(body)


def _get_alive(_t: Telemetry, _accept: str, _q: Query) -> Reply:
    """The sideband scheduler's /health (api/server.py at f254c3e): 200 while the process runs, its body.
    Whether the controller sees its pools is /healthz (and readiness /readyz)."""
    return 200, JSON, _json({"status": "healthy", "message": "Scheduler running normally"})


def _get_ready(t: Telemetry, _accept: str, _q: Query) -> Reply:
    code, body = t.readiness()
    return code, JSON, _json(body)


def _get_status(t: Telemetry, _accept: str, _q: Query) -> Reply:
    return 200, JSON, _json(t.status())


def _get_history(t: Telemetry, _accept: str, q: Query) -> Reply:
    pool = q.get("pool", [None])[0]
    try:
        since = float(q["since"][0]) if "since" in q else None
    except ValueError:
        return 400, JSON, _json({"error": "since: want a Unix time in seconds"})
    return 200, JSON, _json(t.history_doc(pool, since))


def _pool_route(path: str) -> tuple[str, str] | None:
    """(name, partition) of the sideband's `/pools/{pool_name}/{partition}/status`, else None."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "pools" and parts[4] == "status" and parts[2] and parts[3]:
        return unquote(parts[2]), unquote(parts[3])
    return None


def _get_pool_status(t: Telemetry, pool: tuple[str, str], q: Query) -> Reply:
    found = views.find_pool(t.status()["pools"], *pool)
    if found is None:
        return 404, JSON, _json({"detail": f"Pool {pool[0]}:{pool[1]} does not exist"})
    if "simple" in q:
        return 200, "text/plain; charset=utf-8", views.simple_text(found).encode()
    return 200, JSON, _json(found)


_ROUTES: dict[str, Callable[[Telemetry, str, Query], Reply]] = {
    "/metrics": _get_metrics,
    "/healthz": _get_health,
    "/readyz": _get_ready,
    "/health": _get_alive,  # the sideband scheduler's liveness path: 200 while the process runs
    "/status": _get_status,
    "/pools/status": _get_status,  # the sideband scheduler's path
    "/history.json": _get_history,
}
ENDPOINTS = sorted({"/", "/metrics", "/healthz", "/readyz", "/status", "/history.json", "/pools/{pool}/{partition}/status"})


# -- wiring ----------------------------------------------------------------------------------------

def engine_types(cfg: AppConfig) -> dict[str, str]:
    """{pool full path: engine_type} from an AppConfig, for `Telemetry.set_pools`."""
    return {p.ref.full_path: p.engine_type for p in cfg.pools}


def policies(cfg: AppConfig) -> dict[str, str]:
    """{pool full path: policy name} from an AppConfig."""
    return {p.ref.full_path: p.mode.name for p in cfg.pools}


class Observed(Protocol):
    """What `attach` reads of a Daemon: its config and reconciler (both replaced by a reload) and its hooks."""

    @property
    def cfg(self) -> AppConfig: ...

    @property
    def rec(self) -> Reconciler: ...

    @property
    def on_tick(self) -> list[Callable[[TickReport], None]]: ...

    @property
    def on_reload(self) -> list[Callable[[bool], None]]: ...  # called with True (applied) or False (rejected)

    @property
    def on_wait(self) -> list[Callable[[], None]]: ...  # called for each tick skipped while backing off

    def observe_requests(self, hook: RequestHook) -> None:
        """`hook(method, status, seconds)` after every iControl REST call of the daemon's BIG-IP client, this
        one and each one a reload brings (Daemon.observe_requests)."""
        ...


def attach(telemetry: Telemetry, daemon: Observed) -> Telemetry:
    """Feed a Daemon's ticks and reloads into telemetry. Reads `daemon.cfg` and `daemon.rec` at each use,
    so a SIGHUP reload (new config, new BIG-IP client) is followed without re-wiring."""
    def on_tick(report: TickReport) -> None:
        try:
            telemetry.tick_seconds = daemon.cfg.scheduler.tick_seconds
            telemetry.set_pools(engine_types(daemon.cfg), policies(daemon.cfg))
        except Exception:  # noqa: BLE001 - observe() below must still run; the failure is counted
            telemetry.observe_errors.inc()
        telemetry.observe(report, daemon.rec.last_scrapes)

    telemetry.set_token_source(lambda: token_counters(daemon.rec))
    telemetry.instruments.failover.source = lambda: daemon.rec.bigip
    telemetry.set_pools(engine_types(daemon.cfg), policies(daemon.cfg))
    daemon.observe_requests(telemetry.instruments.bigip_request)  # the latency histogram, across reloads
    daemon.on_tick.append(on_tick)
    daemon.on_reload.append(telemetry.instruments.reloaded)
    daemon.on_wait.append(telemetry.alive)
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
