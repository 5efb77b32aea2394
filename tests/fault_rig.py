"""Shared rig for the fault-matrix tests: the real Reconciler, BigIPClient and Scraper against the
HTTPS BIG-IP emulator and loopback engine pages, on a FakeClock (the `rig_factory` fixture that starts and
stops rigs is in tests/e2e/conftest.py)."""

from __future__ import annotations

from dataclasses import replace

from controller.clock import FakeClock
from controller.config.schema import (
    AppConfig,
    F5Config,
    MetricsConfig,
    ModeConfig,
    PoolConfig,
    SchedulerConfig,
    TelemetryConfig,
    WeightsConfig,
)
from controller.engines.scrape import Scraper
from controller.loop.daemon import Daemon
from controller.loop.reconcile import Reconciler
from controller.ltm.client import BigIPClient
from controller.model import PoolRef
from controller.sim.bigip import BigIPEmulator
from controller.sim.engine_server import EngineServer
from controller.telemetry import Telemetry, attach

PASSWORD = "faults-Pa55w0rd-x7Kq!zz"
USER = "admin"


# ------------------------------------------------------------------------------------------ harness


def vllm_page(waiting: float, running: float, kv: float, extra: str = "") -> str:
    """A minimal vLLM >= 0.10 page (what extract() reads), plus `extra` lines."""
    labels = '{engine="0",model_name="m"}'
    return (
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{labels} {waiting}\n"
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{labels} {running}\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{labels} {kv}\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds 1.76e+09\n"
        + extra
    )


class PageServer(EngineServer):
    """An EngineServer whose page is set directly: a load (waiting, running, kv) or raw text."""

    def __init__(self, waiting=0.0, running=0.0, kv=0.0, **kw):
        super().__init__(lambda: None, "vllm", **kw)
        self.load = (waiting, running, kv)
        self.text: str | None = None  # raw page override

    def page(self) -> str:
        return self.text if self.text is not None else vllm_page(*self.load)


class CapLog:
    """A structlog-shaped logger that keeps (level, event, fields)."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def _log(self, level):
        def emit(event, **fields):
            self.events.append((level, event, fields))
        return emit

    def __getattr__(self, level):
        if level in ("debug", "info", "warning", "error", "critical", "exception"):
            return self._log(level)
        raise AttributeError(level)

    def named(self, event: str, **match) -> list[dict]:
        return [f for _, e, f in self.events if e == event and all(f.get(k) == v for k, v in match.items())]


class Rig:
    """One emulated BIG-IP, `pools` pools sharing the same engine servers (one per load)."""

    def __init__(self, loads=((0, 0, 0.1), (4, 2, 0.5), (8, 4, 0.9)), *, ratios=None, pools=1, f5_timeout=2.0,
                 scrape_timeout=0.5, tick_deadline=0.8, weights: WeightsConfig | None = None, instance="",
                 emulator: BigIPEmulator | None = None, pool_fetch=10.0, dry_run=False, **server_kw):
        self.emu = emulator or BigIPEmulator(users={USER: PASSWORD})
        self.servers = [PageServer(*load, **server_kw) for load in loads]
        self.initial = list(ratios) if ratios is not None else [1] * len(loads)
        self.pool_names = [f"llm{i}" for i in range(pools)]
        self.refs = [PoolRef(n) for n in self.pool_names]
        self.clock = FakeClock()
        self.log = CapLog()
        self.weights = weights or WeightsConfig()
        self.f5_timeout, self.scrape_timeout, self.tick_deadline = f5_timeout, scrape_timeout, tick_deadline
        self.pool_fetch, self.instance, self.dry_run = pool_fetch, instance, dry_run

    def start(self) -> Rig:
        self.emu.start()
        self.members = [f"127.0.0.1:{s.start()}" for s in self.servers]
        for ref in self.refs:
            self.emu.add_pool(ref.full_path, members=[{"name": m, "ratio": r} for m, r in zip(self.members, self.initial, strict=True)])
        self.cfg = self.config()
        self.rec = self.reconciler()
        return self

    def config(self, port: int | None = None) -> AppConfig:
        return AppConfig(
            f5=F5Config("127.0.0.1", port=port or self.emu.port, username=USER, password=PASSWORD,
                        verify_tls=self.emu.cert_path, timeout=self.f5_timeout),
            pools=tuple(PoolConfig(ref, "vllm", metrics=MetricsConfig(timeout=self.scrape_timeout),
                                   mode=ModeConfig("s1", 0.5, 0.5), weights=self.weights) for ref in self.refs),
            scheduler=SchedulerConfig(metrics_fetch_interval_ms=1000, pool_fetch_interval=self.pool_fetch,
                                      tick_deadline=self.tick_deadline),
            source="/etc/f5-llm-ratio/rig.yaml",
        )

    def reconciler(self, instance: str | None = None, log: CapLog | None = None) -> Reconciler:
        cfg = self.cfg
        bigip = BigIPClient(cfg.f5, clock=self.clock, sleep=lambda s: None)
        scraper = Scraper(max_workers=8, clock=self.clock)
        return Reconciler(cfg, bigip, scraper, clock=self.clock, log=log or self.log, dry_run=self.dry_run,
                          instance=self.instance if instance is None else instance)

    def tick(self, rec: Reconciler | None = None):
        self.clock.advance(self.cfg.scheduler.tick_seconds)
        return (rec or self.rec).tick()

    def settle(self, ticks: int = 4):
        for _ in range(ticks):
            report = self.tick()
            assert report.ok, report.errors
        assert self.tick().applied == 0, "not settled"

    def ratios(self, pool: int = 0) -> list[int]:
        r = self.emu.ratios(self.refs[pool].full_path)
        return [r[m] for m in self.members]

    def patches(self, member: str | None = None) -> list:
        return [w for w in self.emu.writes if w.member is not None and (member is None or w.member == member)]

    def stop(self) -> None:
        for closeable in (self.rec.bigip, self.rec.scraper):
            closeable.close()
        for s in self.servers:
            s.stop()
        self.emu.stop()


def daemon_for(rig: Rig, cfg: AppConfig | None = None, blind_ticks: int = 2) -> tuple[Daemon, Telemetry]:
    """A daemon ticking `rig`'s reconciler (telemetry's server off), with its Telemetry attached."""
    rig.cfg = replace(cfg or rig.cfg, telemetry=TelemetryConfig(enabled=False, blind_ticks=blind_ticks))
    rig.rec.cfg = rig.cfg
    d = Daemon("/etc/f5-llm-ratio/rig.yaml", rig.cfg, builder=lambda cfg, dry_run: rig.rec)
    d.log = rig.log
    t = Telemetry(rig.cfg.telemetry, clock=rig.clock, tick_seconds=1.0)
    attach(t, d)
    return d, t


# ------------------------------------------------------------------------------------------ the matrix

# fault -> (how to cause it, the reason slug the scrape must report, extra Rig keywords)
