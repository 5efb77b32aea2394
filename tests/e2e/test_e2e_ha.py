"""End to end: the real CLI against an emulated HA pair (two units, one sync-failover group), FQDN pools
and modes that ignore member ratios (issue 11)."""

from __future__ import annotations

import time

import pytest

from controller.sim.bigip import BigIPEmulator, HAPair
from controller.sim.engine_server import EngineServer
from tests.e2e_env import (
    PASSWORD,
    POOL,
    USER,
    Daemon,
    Load,
    cli,
    merge,
    seed_config,
    wait_for,
    write_config,
)

LOADS = [(0, 1, 0.1), (6, 4, 0.7), (12, 8, 0.95)]


class Pair:
    """Two emulator units serving one pool of loopback engines on 127.0.0.1:P and 127.0.0.2:P."""

    def __init__(self, auto_sync: bool = False, lb_mode: str = "ratio-least-connections-member"):
        self.loads = [Load(w, r, kv, name=f"e{i}") for i, (w, r, kv) in enumerate(LOADS)]
        self.servers = [EngineServer(load, "vllm") for load in self.loads]
        self.pair = HAPair(BigIPEmulator({USER: PASSWORD}, hostname="bigip-a.example.com"),
                           BigIPEmulator({USER: PASSWORD}, hostname="bigip-b.example.com"), auto_sync=auto_sync)
        self.lb_mode = lb_mode
        self.members: list[str] = []

    def start(self) -> Pair:
        self.members = [f"127.0.0.1:{s.start()}" for s in self.servers]
        self.pair.add_pool(POOL, self.members, lb_mode=self.lb_mode)
        self.pair.start()
        return self

    def stop(self) -> None:
        self.pair.stop()
        for s in self.servers:
            s.stop()

    def config(self, tmp_path, hosts=None, **changes):
        base = seed_config(None, port=self.pair.a.port)
        f5 = {"host": list(hosts if hosts is not None else self.pair.hosts), "verify_tls": self.pair.cert_path}
        base = merge(base, {"f5": f5, "scheduler": {"metrics_fetch_interval": 200}, "telemetry": {"enabled": False}})
        return write_config(tmp_path / "ha.yaml", merge(base, changes))


@pytest.fixture
def ha():
    p = Pair().start()
    yield p
    p.stop()


def test_run_once_writes_only_to_the_active_unit_and_follows_a_swap(ha, tmp_path):
    cfg = ha.config(tmp_path)
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 0, r.err
    a, b = ha.pair.units
    assert [w.failover_state for w in a.writes if w.member] and all(w.failover_state == "active" for w in a.writes)
    assert b.writes == []  # the standby unit: read at most, never written
    ha.pair.swap()
    for load in ha.loads:
        load.set(3, 2, 0.5)  # a change, so the controller has something to write
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 0, r.err
    assert b.writes and all(w.failover_state == "active" for w in b.writes)
    assert ha.pair.writes_off_active() == []
    assert ha.pair.live_tokens() == 0  # one token per unit, each deleted at exit


def test_a_single_configured_standby_unit_is_never_written(ha, tmp_path):
    cfg = ha.config(tmp_path, hosts=[ha.pair.hosts[1]])  # bigip-b: standby
    r = cli("run", "--once", "--config", str(cfg))
    assert r.code == 1
    assert "standby, not active: nothing written" in r.err
    assert ha.pair.b.writes == [] and ha.pair.a.writes == []
    out = cli("check", "--config", str(cfg))
    assert out.code == 1 and f"unit {ha.pair.hosts[1]}" in out.out and "FAIL" in out.out
    assert "standby, not active" in out.out


def test_check_shows_each_unit_and_the_sync_mode(ha, tmp_path):
    r = cli("check", "--config", str(ha.config(tmp_path)))
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    unit_a = next(line for line in lines if f"unit {ha.pair.hosts[0]}" in line)
    unit_b = next(line for line in lines if f"unit {ha.pair.hosts[1]}" in line)
    assert "active" in unit_a and "standby: never written" in unit_b
    sync = next(line for line in lines if line.startswith("config sync"))
    assert "manual sync" in sync and "llm-failover-dg" in sync


def settled(unit, quiet: float = 1.0, timeout: float = 15.0) -> None:
    """Wait until `unit` has taken no write for `quiet` seconds (5 ticks of 200 ms)."""
    last = [len(unit.writes), time.monotonic()]

    def calm() -> bool:
        n = len(unit.writes)
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] >= quiet

    wait_for(calm, timeout, interval=0.05, what="no writes for a second")


def test_the_daemon_follows_failovers_with_one_log_line_each(ha, tmp_path):
    cfg = ha.config(tmp_path)
    d = Daemon(cfg)
    try:
        wait_for(lambda: ha.pair.a.writes, 15, what="first writes on the active unit")
        for n in (1, 2):
            settled(ha.pair.active)  # converged under steady load: the ratios the new active unit must get
            new = ha.pair.swap()
            expected = (ha.pair.b if new is ha.pair.a else ha.pair.a).ratios(POOL)
            wait_for(lambda new=new, expected=expected: new.ratios(POOL) == expected, 5,
                     what=f"ratios restored on the new active unit after swap {n}")
            d.wait_event("bigip_failover", timeout=5, count=n)
        code, _ = d.stop()
    finally:
        d.close()
    assert code == 0
    assert len(d.events("bigip_failover")) == 2
    assert ha.pair.writes_off_active() == []
    assert ha.pair.live_tokens() == 0


def test_round_robin_pool_gets_no_ratio_writes_and_run_once_says_why(tmp_path):
    p = Pair(lb_mode="round-robin").start()
    try:
        r = cli("run", "--once", "--config", str(p.config(tmp_path)))
        assert r.code == 1
        assert "round-robin ignores member ratios" in r.err
        assert f"tmsh modify ltm pool {POOL} load-balancing-mode ratio-least-connections-member" in r.err
        assert [w for u in p.pair.units for w in u.writes] == []
    finally:
        p.stop()


def test_ephemeral_members_are_scraped_but_never_written(tmp_path):
    p = Pair()
    p.members = [f"127.0.0.1:{s.start()}" for s in p.servers]
    static, eph = p.members[:2], p.members[2]
    port = int(eph.rsplit(":", 1)[1])
    for unit in p.pair.units:
        unit.add_pool(POOL, static)
        unit.add_fqdn_member(POOL, "llm.example.com", port, ["127.0.0.1"])
    p.pair.start()
    try:
        r = cli("run", "--once", "--config", str(p.config(tmp_path)))
        assert r.code == 0, r.err
        attempts = [q for u in p.pair.units for q in u.request_log if "_auto_" in q.path and q.method != "GET"]
        assert attempts == []
        assert p.servers[2].scrapes >= 1  # the ephemeral member's engine was read
        assert {w.member for w in p.pair.a.writes if w.member} <= set(static)
    finally:
        p.stop()


def test_a_pool_of_only_ephemeral_members_is_not_steerable(tmp_path):
    p = Pair()
    p.members = [f"127.0.0.1:{s.start()}" for s in p.servers]
    port = int(p.members[0].rsplit(":", 1)[1])
    for unit in p.pair.units:
        unit.add_pool(POOL)
        unit.add_fqdn_member(POOL, "llm.example.com", port, ["127.0.0.1"])
    p.pair.start()
    try:
        cfg = p.config(tmp_path)
        r = cli("run", "--once", "--config", str(cfg))
        assert r.code == 1 and "ephemeral FQDN members" in r.err
        out = cli("check", "--config", str(cfg))
        assert out.code == 1 and "not steerable" in out.out
        assert [q for u in p.pair.units for q in u.request_log if q.method != "GET" and "/ltm/" in q.path] == []
    finally:
        p.stop()


@pytest.mark.parametrize("host, why", [
    ("big ip", "white space"),
    ("10.0.0.1:8443", "carries a port"),
    ("[::1", "unbalanced bracket"),
    ("a" * 300, "at most 253"),
])
def test_bad_hosts_exit_2_naming_the_key_before_any_call(ha, tmp_path, host, why):
    r = cli("run", "--once", "--config", str(ha.config(tmp_path, hosts=[ha.pair.hosts[0], host])))
    assert r.code == 2 and "f5.host" in r.err and why in r.err
    assert ha.pair.a.request_log == [] and ha.pair.b.request_log == []


def test_check_warns_when_the_declaration_names_the_pool(ha, tmp_path):
    for unit in ha.pair.units:
        unit.as3_declaration = {"class": "ADC", "Common": {"class": "Tenant"}, "Tenant": {"class": "Tenant"}}
        unit.add_pool("/Tenant/App/llm", ha.members)
    cfg = ha.config(tmp_path, pools=[{"name": "/Tenant/App/llm", "engine_type": "vllm",
                                      "metrics": {"schema": "http", "port": None, "timeout": 1}}])
    r = cli("check", "--config", str(cfg))
    line = next(x for x in r.out.splitlines() if x.startswith("pool /Tenant/App/llm"))
    assert "warn" in line and "looks owned by AS3" in line


@pytest.mark.parametrize("floating", [True, False])
def test_active_active_run_once_writes_one_unit_and_check_says_so(tmp_path, floating):
    """Issue 22: both units active, each with its own traffic group (or none): not split brain."""
    p = Pair(auto_sync=True).start()
    try:
        p.pair.set_active_active(floating=floating)
        cfg = p.config(tmp_path)
        r = cli("check", "--config", str(cfg))
        assert r.code == 0, r.out + r.err
        assert "active/active" in r.out
        r = cli("run", "--once", "--config", str(cfg))
        assert r.code == 0, r.err
        a, b = p.pair.units
        assert [w for w in a.writes if w.member] and b.writes == []  # one unit written ...
        assert a.ratios(POOL) == b.ratios(POOL)  # ... and the sync carried it
        p.pair.split_brain()
        r = cli("run", "--once", "--config", str(cfg))
        assert r.code == 1 and "split brain" in r.err and "traffic-group-1" in r.err
    finally:
        p.stop()
