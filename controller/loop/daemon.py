"""The long-running loop: ticks on the monotonic clock (controller.loop.ticker), signals, config reload, systemd
notifications."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from controller import logs
from controller.clock import Clock, SystemClock
from controller.config import yamlfile
from controller.config.schema import AppConfig
from controller.engines.scrape import Scraper
from controller.errors import ConfigError
from controller.loop import render, sdnotify
from controller.loop.reconcile import Reconciler
from controller.loop.ticker import Ticker
from controller.ltm.failover import FailoverClient
from controller.ltm.tokenstore import TokenStore
from controller.model import Kind, Outcome, Reason, TickReport

# While BIG-IP fails every read, ticks are spaced out: one tick, then twice as long each time, up to this.
# Kept short so that recovery comes at most this long after BIG-IP answers again.
MAX_BACKOFF = 30.0
#: Two instances started together: before its first write the daemon waits a random delay of up to this
#: many ticks (see Reconciler.settle). `run --once`, `plan` and dry runs do not wait.
SETTLE_TICKS = 2.0
#: ... and never longer than this many seconds, however long a tick is.
SETTLE_MAX_SECONDS = 60.0
#: On SIGTERM, how long a running tick may take to finish before the token is deleted regardless.
STOP_GRACE = 3.0


def _short_host(hostname: str | None = None) -> str:
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    return re.sub(r"[^A-Za-z0-9-]", "", host)[:24] or "host"


def instance_id(configured: str = "", hostname: str | None = None) -> str:
    """This controller's id in GUI notes: `global.instance`, else the short host name.

    One daemon per host and pool set is one owner: the id does not depend on the config file's path, so
    `run --once` or `plan` with a copy of the config (or the daemon after the file moved) is the same
    owner as the daemon, never "another live instance" that locks it out of its own members. Two
    controllers on one host that steer the same pools must set different `global.instance` values.
    """
    return configured or _short_host(hostname)


def token_file_id(config_path: str = "", hostname: str | None = None) -> str:
    """The token state file's name part: host + a hash of the config path, as before issue 19, so two
    daemons sharing a state directory never take (and delete) each other's BIG-IP token."""
    path = os.path.abspath(config_path) if config_path else ""
    return f"{_short_host(hostname)}-{hashlib.sha256(path.encode()).hexdigest()[:6]}"


#: Tests of two real processes replace the random draw (a number in [0, 1]) so their order is known.
SETTLE_DRAW_ENV = "F5LR_SETTLE_DRAW"


def fixed_draw(text: str | None) -> float | None:
    """The draw from SETTLE_DRAW_ENV, clamped into [0, 1]; None when unset or not a number."""
    try:
        return min(1.0, max(0.0, float(text))) if text else None
    except ValueError:
        return None


def settle_seconds(cfg: AppConfig) -> float:
    """The longest random wait before a daemon's first write: SETTLE_TICKS ticks, at most SETTLE_MAX_SECONDS."""
    return min(SETTLE_MAX_SECONDS, SETTLE_TICKS * cfg.scheduler.tick_seconds)


def build(cfg: AppConfig, *, dry_run: bool, clock: Clock | None = None) -> Reconciler[FailoverClient]:
    """Wire the real edges to the reconciler."""
    clock = clock or SystemClock()
    instance = instance_id(cfg.instance)
    # Only the writer remembers its token: `plan`, `check` and dry runs must not adopt (and then delete) it.
    store = TokenStore(cfg.f5.state_dir, token_file_id(cfg.source)) if cfg.f5.state_dir and not dry_run else None
    # One host or every unit of an HA pair (one token each, in one state file); reads trust a failover
    # check made within half a tick.
    bigip = FailoverClient(cfg.f5, clock=clock, token_store=store, recheck=cfg.scheduler.tick_seconds / 2,
                           read_only=dry_run)
    logs.REDACTOR.sources[:] = [bigip.secrets]
    keepalive = fit_keepalive(cfg.scheduler.scrape_keepalive, cfg.scheduler.scrape_concurrency)
    scraper = Scraper(max_workers=cfg.scheduler.scrape_concurrency, clock=clock, keepalive=keepalive)
    return Reconciler(cfg, bigip, scraper, clock=clock, dry_run=dry_run, log=logs.get(), instance=instance)


#: File descriptors kept free for everything but the scrapes: BIG-IP connections (write_concurrency and
#: HA units), the telemetry server and its clients, logs, the token state file, Python itself.
RESERVED_FDS = 96


def fit_keepalive(wanted: int, concurrency: int, soft_limit: int | None = None) -> int:
    """scheduler.scrape_keepalive, lowered (with one warning) so that the scrapes' sockets, at most
    keepalive + concurrency, fit under the open-file limit with RESERVED_FDS to spare."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit <= 0:
        return wanted
    room = max(0, soft_limit - concurrency - RESERVED_FDS)
    if wanted <= room:
        return wanted
    logs.get().warning("scrape_keepalive_lowered", wanted=wanted, used=room, open_files_limit=soft_limit,
                       scrape_concurrency=concurrency,
                       hint="raise LimitNOFILE (systemd) or lower scheduler.scrape_concurrency")
    return room


def close(rec: Reconciler[FailoverClient]) -> None:
    """Release the token (BIG-IP allows ~100 per user) and the scrape pool."""
    rec.bigip.close()
    rec.scraper.close()


def announce(cfg: AppConfig, log: logs.Log) -> None:
    """Startup lines: what was loaded, what is ignored, and anything unsafe."""
    log.info("config_loaded", source=cfg.source, pools=[str(p.ref) for p in cfg.pools], tick_seconds=cfg.scheduler.tick_seconds)
    for note in cfg.notes:
        log.info("config_note", note=note)
    for warning in cfg.warnings:  # accepted, but not as written (an unknown mode became s1, an XInference pool)
        log.warning("config_warning", warning=warning)
    if cfg.f5.verify_tls is False:
        log.warning("tls_verification_disabled", host=cfg.f5.host, hint="set f5.verify_tls to a CA bundle path")


class FileWatch:
    """Whether a file changed since it was last looked at, as the sideband scheduler's ConfigHotReloader
    checks (main.py at f254c3e): its modification time first (here with size and inode, so a ConfigMap's
    symlink swap counts), then a hash of its content, so a `touch` or a rewrite with the same bytes is no change.
    A file that cannot be read counts as changed (the reload then reports why and keeps the old config)."""

    def __init__(self, path: str):
        self.path = path
        self.stamp = self._stamp()
        self.digest = self._digest()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a ConfigMap volume swaps ..data
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _digest(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        digest = self._digest()
        if digest == self.digest:
            return False
        self.digest = digest
        return True

    def refresh(self) -> None:
        """Take the file as it is now as seen (a reload by SIGHUP read it)."""
        self.stamp, self.digest = self._stamp(), self._digest()


class Builder(Protocol):
    """How a Daemon wires its reconciler (`build`; tests hand in their own edges)."""

    def __call__(self, cfg: AppConfig, *, dry_run: bool) -> Reconciler[FailoverClient]: ...


class Daemon:
    def __init__(self, config_path: str, cfg: AppConfig, *, dry_run: bool = False, out: TextIO | None = None,
                 builder: Builder = build):
        self.config_path = config_path
        self.cfg = cfg
        self.dry_run = dry_run
        self.out = out
        self.builder = builder
        self.log = logs.get()
        self.rec = builder(cfg, dry_run=dry_run)
        self.lock = threading.Lock()  # one tick at a time, and no teardown mid-tick
        self.reload_requested = False
        self.watch = FileWatch(config_path)
        self.ticker: Ticker | None = None
        self._watch_stop: threading.Event | None = None  # ends the config-file polling thread
        self.backoff = 0.0
        self.skip_until = 0.0
        self.on_tick: list[Callable[[TickReport], None]] = []
        self.on_reload: list[Callable[[bool], None]] = []  # called with True (applied) or False (rejected)
        self.on_wait: list[Callable[[], None]] = []  # called for each tick skipped while backing off: alive, waiting
        # called (method, status, seconds) after every iControl REST call that got a reply, by whichever BIG-IP
        # client the daemon has: a reload's new client gets them before its first call (see observe_requests)
        self.on_request: list[Callable[[str, int, float], None]] = []
        self._settle_tick_added = False

    def observe_requests(self, hook: Callable[[str, int, float], None]) -> None:
        """Call `hook(method, status, seconds)` after every iControl REST call of this daemon's BIG-IP client,
        the current one and each one a reload builds (telemetry's latency histogram). Added once."""
        if hook not in self.on_request:
            self.on_request.append(hook)
        self.rec.bigip.observe_requests(hook)

    # -- one tick ---------------------------------------------------------------------------
    def tick(self) -> TickReport | None:
        with self.lock:
            if self.reload_requested:
                self._reload()
            if self.rec.clock.monotonic() < self.skip_until:
                # Backing off from a BIG-IP that fails every read: alive and well, so keep the watchdog fed.
                sdnotify.notify(f"WATCHDOG=1\nSTATUS=waiting for BIG-IP, next try in "
                                f"{self.skip_until - self.rec.clock.monotonic():.0f}s")
                for wait_hook in self.on_wait:  # liveness: the loop is alive, only waiting
                    try:
                        wait_hook()
                    except Exception as exc:  # noqa: BLE001 - an observer must not fail the loop
                        self.log.error("wait_hook_failed", error=str(exc))
                return None
            try:
                report = self.rec.tick()
            except Exception as exc:  # noqa: BLE001 - a bug in one tick must not end the daemon
                now = self.rec.clock.monotonic()
                error = f"internal error: {type(exc).__name__}: {exc}"
                self.rec.faults.fault("tick", "tick_failed", error=error)
                outcome = Outcome(kind=Kind.TICK, reason=Reason.INTERNAL_ERROR, detail=error, error=exc)
                report = TickReport(started=now, finished=now, outcomes=(outcome,), dry_run=self.dry_run)
            else:
                self.rec.faults.clear("tick", "tick_recovered")
            self._after(report)
            return report

    def _after(self, report: TickReport) -> None:
        if self.dry_run and self.out is not None:
            policies = {p.ref.full_path: p.mode.name for p in self.cfg.pools}
            print(render.plan_table(report, policies), file=self.out, flush=True)
        all_failed = bool(report.errors) and not report.plans
        was = self.backoff
        self.backoff = min(MAX_BACKOFF, max(self.cfg.scheduler.tick_seconds, self.backoff * 2)) if all_failed else 0.0
        self.skip_until = self.rec.clock.monotonic() + self.backoff if all_failed else 0.0
        if all_failed and not was:  # once per outage; each pool's error was logged once by the reconciler
            self.log.warning("bigip_unavailable_backoff", retry_in_seconds=round(self.backoff, 1),
                             max_backoff_seconds=MAX_BACKOFF, error=report.errors[0])
        elif was and not all_failed:
            self.log.info("bigip_available_again", pools=len(report.plans))
        blind = sorted(p.pool.ref.full_path for p in report.plans if p.blind)
        if blind:  # same words as /healthz and f5lr_pool_blind: no active member has fresh metrics
            self.rec.faults.fault("blind", "pools_blind", pools=blind, error=",".join(blind),
                                  reason="no active member has fresh metrics; nothing written")
        elif report.plans:
            self.rec.faults.clear("blind", "pools_sighted", pools=sorted(p.pool.ref.full_path for p in report.plans))
        self._tick_at_settle()
        sdnotify.notify(f"WATCHDOG=1\nSTATUS=pools {len(report.plans)}/{len(self.cfg.pools)}, writes {report.applied}")
        for hook in self.on_tick:
            try:
                hook(report)
            except Exception as exc:  # noqa: BLE001 - an observer must not fail the tick
                self.log.error("tick_hook_failed", hook=getattr(hook, "__name__", repr(hook)), error=str(exc))

    def _tick_at_settle(self) -> None:
        """One extra tick the moment the settle delay ends, so the first write is not rounded up to the
        tick grid (two instances started together tick in step: rounding would make their delays equal)."""
        if self.ticker is None or self._settle_tick_added or not self.rec.settling or self.rec.settle_at is None:
            return
        self._settle_tick_added = True
        wait = max(0.0, self.rec.settle_at - self.rec.clock.monotonic())
        self.ticker.also_at(time.monotonic() + wait)

    # -- reload -----------------------------------------------------------------------------
    def request_reload(self, *_args: object) -> None:  # also a signal handler: (signum, frame)
        self.reload_requested = True

    def poll_config(self) -> None:
        """Every global.interval seconds: a changed file (mtime, then content) is reloaded as SIGHUP would
        (a Kubernetes ConfigMap update reaches the pod's file without any signal)."""
        if self.watch.changed():
            self.log.info("config_changed", source=self.config_path, note="reloading at the next tick")
            self.request_reload()

    def _schedule_watch(self) -> None:
        """(Re)start polling the config file every global.interval seconds, on the monotonic clock (a
        thread of its own, waiting on an Event: a wall-clock step moves nothing)."""
        if self.ticker is None:
            return
        if self._watch_stop is not None:
            self._watch_stop.set()
            self._watch_stop = None
        interval = self.cfg.reload_interval
        if interval <= 0:
            return
        stop = self._watch_stop = threading.Event()

        def poll() -> None:
            while not stop.wait(interval):
                try:
                    self.poll_config()
                except Exception as exc:  # noqa: BLE001 - polling must go on
                    self.log.error("config_watch_failed", error=str(exc))

        threading.Thread(target=poll, name="config-watch", daemon=True).start()

    def _reload(self) -> None:
        self.reload_requested = False
        self.watch.refresh()
        try:
            cfg = yamlfile.load(self.config_path)
        except ConfigError as exc:
            self.log.error("reload_rejected", problems=exc.problems, kept=self.cfg.source)
            self._notify_reload(False)
            return
        close(self.rec)
        self.cfg = cfg
        logs.REDACTOR.update(cfg.secrets())
        self.rec = self.builder(cfg, dry_run=self.dry_run)
        for hook in self.on_request:  # before the new client's first call
            self.rec.bigip.observe_requests(hook)
        announce(cfg, self.log)
        if self.ticker is not None:
            self.ticker.interval = cfg.scheduler.tick_seconds
            self._schedule_watch()
        self.log.info("config_reloaded", source=cfg.source)
        self._notify_reload(True)

    def _notify_reload(self, applied: bool) -> None:
        for hook in self.on_reload:
            try:
                hook(applied)
            except Exception as exc:  # noqa: BLE001 - an observer must not break a reload
                self.log.error("reload_hook_failed", error=str(exc))

    # -- lifecycle --------------------------------------------------------------------------
    def stop(self, *_args: object) -> None:  # also a signal handler: (signum, frame)
        self.log.info("stopping", reason="signal")
        sdnotify.notify("STOPPING=1")
        if self.ticker is not None:
            self.ticker.stop()
        if self._watch_stop is not None:
            self._watch_stop.set()

    def _late(self, seconds: float) -> None:
        """Each interval a tick overruns: no WATCHDOG ping (a hung tick must get the daemon restarted)."""
        self.log.debug("tick_overrunning", seconds=round(seconds, 1), tick_seconds=self.cfg.scheduler.tick_seconds)

    def run_forever(self) -> int:
        # Monotonic timing: a wall-clock step (NTP, a resumed VM) neither stops nor bunches the ticks.
        self.ticker = Ticker(self.tick, self.cfg.scheduler.tick_seconds)
        self.ticker.late.append(self._late)
        if not self.dry_run:
            self.rec.arm_settle(settle_seconds(self.cfg))
            draw = fixed_draw(os.environ.get(SETTLE_DRAW_ENV))
            if draw is not None:
                self.rec.rng = lambda: draw
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.request_reload)
        self._schedule_watch()
        sdnotify.notify("READY=1")
        self.log.info("started", dry_run=self.dry_run)
        self.ticker.run()  # returns after stop()
        return self._shutdown()

    def _shutdown(self) -> int:
        """Let a running tick finish, but not for long: the token must go and systemd is waiting."""
        finished = self.lock.acquire(timeout=STOP_GRACE)
        close(self.rec)
        if finished:
            self.lock.release()
            self.log.info("stopped")
            return 0
        self.log.warning("stopped_during_tick", grace_seconds=STOP_GRACE, note="the running tick's writes may be incomplete")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # the hung tick's worker thread would otherwise hold the interpreter open

    def run_once(self) -> int:
        try:
            report = self.tick()
        finally:
            close(self.rec)
        if report is None or not report.ok or report.failed:
            return 1
        return 1 if any(plan.blind and not plan.paused for plan in report.plans) else 0  # paused: on purpose
