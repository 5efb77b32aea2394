"""Engine fault matrix (issue #6): the real Reconciler, BigIPClient and Scraper against the HTTPS BIG-IP
emulator and loopback engine servers, one fault at a time.

For every fault: the tick returns (the daemon keeps running); the faulty member is not written from bad
data (its ratio stays where it was); the fault is logged once, not once per tick; once the fault clears
the very next tick reads the member again and writes what its real load calls for.

`Rig` (also used by test_faults_bigip.py and test_security.py) wires the real edges together in-process
with a FakeClock for the controller's notion of time, so ticks are instant unless a fault costs time.
"""

from __future__ import annotations

import time
from typing import Optional

import pytest

from controller import engines
from controller.bigip import BigIPClient
from controller.clock import FakeClock
from controller.config import AppConfig, F5Config, MetricsConfig, ModeConfig, PoolConfig, SchedulerConfig, WeightsConfig
from controller.model import PoolRef
from controller.reconcile import Reconciler
from controller.scrape import Scraper
from controller.sim.bigip import BigIPEmulator
from controller.sim.engine_server import EngineServer

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
        self.text: Optional[str] = None  # raw page override

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
                 scrape_timeout=0.5, tick_deadline=0.8, weights: Optional[WeightsConfig] = None, instance="",
                 emulator: Optional[BigIPEmulator] = None, pool_fetch=10.0, dry_run=False, **server_kw):
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

    def start(self) -> "Rig":
        self.emu.start()
        self.members = [f"127.0.0.1:{s.start()}" for s in self.servers]
        for ref in self.refs:
            self.emu.add_pool(ref.full_path, members=[{"name": m, "ratio": r} for m, r in zip(self.members, self.initial)])
        self.cfg = self.config()
        self.rec = self.reconciler()
        return self

    def config(self, port: Optional[int] = None) -> AppConfig:
        return AppConfig(
            f5=F5Config("127.0.0.1", port=port or self.emu.port, username=USER, password=PASSWORD,
                        verify_tls=self.emu.cert_path, timeout=self.f5_timeout),
            pools=tuple(PoolConfig(ref, "vllm", metrics=MetricsConfig(timeout=self.scrape_timeout),
                                   mode=ModeConfig("s1", 0.5, 0.5), weights=self.weights) for ref in self.refs),
            scheduler=SchedulerConfig(metrics_fetch_interval_ms=1000, pool_fetch_interval=self.pool_fetch,
                                      tick_deadline=self.tick_deadline),
            source="/etc/f5-llm-ratio/rig.yaml",
        )

    def reconciler(self, instance: Optional[str] = None, log: Optional[CapLog] = None) -> Reconciler:
        cfg = self.cfg
        bigip = BigIPClient(cfg.f5, clock=self.clock, sleep=lambda s: None)
        scraper = Scraper(max_workers=8, clock=self.clock)
        return Reconciler(cfg, bigip, scraper, clock=self.clock, log=log or self.log, dry_run=self.dry_run,
                          instance=self.instance if instance is None else instance)

    def tick(self, rec: Optional[Reconciler] = None):
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

    def patches(self, member: Optional[str] = None) -> list:
        return [w for w in self.emu.writes if w.member is not None and (member is None or w.member == member)]

    def stop(self) -> None:
        for closeable in (self.rec.bigip, self.rec.scraper):
            closeable.close()
        for s in self.servers:
            s.stop()
        self.emu.stop()


@pytest.fixture
def rig_factory():
    made = []

    def make(*args, **kw) -> Rig:
        rig = Rig(*args, **kw).start()
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.stop()


# ------------------------------------------------------------------------------------------ the matrix

# fault -> (how to cause it, the reason slug the scrape must report, extra Rig keywords)
INF = vllm_page("+Inf", 0, 0.1)
NEGATIVE = vllm_page(-3, 0, 0.1)
KV_OVER = vllm_page(0, 0, 7.5)

MATRIX = {
    "refused": (("fault", "refuse"), "refused", {}),
    "timeout": (("fault", "timeout"), "timeout", {}),
    "trickle": (("fault", "trickle"), "timeout", {"trickle_bytes": 16, "trickle_interval": 0.1}),
    "huge-10MB": (("fault", "huge"), "too-large", {"scrape_timeout": 3.0, "tick_deadline": 3.5}),
    "garbage": (("fault", "garbage"), "not-prometheus", {}),
    "html-200": (("fault", "html200"), "not-prometheus", {}),
    "http-500": (("fault", "http500"), "http-500", {}),
    "nan": (("fault", "nan"), "bad-value", {}),
    "inf": (("text", INF), "bad-value", {}),
    "negative": (("text", NEGATIVE), "bad-value", {}),
    "kv-over-1": (("text", KV_OVER), "bad-value", {}),
    "missing": (("fault", "missing"), "missing-metric", {}),
}


def _set(rig: "Rig", server: PageServer, how) -> None:
    kind, value = how
    if kind == "fault":
        server.fault = value
    else:
        server.text = value
    if value == "refuse":
        # An engine that dies takes its connections with it; the simulated one only stops listening,
        # so drop the scraper's idle keep-alive connections to make the next scrape connect afresh.
        rig.rec.scraper._session.close()  # noqa: SLF001 - the session stays usable (new connections)


def _clear(server: PageServer) -> None:
    server.fault = None
    server.text = None


@pytest.mark.parametrize("fault", list(MATRIX))
def test_engine_fault_holds_member_logs_once_and_recovers_in_one_tick(rig_factory, fault):
    how, reason, kw = MATRIX[fault]
    rig = rig_factory(**kw)
    rig.settle()
    top = rig.ratios()[0]
    assert top == rig.cfg.pools[0].weights.scale  # the idle member is at the top before the fault
    victim = rig.members[0]
    writes_before = len(rig.patches(victim))

    _set(rig, rig.servers[0], how)
    rig.servers[0].load = (12, 8, 1.0)  # what it would say if it could: so a leak of it would show as a write
    rig.servers[1].load = (0, 0, 0.0)  # the others keep being planned and written
    reports = []
    for _ in range(3):
        started = time.monotonic()
        reports.append(rig.tick())
        took = time.monotonic() - started
        assert took < rig.tick_deadline + 1.5, f"tick took {took:.2f}s: the scrape deadline did not hold"

    for report in reports:  # the daemon keeps running: each tick returned a report for the pool
        assert len(report.plans) == 1
        plan = {p.member.key: p for p in report.plans[0].members}[victim]
        assert plan.action == "unknown-hold" and plan.ratio == top
        assert reason in plan.reason
    assert len(rig.patches(victim)) == writes_before, "a member with bad data was written"
    assert rig.ratios()[0] == top
    assert any(w.member == rig.members[1] for w in rig.patches()), "healthy members must still be written"
    failed = rig.log.named("scrape_failed", member=victim)
    assert len(failed) == 1 and failed[0]["reason"] == reason, failed  # once per fault, not per tick

    _clear(rig.servers[0])
    report = rig.tick()  # the first tick after the fault clears
    plan = {p.member.key: p for p in report.plans[0].members}[victim]
    assert plan.sample is not None and plan.sample.waiting == 12
    assert rig.ratios()[0] < top, "recovery must come within one tick of the fault clearing"
    assert len(rig.log.named("scrape_recovered", member=victim)) == 1


def test_trickle_is_cut_at_the_total_budget_not_per_read(rig_factory):
    """A server that sends 16 bytes every 0.1 s never trips a per-read socket timeout; the total one holds."""
    rig = rig_factory(trickle_bytes=16, trickle_interval=0.1, scrape_timeout=0.4, tick_deadline=2.0)
    rig.servers[0].fault = "trickle"
    started = time.monotonic()
    report = rig.tick()
    took = time.monotonic() - started
    result = {p.member.key: p for p in report.plans[0].members}[rig.members[0]]
    assert "timeout" in result.reason and "page incomplete" in result.reason
    assert took < 1.2, f"scrape of a trickling page took {took:.2f}s with a 0.4 s timeout"


def test_duplicate_series_count_once(rig_factory):
    """The same series twice on one page (a buggy exporter, a proxy concatenating pages) is one series:
    the queue is not doubled. Identical label sets: the last line wins."""
    rig = rig_factory()
    rig.settle()
    before = rig.ratios()
    dup = vllm_page(0, 0, 0.1, extra='vllm:num_requests_waiting{engine="0",model_name="m"} 0\n'
                                      'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1\n')
    rig.servers[0].text = dup
    report = rig.tick()
    plan = {p.member.key: p for p in report.plans[0].members}[rig.members[0]]
    assert plan.sample is not None and plan.sample.waiting == 0 and plan.sample.ranks == 1
    assert rig.ratios() == before and report.applied == 0
    assert engines.extract(dup, "vllm").waiting == 0


def test_every_member_failing_writes_nothing_and_recovers(rig_factory):
    rig = rig_factory()
    rig.settle()
    before, writes = rig.ratios(), len(rig.patches())
    for s in rig.servers:
        s.fault = "garbage"
    for _ in range(3):
        report = rig.tick()
        assert report.plans[0].note.startswith("no member has fresh metrics")
    assert rig.ratios() == before and len(rig.patches()) == writes
    assert len(rig.log.named("scrape_failed")) == 3  # once per member
    for s in rig.servers:
        s.fault = None
    rig.servers[2].load = (0, 0, 0.0)
    rig.tick()
    assert rig.ratios()[2] > before[2]


def test_member_stale_past_stale_after_goes_to_neutral_not_floor(rig_factory):
    """A member silent longer than stale_after returns to the pool's median, in max_step moves."""
    rig = rig_factory(weights=WeightsConfig(stale_after=5.0))
    rig.settle()
    top = rig.ratios()[0]
    _set(rig, rig.servers[0], ("fault", "refuse"))
    for _ in range(8):
        rig.tick()
    r = rig.ratios()
    others = sorted(r[1:])
    assert others[0] <= r[0] <= top and r[0] > rig.cfg.pools[0].weights.floor
    assert len(rig.log.named("scrape_failed", member=rig.members[0])) == 1
