"""The simulated engines' /metrics servers: loopback HTTP, gzip, flavour paths and fault knobs."""

from __future__ import annotations

import gzip
import http.client
import math
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.sim.engine import Engine, EngineSpec, RealtimeEngine, Request
from controller.sim.engine_server import FAULTS, EngineFarm, EngineServer


class Clock:
    def __init__(self, now=500.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def engine():
    clock = Clock()
    rt = RealtimeEngine(Engine(EngineSpec(max_num_seqs=2)), clock=clock)
    for _ in range(5):
        rt.submit(Request(200, 100))
    clock.now += 0.1
    return rt


@pytest.fixture
def server(engine):
    srv = EngineServer(engine, "vllm", hang_seconds=5.0)
    srv.start()
    yield srv
    srv.stop()


def get(port, path="/metrics", timeout=5.0, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def value(text, name, **labels):
    found = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, found)
    return found[0]


def test_serves_the_engines_page_over_loopback(server, engine):
    status, headers, body = get(server.port)
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    snap = engine.snapshot()
    assert value(text, "vllm:num_requests_waiting") == snap.waiting == 3
    assert value(text, "vllm:num_requests_running") == 2
    assert server.url == f"http://127.0.0.1:{server.port}/metrics" and server.scrapes == 1
    assert get(server.port, "/v1/models")[0] == 404


def test_gzip_when_accepted(server):
    status, headers, body = get(server.port, headers={"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert "vllm:num_requests_waiting" in gzip.decompress(body).decode()
    assert "Content-Encoding" not in get(server.port)[1]


def test_keep_alive_serves_several_scrapes_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read()
    finally:
        conn.close()
    assert server.scrapes == 3


def test_page_follows_the_engine(server, engine):
    before = value(get(server.port)[2].decode(), "vllm:num_requests_waiting")
    engine.clock.now += 60.0  # everything finishes
    text = get(server.port)[2].decode()
    assert before == 3 and value(text, "vllm:num_requests_waiting") == 0
    assert value(text, "vllm:request_success_total", finished_reason="stop") == 5


def test_refuse_closes_the_port_and_clearing_it_listens_again(server):
    port = server.port
    server.fault = "refuse"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    server.fault = None
    assert server.port == port and get(port)[0] == 200


def test_timeout_hangs_past_the_client_timeout(server):
    server.fault = "timeout"
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        get(server.port, timeout=0.3)
    assert time.monotonic() - started < 2.0
    server.fault = None
    assert get(server.port)[0] == 200


def test_trickle_sends_the_page_slowly(engine):
    with EngineServer(engine, "vllm", fault="trickle", trickle_bytes=8192, trickle_interval=0.05) as srv:
        started = time.monotonic()
        status, headers, body = get(srv.port)
        elapsed = time.monotonic() - started
    assert status == 200 and headers["Connection"] == "close"
    assert elapsed >= 0.15 and value(body.decode(), "vllm:num_requests_running") == 2


@pytest.mark.parametrize("fault", ["garbage", "html200", "http500"])
def test_bad_replies(server, fault):
    server.fault = fault
    status, headers, body = get(server.port)
    if fault == "http500":
        assert status == 500
        return
    assert status == 200
    if fault == "html200":
        assert headers["Content-Type"].startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
    else:
        assert b"\x00" in body and b"vllm:" not in body


def test_huge_page_is_ten_megabytes_of_valid_text(server):
    server.fault = "huge"
    status, _, body = get(server.port, timeout=10)
    assert status == 200 and len(body) >= 10 * 1024 * 1024
    text = body.decode()
    assert text.startswith("# HELP python_gc_objects_collected_total") and "vllm:num_requests_waiting{" in text
    assert text.endswith("} 1.0\n")


def test_nan_and_missing(server):
    server.fault = "nan"
    text = get(server.port)[2].decode()
    assert math.isnan(value(text, "vllm:num_requests_waiting")) and math.isnan(value(text, "vllm:kv_cache_usage_perc"))
    server.fault = "missing"
    text = get(server.port)[2].decode()
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert "vllm:num_requests_waiting" not in names and "vllm:kv_cache_usage_perc" not in names
    assert "vllm:num_preemptions" in names


def test_latency_delays_every_reply(server):
    server.latency = 0.2
    started = time.monotonic()
    assert get(server.port)[0] == 200
    assert time.monotonic() - started >= 0.2


def test_unknown_fault_and_flavour_are_refused(engine):
    with pytest.raises(ValueError):
        EngineServer(engine, "vllm", fault="explode")
    with pytest.raises(ValueError):
        EngineServer(engine, "mystery")
    assert None in FAULTS and "refuse" in FAULTS


def test_trtllm_page_is_at_prometheus_metrics(engine):
    with EngineServer(engine, "trtllm") as srv:
        assert srv.url.endswith("/prometheus/metrics")
        status, _, body = get(srv.port, "/prometheus/metrics")
        assert status == 200 and value(body.decode(), "trtllm_num_requests_waiting") == 3


def test_data_parallel_ranks_from_several_engines():
    clock = Clock()
    ranks = [RealtimeEngine(Engine(EngineSpec(max_num_seqs=1)), clock=clock) for _ in range(2)]
    for _ in range(3):
        ranks[1].submit(Request(100, 50))
    with EngineServer(ranks, "vllm-dp") as srv:
        text = get(srv.port)[2].decode()
    assert value(text, "vllm:num_requests_waiting", engine="0") == 0
    assert value(text, "vllm:num_requests_waiting", engine="1") == 2


def test_farm_gives_each_engine_its_own_port():
    clock = Clock()
    members = {f"gpu{i}": (RealtimeEngine(Engine(EngineSpec(name=f"gpu{i}")), clock=clock), flavour)
               for i, flavour in enumerate(["vllm", "sglang", "llamacpp"])}
    members["gpu1"][0].submit(Request(10, 10))
    with EngineFarm(members) as farm:
        ports = {name: srv.port for name, srv in farm.servers.items()}
        assert len(set(ports.values())) == 3
        assert b"sglang:num_running_reqs" in get(ports["gpu1"])[2]
        farm["gpu2"].fault = "refuse"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ports["gpu2"]), timeout=2)
        assert set(farm.urls()) == set(members)
