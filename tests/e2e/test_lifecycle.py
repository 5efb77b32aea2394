"""Lifecycle (issue #6, part 4): sd_notify READY/WATCHDOG per tick and none while a tick hangs; the
watchdog stays fed while backing off from a dead BIG-IP; a crashing tick does not end the daemon; two
instances on the same pools do not fight. (SIGTERM, SIGHUP, token lifecycle: tests/e2e/test_e2e_cli.py.)"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time

import pytest
import structlog

from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, ModeConfig, PoolConfig, SchedulerConfig
from controller.errors import BigIPUnreachable
from controller.loop import daemon as daemon_mod
from controller.loop.daemon import Daemon
from controller.loop.reconcile import Reconciler
from controller.model import Member, PoolRef, PoolState, Sample
from controller.policy import planner
from tests.fakes import FakeBigIP, FakeScraper, fake_target_for
from tests.fault_rig import CapLog

REF = PoolRef("llm")


class NotifySocket:
    """What systemd does for Type=notify: a unix datagram socket; we record every message with its time."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="f5lr-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, m in list(self.messages) if key in m.split("\n") and t >= since]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def wait_count(n: NotifySocket, key: str, count: int, timeout: float = 2.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while len(n.times(key)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # and nothing more arrives
    return n.times(key)


@pytest.fixture
def notify(monkeypatch):
    n = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", n.path)
    yield n
    n.close()


class HangingScraper(FakeScraper):
    """Samples from memory; blocks inside scrape() while `hang` is set (a tick that hangs)."""

    def __init__(self, clock):
        super().__init__(clock)
        self.hang = threading.Event()
        self.release = threading.Event()
        self.hanging = threading.Event()

    def scrape(self, targets, deadline):
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(10)
        return super().scrape(targets, deadline)


def _fake_cfg(tick_ms=100) -> AppConfig:
    return AppConfig(F5Config("bigip.example"), (PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5)),),
                     SchedulerConfig(metrics_fetch_interval_ms=tick_ms))


def _fake_rec(cfg, clock=None, scraper=None, bigip=None):
    clock = clock or FakeClock()
    members = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, 100) for i in (1, 2))
    bigip = bigip or FakeBigIP(PoolState(REF, "ratio-member", members))
    scraper = scraper or FakeScraper(clock)
    scraper.samples = {"10.0.0.1:8000": Sample(0, kv_usage=0.1), "10.0.0.2:8000": Sample(1, kv_usage=0.2)}
    return Reconciler(cfg, bigip, scraper, clock=clock, target_for=fake_target_for, log=CapLog())


def test_ready_then_watchdog_per_tick_and_no_watchdog_while_a_tick_hangs(notify):
    """With Type=notify and WatchdogSec=, systemd restarts a daemon whose pings stop. A hung tick must stop them."""
    cfg = _fake_cfg(tick_ms=100)
    scraper = HangingScraper(FakeClock())
    d = Daemon("/etc/f5-llm-ratio/config.yaml", cfg, builder=lambda c, dry_run: _fake_rec(c, scraper=scraper))
    d.rec.clock = scraper.clock = FakeClock()
    seen = {}
    skipped = threading.Semaphore(0)

    def drive():
        try:
            t0 = time.monotonic()
            while len(notify.times("WATCHDOG=1")) < 4 and time.monotonic() - t0 < 5:
                time.sleep(0.02)
            seen["ticking"] = len(notify.times("WATCHDOG=1"))
            # Released each tick period the running tick overruns (the loop waits for it, starts no other).
            d.ticker.late.append(lambda _seconds: skipped.release())
            scraper.hang.set()
            assert scraper.hanging.wait(5)
            hung_at = time.monotonic()
            for _ in range(4):  # four tick periods in which the loop found the tick still stuck
                assert skipped.acquire(timeout=5), "the loop stopped watching the hung tick"
            seen["while_hung"] = len(notify.times("WATCHDOG=1", since=hung_at + 0.05))
            scraper.hang.clear()
            scraper.release.set()
            released = time.monotonic()
            while len(notify.times("WATCHDOG=1", since=released)) < 2 and time.monotonic() - released < 5:
                time.sleep(0.02)
            seen["after"] = len(notify.times("WATCHDOG=1", since=released))
        finally:
            scraper.release.set()
            d.stop()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        code = d.run_forever()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        driver.join(10)
    assert code == 0
    ready = notify.times("READY=1")
    assert ready and ready[0] <= notify.times("WATCHDOG=1")[0]
    assert seen["ticking"] >= 4
    assert seen["while_hung"] == 0, "WATCHDOG=1 pings went on while a tick hung"
    assert seen["after"] >= 2, "pings resume when the tick completes"
    deadline = time.monotonic() + 2
    while not notify.times("STOPPING=1") and time.monotonic() < deadline:  # the listener reads asynchronously
        time.sleep(0.02)
    assert notify.times("STOPPING=1")
    assert all("STATUS=" in m for _, m in notify.messages if "WATCHDOG=1" in m.split("\n"))


def test_watchdog_stays_fed_while_backing_off_from_a_dead_bigip(notify):
    """Backoff skips ticks for up to MAX_BACKOFF seconds; a WatchdogSec shorter than that must not kill a
    daemon that is only waiting for BIG-IP."""
    cfg = _fake_cfg(tick_ms=1000)
    clock = FakeClock()
    bigip = FakeBigIP(PoolState(REF, "ratio-member", ()))
    bigip.read_error = BigIPUnreachable("cannot connect to bigip.example:443: Connection refused")
    d = Daemon("x.yaml", cfg, builder=lambda c, dry_run: _fake_rec(c, clock=clock, bigip=bigip))
    reports = []
    with structlog.testing.capture_logs() as logs:
        for _ in range(40):
            clock.advance(1.0)
            reports.append(d.tick())
    pings = wait_count(notify, "WATCHDOG=1", 40)
    assert len(pings) == 40, "one ping per scheduled tick, skipped or not"
    assert sum(r is None for r in reports) > 30
    assert any("STATUS=waiting for BIG-IP" in m for _, m in notify.messages)
    assert [e["event"] for e in logs].count("bigip_unavailable_backoff") == 1


def test_a_tick_that_raises_is_logged_once_and_the_daemon_carries_on(notify):
    cfg = _fake_cfg(tick_ms=1000)
    clock = FakeClock()
    d = Daemon("x.yaml", cfg, builder=lambda c, dry_run: _fake_rec(c, clock=clock))
    real = d.rec.scraper.scrape
    d.rec.scraper.scrape = lambda *a: (_ for _ in ()).throw(KeyError("surprise"))
    for _ in range(3):
        clock.advance(d.backoff or 1.0)
        report = d.tick()
        assert report is not None and not report.ok and "internal error: KeyError" in report.errors[0]
    assert len(d.rec.log.named("tick_failed")) == 1
    d.rec.scraper.scrape = real
    clock.advance(daemon_mod.MAX_BACKOFF)
    report = d.tick()
    assert report is not None and report.ok
    assert len(d.rec.log.named("tick_recovered")) == 1
    assert len(wait_count(notify, "WATCHDOG=1", 4)) == 4


# ------------------------------------------------------------------------------------ two instances


def test_instance_id_is_global_instance_else_the_short_host_name_whatever_the_config_path():
    a = daemon_mod.instance_id("", "bigctl1.example.com")
    assert a == "bigctl1" == daemon_mod.instance_id(hostname="bigctl1")
    assert a != daemon_mod.instance_id("", "bigctl2")
    assert daemon_mod.instance_id("ctl-east", "bigctl1") == "ctl-east"
    assert "]" not in daemon_mod.instance_id("", "we]ird host")


def test_token_file_id_still_differs_by_host_and_config_path():
    """Two daemons sharing a state directory keep their own token files (the identity is not the file)."""
    a = daemon_mod.token_file_id("/etc/f5-llm-ratio/config.yaml", "bigctl1.example.com")
    assert a == daemon_mod.token_file_id("/etc/f5-llm-ratio/config.yaml", "bigctl1.example.com")
    assert a.startswith("bigctl1-") and len(a) <= 31
    assert a != daemon_mod.token_file_id("/etc/f5-llm-ratio/other.yaml", "bigctl1")
    assert a != daemon_mod.token_file_id("/etc/f5-llm-ratio/config.yaml", "bigctl2")


def test_two_instances_on_the_same_pool_do_not_fight(rig_factory):
    """A writes first and so owns the members for OWNER_WINDOW; B plans but writes nothing and says so
    once per member. A note older than the window is a lease that ran out: B may take over, and then A
    keeps off. At no time do both write the same member."""
    rig = rig_factory(instance="ctl-a-1a2b3c")
    log_b = CapLog()
    b = rig.reconciler(instance="ctl-b-4d5e6f", log=log_b)
    try:
        rig.settle()
        notes = [m["description"] for m in rig.emu.members(rig.refs[0].full_path)]
        assert all(n.startswith("f5-llm-ratio[ctl-a-1a2b3c]: score ") for n in notes), notes

        writes = len(rig.patches())
        rig.servers[0].load, rig.servers[2].load = (8, 4, 0.9), (0, 0, 0.1)  # both would now want to write
        for _ in range(3):
            report = rig.tick(b)
            assert report.applied == 0
            assert {p.action for p in report.plans[0].members} == {"owned-by-other"}
            assert all("owned by f5-llm-ratio instance 'ctl-a-1a2b3c'" in p.reason for p in report.plans[0].members)
        assert len(rig.patches()) == writes
        owned = log_b.named("owned_by_other_instance")
        assert len(owned) == 3 and {o["owner"] for o in owned} == {"ctl-a-1a2b3c"}  # once per member

        rig.tick()  # A, the owner, follows the load change
        assert len(rig.patches()) > writes

        rig.clock.advance(planner.OWNER_WINDOW + 60)  # A falls silent for longer than the window
        rig.servers[0].load, rig.servers[2].load = (0, 0, 0.1), (8, 4, 0.9)
        report = rig.tick(b)
        assert report.applied >= 1  # the lease ran out: B takes over
        taken = [w.member for w in rig.patches()[-report.applied:]]
        rig.servers[1].load = (0, 0, 0.0)
        report = rig.tick()  # A is back: it keeps off what B now owns
        assert not {p.member.key for p in report.plans[0].members if "ratio" in p.changes} & set(taken)
        assert {o["member"] for o in rig.log.named("owned_by_other_instance")} >= set(taken)
    finally:
        b.bigip.close()
        b.scraper.close()


def test_a_restarted_instance_recognises_its_own_notes(rig_factory):
    rig = rig_factory(instance="ctl-a-1a2b3c")
    rig.settle()
    again = rig.reconciler(instance="ctl-a-1a2b3c", log=CapLog())  # same host, same config path
    try:
        rig.servers[2].load = (0, 0, 0.0)
        report = rig.tick(again)
        assert report.applied >= 1 and not again.log.named("owned_by_other_instance")
    finally:
        again.bigip.close()
        again.scraper.close()
