"""Shared pieces of the control-plane benchmarks (bench/tick.py, writes.py, memory.py, tokens.py).

`Edges` runs, in a child process so their CPU does not count against (or share a GIL with) the
controller being measured:

- a selector-based (asyncio) page server: one listening socket per member on 127.0.0.1:<port>, each
  serving a full-size vLLM page (~40 KB, rendered by controller.sim.pages from a loaded simulated
  engine) after `latency` seconds, HTTP/1.1 keep-alive, gzip when the client accepts it (pre-compressed,
  as a real exporter's cost is not ours to measure);
- the BIG-IP emulator (controller.sim.bigip) over HTTPS, with its latency knob.

The parent talks to the child over a pipe: stats, latency, page rotation, emulator counters.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: `python bench/_common.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.config.schema import AppConfig, F5Config, MetricsConfig, PoolConfig, SchedulerConfig
from controller.model import PoolRef

PASSWORD = "bench-secret-password"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


# ----------------------------------------------------------------------------------------- pages


def make_pages(count: int, seed: int = 11) -> list[bytes]:
    """`count` distinct full-size vLLM pages: a simulated engine driven through real load (so every
    histogram has data), snapshotted at several points, with per-page queue/running/KV values."""
    from controller.sim import pages
    from controller.sim.engine import Engine, Request, preset

    rnd = random.Random(seed)
    engine = Engine(preset("a100-40g"))
    snaps = []
    t = 0.0
    for _step in range(8):
        for _ in range(60):
            engine.submit(Request(rnd.randint(100, 3000), rnd.randint(20, 600)), t)
            t += rnd.expovariate(20.0)
        engine.advance(t)
        snaps.append(engine.snapshot())
    out = []
    for i in range(count):
        snap = snaps[i % len(snaps)]
        snap = replace(snap, waiting=rnd.randint(0, 30), running=rnd.randint(1, 64),
                       kv_usage=round(rnd.uniform(0.05, 0.95), 4))
        out.append(pages.render(snap, "vllm").encode())
    return out


class _PageProtocol(asyncio.Protocol):
    def __init__(self, farm: _PageFarm, index: int):
        self.farm = farm
        self.index = index
        self.buf = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.farm.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            self.buf = rest
            low = head.lower()
            gz = b"gzip" in _header(low, b"accept-encoding")
            close = _header(low, b"connection") == b"close"
            self.farm.requests += 1
            self.farm.loop.call_later(self.farm.latency, self._reply, gz, close)

    def _reply(self, gz: bool, close: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        farm = self.farm
        page = (farm.index_for(self.index))
        body = farm.gzipped[page] if gz else farm.pages[page]
        farm.bytes_sent += len(body)
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE + b"\r\nContent-Length: " + str(len(body)).encode()
                + (b"\r\nContent-Encoding: gzip" if gz else b"") + (b"\r\nConnection: close" if close else b"")
                + b"\r\n\r\n")
        self.transport.write(head + body)
        if close:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.transport = None


def _header(head: bytes, name: bytes) -> bytes:
    """The value of header `name` in a lower-cased request head, or b""."""
    i = head.find(b"\r\n" + name + b":")
    if i < 0:
        return b""
    return head[i + len(name) + 3:].split(b"\r\n", 1)[0].strip()


class _PageFarm:
    def __init__(self, pages: list[bytes], latency: float):
        self.pages = pages
        self.gzipped = [gzip.compress(p, compresslevel=5) for p in pages]
        self.latency = latency
        self.rotate = 0  # 0: member i always gets page i; n > 0: the page moves on every n requests
        self.requests = 0
        self.connections = 0
        self.bytes_sent = 0
        self.loop = None

    def index_for(self, member: int) -> int:
        if not self.rotate:
            return member % len(self.pages)
        return (member + self.requests // self.rotate) % len(self.pages)


def _child(conn, members: int, latency: float, bigip_latency: float, pools: int, page_count: int) -> None:
    from controller.sim.bigip import BigIPEmulator

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    farm = _PageFarm(make_pages(page_count or members), latency)
    farm.loop = loop
    ports = []
    for i in range(members):
        server = loop.run_until_complete(loop.create_server(lambda i=i: _PageProtocol(farm, i), "127.0.0.1", 0, backlog=256))
        ports.append(server.sockets[0].getsockname()[1])
    emu = BigIPEmulator({"admin": PASSWORD}, latency=bigip_latency)
    emu.start()
    per_pool = -(-members // pools)
    names = []
    for p in range(pools):
        chunk = [f"127.0.0.1:{port}" for port in ports[p * per_pool:(p + 1) * per_pool]]
        name = f"/Common/bench-{p}"
        emu.add_pool(name, chunk, lb_mode="ratio-least-connections-member")
        names.append(name)

    def control() -> None:
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:
                cmd, arg = "stop", None
            try:
                if cmd == "stop":
                    emu.stop()
                    loop.call_soon_threadsafe(loop.stop)
                    conn.send(None)
                    return
                conn.send(_command(cmd, arg, farm, emu))
            except Exception as e:  # noqa: BLE001 - report to the parent
                conn.send(e)

    conn.send({"ports": ports, "pools": names, "bigip_port": emu.port, "cert": emu.cert_path})
    threading.Thread(target=control, daemon=True).start()
    loop.run_forever()


def _command(cmd: str, arg: Any, farm: _PageFarm, emu) -> Any:
    if cmd == "stats":
        log = list(emu.request_log)
        return {"page_requests": farm.requests, "page_connections": farm.connections, "page_bytes": farm.bytes_sent,
                "bigip_requests": len(log), "bigip_log": [(r.method, r.path, r.status) for r in log],
                "bigip_writes": len(emu.writes), "bigip_commits": emu.commits, "bigip_logins": emu.logins,
                "live_tokens": len(emu.live_tokens())}
    if cmd == "clear":
        emu.clear_logs()
        return None
    if cmd == "latency":
        farm.latency = arg
        return None
    if cmd == "bigip_latency":
        emu.latency = arg
        return None
    if cmd == "rotate":
        farm.rotate = arg
        return None
    if cmd == "ratios":
        return {p: emu.ratios(p) for p in arg}
    raise ValueError(cmd)


class Edges:
    """The engines' page server and the BIG-IP emulator, in a child process."""

    def __init__(self, members: int, *, latency: float = 0.005, bigip_latency: float = 0.0, pools: int = 1,
                 page_count: int = 0):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, members, latency, bigip_latency, pools, page_count),
                                daemon=True)
        self.proc.start()
        info = self._conn.recv()
        self.ports: list[int] = info["ports"]
        self.pools: list[str] = info["pools"]
        self.bigip_port: int = info["bigip_port"]
        self.cert: str = info["cert"]

    def call(self, cmd: str, arg: Any = None) -> Any:
        self._conn.send((cmd, arg))
        out = self._conn.recv()
        if isinstance(out, Exception):
            raise out
        return out

    def stats(self) -> dict:
        return self.call("stats")

    def close(self) -> None:
        try:
            self.call("stop")
        except Exception:  # noqa: BLE001
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()

    def __enter__(self) -> Edges:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def config(self, *, concurrency: int = 32, pool_fetch_interval: float = 0.0, write_mode: str = "patch",
               timeout: float = 3.0, deadline: float | None = None, max_writes_per_minute: int = 600,
               write_concurrency: int = 4) -> AppConfig:
        return app_config(self.bigip_port, self.cert, [p.rsplit("/", 1)[1] for p in self.pools],
                          concurrency=concurrency, pool_fetch_interval=pool_fetch_interval, write_mode=write_mode,
                          timeout=timeout, deadline=deadline, max_writes_per_minute=max_writes_per_minute,
                          write_concurrency=write_concurrency)


def app_config(port: int, cert: str, pool_names: Sequence[str], *, concurrency: int = 32,
               pool_fetch_interval: float = 0.0, write_mode: str = "patch", timeout: float = 3.0,
               deadline: float | None = None, max_writes_per_minute: int = 600, write_concurrency: int = 4,
               tick_ms: int = 1000) -> AppConfig:
    return AppConfig(
        f5=F5Config("127.0.0.1", port=port, username="admin", password=PASSWORD, verify_tls=cert,
                    write_mode=write_mode, max_writes_per_minute=max_writes_per_minute,
                    write_concurrency=write_concurrency),
        pools=tuple(PoolConfig(PoolRef(n), "vllm", MetricsConfig(timeout=timeout)) for n in pool_names),
        scheduler=SchedulerConfig(metrics_fetch_interval_ms=tick_ms, pool_fetch_interval=pool_fetch_interval,
                                  scrape_concurrency=concurrency, tick_deadline=deadline),
    )


# ----------------------------------------------------------------------------------------- figures


def rss_mb() -> float:
    """Current resident set size in MiB (from /proc; peak is `peak_rss_mb`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def quiet_logs() -> None:
    from controller import logs

    logs.setup("WARNING", stream=open(os.devnull, "w"), json=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    import platform

    return f"{platform.node()} {os.cpu_count()} CPU, Python {platform.python_version()}, {platform.machine()}"


def collect() -> None:
    gc.collect()
    gc.collect()
