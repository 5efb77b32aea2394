"""BIG-IP fault matrix (issue #6): the real Reconciler/Daemon, BigIPClient and Scraper against the HTTPS
BIG-IP emulator and loopback engines (see `Rig` in tests/fault_rig.py).

For every fault: the tick returns; nothing is written from a failed or partial read; the fault is
logged once, not once per tick; the first tick after the fault clears succeeds (logging in again
within that same tick when the old token is gone).
"""

from __future__ import annotations

import time

import structlog

from controller.clock import FakeClock
from controller.loop import daemon as daemon_mod
from controller.loop.daemon import Daemon
from controller.sim.bigip import BigIPEmulator
from tests.conftest import free_port
from tests.fault_rig import PASSWORD, USER, Rig

LOGIN = "/mgmt/shared/authn/login"


class HookScraper:
    """The real scraper, with something done to BIG-IP between the read and the write of a tick."""

    def __init__(self, real, hook):
        self.real, self.hook = real, hook

    def scrape(self, targets, deadline):
        out = self.real.scrape(targets, deadline)
        if self.hook is not None:
            self.hook()
        return out

    def close(self):
        self.real.close()


def read_failures(rig: Rig, pool: int = 0) -> list[dict]:
    return rig.log.named("bigip_read_failed", pool=rig.refs[pool].full_path)


def logins(emu: BigIPEmulator) -> int:
    return sum(1 for r in emu.request_log if r.path == LOGIN)


# -------------------------------------------------------------------------------- down / restart


def test_down_at_start_daemon_backs_off_then_resumes_within_one_tick(rig_factory):
    """No BIG-IP listening when the daemon starts: ticks fail without a crash, are spaced out
    (1, 2, 4 ... up to MAX_BACKOFF seconds), the outage is logged once, and the first tick after
    BIG-IP comes up logs in and writes. (`run --once` in this state exits 1 with the reason:
    tests/e2e/test_e2e_cli_daemon.py::test_bigip_not_listening_exits_1_quickly.)"""
    rig = rig_factory()
    port = free_port()
    rig.emu.stop()  # nothing listens on `port` yet
    rig.cfg = rig.config(port=port)
    d = Daemon("/etc/f5-llm-ratio/rig.yaml", rig.cfg, builder=lambda cfg, dry_run: rig.reconciler())
    rig.rec = d.rec

    attempts = []
    with structlog.testing.capture_logs() as daemon_logs:
        for _ in range(120):  # two minutes of one-second ticks
            rig.clock.advance(1.0)
            report = d.tick()
            if report is not None:
                attempts.append(rig.clock.monotonic())
                assert not report.ok and report.plans == () and "Connection refused" in report.errors[0]
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, daemon_mod.MAX_BACKOFF]  # doubling, capped
    assert max(gaps) <= daemon_mod.MAX_BACKOFF + 1
    assert len(attempts) < 15
    assert [e["event"] for e in daemon_logs].count("bigip_unavailable_backoff") == 1
    assert len(read_failures(rig)) == 1

    rig.emu.start(port=port)  # BIG-IP comes up
    with structlog.testing.capture_logs() as daemon_logs:
        report = None
        for _ in range(int(daemon_mod.MAX_BACKOFF) + 1):
            rig.clock.advance(1.0)
            report = d.tick()
            if report is not None:
                break
    assert report is not None and report.ok and report.applied == 3  # first attempt after recovery
    assert rig.emu.live_tokens(USER) and [e["event"] for e in daemon_logs] == ["bigip_available_again"]
    assert len(rig.log.named("bigip_read_recovered")) == 1


def test_down_mid_run_and_back_with_its_tokens_gone_logs_in_again_in_the_same_tick(rig_factory):
    rig = rig_factory()
    rig.settle()
    port, old = rig.emu.port, set(rig.emu.live_tokens(USER))
    writes = len(rig.patches())
    rig.emu.stop()  # BIG-IP goes away, connections cut
    rig.clock.advance(rig.pool_fetch)  # membership is due for a re-read
    for _ in range(3):
        report = rig.tick()
        assert not report.ok and report.plans == ()
    assert len(read_failures(rig)) == 1
    assert len(rig.patches()) == writes

    rig.emu.restart()  # a reboot: every token is gone
    rig.emu.start(port=port)
    rig.servers[2].load = (0, 0, 0.0)
    before = logins(rig.emu)
    report = rig.tick()
    assert report.ok and report.applied >= 1, report.errors
    assert logins(rig.emu) == before + 1
    live = set(rig.emu.live_tokens(USER))
    assert len(live) == 1 and not live & old
    assert len(rig.log.named("bigip_read_recovered")) == 1


def test_bigip_answering_503_html_while_restjavad_restarts(rig_factory):
    rig = rig_factory()
    rig.settle()
    rig.emu.down = True  # every call: 503 with restjavad's HTML page
    rig.clock.advance(rig.pool_fetch)
    rig.servers[2].load = (0, 0, 0.0)
    for _ in range(3):
        report = rig.tick()
        assert report.plans == ()
    errors = " ".join(report.errors)
    assert "HTTP 503" in errors and "Configuration Utility restarting" in errors and "<html" not in errors
    assert len(read_failures(rig)) == 1
    rig.emu.down = False
    report = rig.tick()
    assert report.ok and report.applied >= 1


# -------------------------------------------------------------------------------- tokens


def test_token_expiring_mid_tick_gives_401_then_one_login_and_the_write_lands(rig_factory):
    emu_clock = FakeClock()
    rig = rig_factory(emulator=BigIPEmulator(users={USER: PASSWORD}, clock=emu_clock))
    rig.settle()
    (old,) = rig.emu.live_tokens(USER)

    def expire():  # between the read and the write: the token runs out (36,000 s later on BIG-IP's clock)
        emu_clock.advance(40_000)

    rig.rec.scraper = HookScraper(rig.rec.scraper, expire)
    rig.servers[2].load = (0, 0, 0.0)
    rig.clock.advance(rig.pool_fetch)  # the tick reads at its start, so the write is the call that meets the 401
    before, seen = logins(rig.emu), len(rig.emu.request_log)
    report = rig.tick()
    assert report.ok and report.applied >= 1, report.errors
    assert logins(rig.emu) == before + 1
    patches = [r.status for r in rig.emu.request_log[seen:] if r.method == "PATCH" and "/members/" in r.path]
    assert patches[0] == 401 and patches[-1] == 200
    assert rig.emu.live_tokens(USER) != [old] and len(rig.emu.live_tokens(USER)) == 1


def test_token_missing_401_on_a_write_is_retried_once_after_login(rig_factory):
    rig = rig_factory()
    rig.settle()
    rig.emu.fail_next(1, "missing", path=r"/members/", method="PATCH")
    rig.servers[2].load = (0, 0, 0.0)
    report = rig.tick()
    assert report.ok and report.applied >= 1 and report.failed == 0


def test_token_limit_reached_writes_nothing_tries_once_per_tick_and_recovers(rig_factory):
    rig = rig_factory(pools=2, emulator=BigIPEmulator(users={USER: PASSWORD}, token_limit=1))
    other = rig.emu.request("POST", LOGIN, {"username": USER, "password": PASSWORD}).json()["token"]["token"]
    for _ in range(3):
        before = logins(rig.emu)
        report = rig.tick()
        assert report.plans == () and rig.patches() == []
        assert logins(rig.emu) == before + 1, "one login attempt per tick, not one per pool"
    assert "limit of active tokens" in report.errors[0]
    assert len(read_failures(rig, 0)) == 1

    rig.emu.request("DELETE", f"/mgmt/shared/authz/tokens/{other}", headers={"X-F5-Auth-Token": other})
    report = rig.tick()
    assert report.ok and report.applied == 6, report.errors


# -------------------------------------------------------------------------------- 5xx, slowness


def test_mcpd_lost_500_is_retried_within_the_call(rig_factory):
    rig = rig_factory()
    rig.emu.fail_next(2, "mcpd", path=r"/ltm/pool/", method="GET")
    rig.emu.fail_next(1, "mcpd", path=r"/members/", method="PATCH")
    report = rig.tick()
    assert report.ok and report.applied == 3
    assert rig.log.named("bigip_read_failed") == []


def test_mcpd_lost_for_a_whole_tick_writes_nothing_and_the_next_tick_recovers(rig_factory):
    rig = rig_factory()
    rig.emu.fail_next(3, "mcpd", path=r"/ltm/pool/", method="GET")  # every attempt of one call
    report = rig.tick()
    assert report.plans == () and "connection to mcpd has been lost" in report.errors[0]
    assert rig.patches() == []
    report = rig.tick()
    assert report.ok and report.applied == 3


def test_bigip_slower_than_the_timeout_bounds_the_tick_and_recovers(rig_factory):
    rig = rig_factory(pools=2, f5_timeout=0.3)
    rig.settle()
    rig.emu.latency = 0.6
    rig.clock.advance(rig.pool_fetch)  # membership cache expired: the tick must read
    started = time.monotonic()
    report = rig.tick()
    took = time.monotonic() - started
    assert report.plans == () and "no complete reply within 0.3s" in report.errors[0]
    assert "not read" in report.errors[1]  # the second pool is not waited on again in the same tick
    # Bounded by one pool's 3 attempts (0.9 s plus backoff), not both pools' (3 s and more): generous for CI.
    assert took < 2.5, f"tick took {took:.2f}s"
    rig.emu.latency = 0.0
    rig.servers[2].load = (0, 0, 0.0)
    deadline = time.monotonic() + 10
    report = rig.tick()
    while not report.ok and time.monotonic() < deadline:  # the emulator may still be answering the slow calls
        report = rig.tick()
    assert report.ok and report.applied >= 2


# -------------------------------------------------------------------------------- membership changes


def test_member_removed_between_read_and_write_404_is_not_fatal_and_refreshes(rig_factory):
    rig = rig_factory(ratios=[100, 100, 100])
    gone = rig.members[2]
    rig.rec.scraper = HookScraper(rig.rec.scraper, lambda: rig.emu.remove_member(rig.refs[0].full_path, gone))
    report = rig.tick()
    assert report.failed == 1 and report.applied == 1  # member 0 stays at 100; 1 and 2 are written
    assert any("404" in e and gone in e for e in report.errors)
    assert rig.refs[0].full_path not in rig.rec.cache  # membership re-read next tick
    rig.rec.scraper = rig.rec.scraper.real
    report = rig.tick()
    assert report.ok and [p.member.key for p in report.plans[0].members] == rig.members[:2]
    assert len(rig.log.named("write_failed", member=gone)) == 1


def test_pool_deleted_other_pools_continue_and_it_is_logged_once(rig_factory):
    rig = rig_factory(pools=2)
    rig.settle()
    rig.emu.remove_pool(rig.refs[1].full_path)
    rig.clock.advance(rig.pool_fetch)
    rig.servers[2].load = (0, 0, 0.0)
    for _ in range(3):
        report = rig.tick()
        assert [p.pool.ref for p in report.plans] == [rig.refs[0]]
        assert "was not found" in report.errors[0]
    assert rig.ratios(0)[2] > 10
    assert len(read_failures(rig, 1)) == 1
    rig.emu.add_pool(rig.refs[1].full_path, members=[{"name": m, "ratio": 1} for m in rig.members])
    report = rig.tick()
    assert report.ok and len(report.plans) == 2 and report.applied == 3


def test_member_added_is_scraped_and_written_after_the_membership_refresh(rig_factory):
    rig = rig_factory()
    rig.settle()
    extra = type(rig.servers[0])(0, 0, 0.0)
    rig.servers.append(extra)
    name = f"127.0.0.1:{extra.start()}"
    rig.emu.add_member(rig.refs[0].full_path, name, ratio=1)
    rig.members.append(name)
    rig.clock.advance(rig.pool_fetch)
    report = rig.tick()
    assert report.ok and name in [p.member.key for p in report.plans[0].members]
    assert rig.emu.ratios(rig.refs[0].full_path)[name] == 60  # from BIG-IP's default 1: floor 10 + max_step 50
    assert rig.tick().ok
    assert rig.emu.ratios(rig.refs[0].full_path)[name] == 100
