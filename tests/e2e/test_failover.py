"""FailoverClient against an emulated HA pair over HTTPS: which unit is active, and what is never written."""

from __future__ import annotations

import pytest

from controller.config.schema import F5Config
from controller.errors import NotActiveError
from controller.ltm.failover import FailoverClient, read_state
from controller.model import PoolRef
from controller.sim.bigip import BigIPEmulator, HAPair

USERS = {"admin": "secret"}
REF = PoolRef("llm")


class Log:
    def __init__(self):
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event, **kw):
        self.lines.append((event, kw))

    info = warning

    def named(self, event):
        return [kw for e, kw in self.lines if e == event]


@pytest.fixture
def pair():
    p = HAPair(BigIPEmulator(USERS, hostname="a.example.com"), BigIPEmulator(USERS, hostname="b.example.com"))
    p.add_pool("/Common/llm", ["10.0.0.1:8000"])
    p.start()
    yield p
    p.stop()


def client(pair, hosts=None, log=None):
    cfg = F5Config(host=pair.hosts[0], hosts=tuple(hosts or pair.hosts), port=pair.a.port, password="secret",
                   verify_tls=pair.cert_path, timeout=5)
    return FailoverClient(cfg, log=log or Log(), sleep=lambda s: None)


def test_reads_go_to_the_active_unit_and_a_swap_is_followed_with_one_line(pair):
    log = Log()
    c = client(pair, log=log)
    assert c.unit() == pair.hosts[0]
    c.read_pool(REF)
    pair.swap()
    assert c.unit() == pair.hosts[1] and c.failovers == 1
    assert [kw["to_host"] for kw in log.named("bigip_failover")] == [pair.hosts[1]]
    assert [s.state for s in c.status()] == ["standby", "active"]
    c.close()
    assert pair.live_tokens() == 0


def test_no_active_unit_means_no_reads_and_failed_writes(pair):
    pair.a.set_failover_state("standby")
    c = client(pair)
    with pytest.raises(NotActiveError, match="no unit of the device group is active"):
        c.read_pool(REF)
    pair.a.set_failover_state("active")
    pair.b.set_failover_state("active")
    with pytest.raises(NotActiveError, match="split brain"):
        c.unit()
    assert pair.writes() == []
    c.close()


def test_a_single_standby_host_is_refused_with_the_reason(pair):
    c = client(pair, hosts=[pair.hosts[1]])
    with pytest.raises(NotActiveError, match="is standby, not active"):
        c.unit()
    c.close()


def test_state_falls_back_to_cm_device_then_unknown(pair):
    c = client(pair, hosts=[pair.hosts[0]])
    unit = c.units[pair.hosts[0]]
    pair.a.fail_next(1, (404, {"code": 404, "message": "Object not found", "errorStack": []}),
                     path="failover-status")
    assert read_state(unit) == "active"  # from cm/device selfDevice
    pair.a.fail_next(2, (404, {"code": 404, "message": "Object not found", "errorStack": []}), path="/mgmt/tm/cm/")
    assert read_state(unit) == "unknown"
    c.close()


def test_every_unit_shares_one_tick_budget(pair):
    c = client(pair)
    budgets = {id(u.budget) for u in c.units.values()}
    assert len(budgets) == 1
    c.begin_tick(5.0)
    assert all(u.budget.remaining() is not None for u in c.units.values())
    c.end_tick()
    c.close()


def test_bigip_latency_is_recorded_under_the_real_failover_client(pair):
    """Issue 24 item 5: the daemon's BigIP is a FailoverClient (no `session`); telemetry reaches every unit's
    calls through the typed `observe_requests` hook of the BigIP protocol."""
    from types import SimpleNamespace

    from controller.config.schema import TelemetryConfig
    from controller.telemetry import Telemetry, attach

    bigip = client(pair)
    tel = Telemetry(TelemetryConfig(enabled=False), tick_seconds=1.0)
    daemon = SimpleNamespace(cfg=SimpleNamespace(pools=(), scheduler=SimpleNamespace(tick_seconds=1.0)),
                             rec=SimpleNamespace(bigip=bigip, last_scrapes={}), on_tick=[], on_reload=[], on_wait=[],
                             observe_requests=bigip.observe_requests)
    attach(tel, daemon)
    attach(tel, daemon)  # twice: still one observation per call
    try:
        bigip.read_pool(REF)
        calls = bigip.calls
    finally:
        bigip.close()
    count = tel.registry.get_sample_value("f5lr_bigip_request_duration_seconds_count", {"method": "GET", "code": "2xx"})
    logins = tel.registry.get_sample_value("f5lr_bigip_request_duration_seconds_count", {"method": "POST", "code": "2xx"})
    assert count is not None and count >= 2  # the failover check and the pool read, at least
    assert count + (logins or 0) <= calls + 1  # one observation per call, not two (the delete may be DELETE)


def test_the_daemon_records_bigip_latency_through_its_own_client_and_after_a_reload(pair, tmp_path, monkeypatch):
    """Issue 21: the BIG-IP latency histogram README and the Grafana dashboard show is recorded by the daemon as
    it runs: `daemon.build` wires a FailoverClient, telemetry hooks it through the typed `observe_requests`,
    and a reload's new client is hooked too (no `session` reached through getattr)."""
    import yaml

    from controller.config import yamlfile
    from controller.config.schema import TelemetryConfig
    from controller.loop.daemon import Daemon
    from controller.ltm.failover import FailoverClient
    from controller.telemetry import Telemetry, attach

    monkeypatch.setenv("F5_PASSWORD", "secret")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "f5": {"host": list(pair.hosts), "port": pair.a.port, "username": "admin",
               "password_env": "F5_PASSWORD", "verify_tls": pair.cert_path, "timeout": 5},
        "scheduler": {"metrics_fetch_interval": 1000},
        "pools": [{"name": "llm", "partition": "Common", "engine_type": "vllm", "metrics": {"timeout": 0.2}}],
    }))
    d = Daemon(str(path), yamlfile.load(str(path)), dry_run=True)
    tel = attach(Telemetry(TelemetryConfig(enabled=False), tick_seconds=1.0), d)

    def observed() -> float:
        return sum(tel.registry.get_sample_value("f5lr_bigip_request_duration_seconds_count",
                                                 {"method": method, "code": "2xx"}) or 0.0 for method in ("GET", "POST"))

    try:
        assert isinstance(d.rec.bigip, FailoverClient)
        d.tick()
        first = observed()
        assert first >= 2  # the failover check and the pool read, at least
        before = d.rec.bigip
        d.request_reload()
        d.tick()  # the reload builds a new client first; telemetry hooks it
        assert d.rec.bigip is not before
        assert observed() >= first + 2
    finally:
        d.rec.bigip.close()
        d.rec.scraper.close()
