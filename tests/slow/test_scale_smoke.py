"""The behaviours the control-plane benchmarks (bench/tick.py, writes.py, memory.py, tokens.py) rely on,
asserted small and untimed: one BIG-IP read per pool per tick, 0 writes at steady load, one commit per
pool in transaction mode, one login and the token deleted, connection reuse across many members."""

from __future__ import annotations

import threading

import pytest

from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, PoolConfig, SchedulerConfig
from controller.engines.scrape import Scraper, Target
from controller.loop import daemon
from controller.model import PoolRef, Sample, ScrapeResult
from controller.sim.bigip import BigIPEmulator
from controller.telemetry import httpserve

PASSWORD = "smoke-password"
POOLS = ("smoke-a", "smoke-b")


class Samples:
    """Every member reports a fixed, member-specific load (no sockets)."""

    def __init__(self, clock):
        self.clock = clock
        self.calls = 0

    def scrape(self, targets, deadline):
        self.calls += 1
        out = {}
        for t in targets:
            n = int(t.member.rsplit(".", 1)[1].split(":")[0])
            out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), sample=Sample(n % 5, 4, (n % 10) / 10))
        return out

    def close(self):
        pass


@pytest.fixture
def rig():
    clock = FakeClock()
    with BigIPEmulator({"admin": PASSWORD}, clock=clock) as emu:
        for i, name in enumerate(POOLS):
            emu.add_pool(f"/Common/{name}", [f"10.9.{i}.{j}:8000" for j in range(1, 26)])

        def build(**f5):
            cfg = AppConfig(
                f5=F5Config("127.0.0.1", port=emu.port, username="admin", password=PASSWORD,
                            verify_tls=emu.cert_path, **f5),
                pools=tuple(PoolConfig(PoolRef(n), "vllm") for n in POOLS),
                scheduler=SchedulerConfig(pool_fetch_interval=0.0),
            )
            rec = daemon.build(cfg, dry_run=False, clock=clock)
            rec.scraper.close()
            rec.scraper = Samples(clock)
            return rec

        yield emu, clock, build


def _calls(emu, method, fragment):
    return sum(1 for r in emu.request_log if r.method == method and fragment in r.path)


def _converge(rec, clock, limit=40):
    for _ in range(limit):
        report = rec.tick()
        clock.advance(60.0)
        if report.applied == 0:
            return report
    raise AssertionError("no steady state")


def test_one_read_per_pool_per_tick_and_no_writes_at_steady_load(rig):
    emu, clock, build = rig
    rec = build()
    _converge(rec, clock)
    for _ in range(3):
        emu.clear_logs()
        report = rec.tick()
        clock.advance(1.0)
        assert report.ok and report.applied == 0
        assert _calls(emu, "GET", "/ltm/pool/") == len(POOLS)  # expandSubcollections: members in the same GET
        # nothing else but the one failover check per tick (issue 11): no login, no write
        assert [r.path for r in emu.request_log if "/ltm/pool/" not in r.path] == ["/mgmt/tm/cm/failover-status"]
        assert len(emu.request_log) == len(POOLS) + 1
        assert all("expandSubcollections=true" in r.query for r in emu.request_log if "/ltm/pool/" in r.path)
    daemon.close(rec)
    assert emu.logins == 1 and emu.live_tokens() == []


def test_only_changed_members_are_written(rig):
    emu, clock, build = rig
    rec = build()
    _converge(rec, clock)
    member = "10.9.0.3:8000"
    emu.set_member("/Common/smoke-a", member, ratio=1)  # someone resets one ratio by hand
    emu.clear_logs()
    report = rec.tick()
    assert report.applied == 1
    patches = [r for r in emu.request_log if r.method == "PATCH"]
    assert len(patches) == 1 and "10.9.0.3:8000" in patches[0].path
    daemon.close(rec)


def test_transaction_mode_commits_once_per_pool(rig):
    emu, clock, build = rig
    rec = build(write_mode="transaction")
    emu.clear_logs()
    commits = emu.commits
    report = rec.tick()
    assert report.applied > len(POOLS)
    assert emu.commits - commits == len(POOLS)
    assert _calls(emu, "POST", "/mgmt/tm/transaction") == len(POOLS)
    daemon.close(rec)


def test_write_cap_defers_the_rest(rig):
    emu, clock, build = rig
    rec = build(max_writes_per_minute=7)
    emu.clear_logs()
    report = rec.tick()
    assert report.applied == 7
    assert sum(len(p.writes) for p in report.plans) > 7
    clock.advance(1.0)
    assert rec.tick().applied == 0  # the minute's budget is spent
    daemon.close(rec)


def test_one_login_and_the_token_is_deleted(rig):
    emu, clock, build = rig
    rec = build()
    for _ in range(20):
        rec.tick()
        clock.advance(25.0)  # 500 s in all: inside one token's 600 s lifetime (refreshed at 540 s)
        assert len(emu.live_tokens()) == 1
    daemon.close(rec)
    assert emu.logins == 1
    assert emu.live_tokens() == []


PAGE = b"vllm:num_requests_waiting 1.0\nvllm:num_requests_running 2.0\nvllm:kv_cache_usage_perc 0.5\n"


def test_scraper_reuses_connections_for_scrape_keepalive_members_and_no_more():
    """More members than urllib3's default number of host pools: with scrape_keepalive covering them all,
    every tick reuses one connection per member; with the default (128, issue 19: sockets bounded), the
    first 128 endpoints do and the other 22 get a connection per page."""
    connections: set[tuple[int, tuple[str, int]]] = set()  # (server, client address and port): one per TCP connection

    def app(i: int) -> httpserve.App:
        def serve(req: httpserve.Request) -> httpserve.Response:
            connections.add((i, req.client))
            return httpserve.Response(body=PAGE, content_type="text/plain; version=0.0.4")

        return serve

    servers = [httpserve.Server(app(i), name=f"page-{i}") for i in range(150)]
    for s in servers:
        s.start()
    try:
        targets = [Target(f"m{i}", f"{s.url}/metrics", "vllm", 5.0) for i, s in enumerate(servers)]
        with Scraper(max_workers=16, keepalive=len(servers)) as scraper:
            for _ in range(3):
                results = scraper.scrape(targets, 20.0)
                assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok][:2]
        assert len(connections) == len(servers)
        connections.clear()
        with Scraper(max_workers=16) as scraper:
            for _ in range(3):
                results = scraper.scrape(targets, 20.0)
                assert all(r.ok for r in results.values()), [r for r in results.values() if not r.ok][:2]
        assert len(connections) == 128 + (len(servers) - 128) * 3
    finally:
        stoppers = [threading.Thread(target=s.stop) for s in servers]  # in parallel: each waits a poll
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()


def test_scraper_reads_the_environment_once_per_url(monkeypatch):
    """The environment (proxies, CA bundle, netrc) still applies, read once per URL rather than per request."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    scraper = Scraper(max_workers=1)
    try:
        proxies, verify, _ = scraper._environment("https://127.0.0.1:1/metrics")
        assert verify == "/nonexistent/ca.pem"
        assert scraper._environment("https://127.0.0.1:1/metrics")[1] is verify
    finally:
        scraper.close()
