"""The whole rig: real llama.cpp engines, HAProxy in front of them, the BIG-IP emulator, and the real
controller (`python -m controller run`) between them.

    load generator ──▶ HAProxy (leastconn, weights, maxconn) ──▶ llama-server × N
                          ▲ runtime API                              │ /metrics, /props
                     Mirror (ratio, connection limit)                │
                          │                                          ▼
                   BIG-IP emulator ◀── PATCH ── f5-llm-ratio run ◀── scrape

Contenders run in alternation on the same arrivals, rotated each round so none always goes first:

- `lc`: HAProxy leastconn at equal weights, no controller (LTM's least-connections-member);
- `default`: the controller's default policy, its ratios and limits mirrored into HAProxy;
- `static-speed` (reference, not a bound): fixed weights proportional to each engine's measured
  request throughput, no limits: what a one-off hand setting by speed gives;
- `static-slots` (reference, not a bound): equal weights and each engine's connection limit at its slot
  count, HAProxy queueing the rest: what an admin who copies `-np` into LTM's connection limit gets.

The emulated pool queues at connection limits (`queueOnConnectionLimit`, as docs/how-it-works.md advises) unless
`Options.queue` is off; HAProxy's backend queue (`timeout queue` 60 s) stands in for LTM's.

The controller runs for the whole session as a daemon does; it is stopped (SIGSTOP) while the other
contenders run, so it neither acts on nor learns from traffic it does not steer, and continued
(SIGCONT) for its own rounds. A warm-up under the controller precedes the first round (not counted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import requests
import yaml

from bench.real import engine as eng
from bench.real import haproxy as hap
from bench.real import load
from bench.real.model import ModelSpec, write_model

POOL = "/Common/llm-real"
USER = "admin"
PASSWORD = "real-rig-not-a-secret"
REPO = pathlib.Path(__file__).resolve().parents[2]

#: the default pool: two engines, the second about 1.7-2x slower per request (measured by the rig)
DEFAULT_ENGINES = (("fast", ModelSpec("fast", 512, 8)), ("slow", ModelSpec("slow", 768, 8)))


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    arrivals: Callable[[int, float, float], list[load.Arrival]]  # (seed, rate, duration) -> arrivals
    mean_prompt: float
    mean_output: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Options:
    duration: float = 60.0
    rounds: int = 3
    load: float = 0.8  # offered load as a share of the pool's measured capacity
    workloads: tuple[str, ...] = ("poisson", "conv")
    contenders: tuple[str, ...] = ("lc", "default", "static-speed")
    warmup: float = 20.0
    slots: int = 4
    threads: int = 1
    build: bool = True
    queue: bool = True  # the pool queues at connection limits (queueOnConnectionLimit enabled)
    interval_ms: int = 1000
    workdir: pathlib.Path | None = None
    engines: Sequence[tuple[str, ModelSpec]] = DEFAULT_ENGINES
    log: Callable[[str], None] = print


class Rig:
    def __init__(self, opts: Options):
        self.o = opts
        self.log = opts.log
        self.tmp = tempfile.TemporaryDirectory(prefix="f5lr-real-")
        self.dir = opts.workdir or pathlib.Path(self.tmp.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.engines: dict[str, eng.EngineServer] = {}
        self.speeds: dict[str, eng.Speed] = {}
        self.bigip = None
        self.haproxy: hap.HAProxy | None = None
        self.mirror: hap.Mirror | None = None
        self.controller: subprocess.Popen | None = None
        self.telemetry_port = 0
        self.member_of: dict[str, str] = {}  # engine name -> BIG-IP member name
        self.build: eng.Build | None = None
        self.scale = 100

    # -- bring-up ---------------------------------------------------------------------------------------
    def start(self) -> Rig:
        self.build = eng.ensure_server(build=self.o.build, log=self.log)
        self.log(f"llama-server: {self.build.path} ({'reused' if self.build.reused else 'built'}; "
                 f"build took {int(self.build.seconds // 60)} min {self.build.seconds % 60:.0f} s)")
        models = eng.cache_dir() / "models"
        for name, spec in self.o.engines:
            path = write_model(spec, models)
            server = eng.EngineServer(name, self.build.path, path, free_port(), slots=self.o.slots,
                                      threads=self.o.threads, log_path=self.dir / f"engine-{name}.log")
            self.engines[name] = server.start()
            self.speeds[name] = eng.measure(server)
            self.log(f"engine {name}: {spec.width}-wide {spec.layers}-layer, {self.o.slots} slots, {self.o.threads} thread(s): "
                     f"{self.speeds[name].prompt_tps:.0f} prompt tok/s, {self.speeds[name].gen_tps:.0f} gen tok/s")
        self._start_bigip()
        self.haproxy = hap.HAProxy(free_port(), {n: s.port for n, s in self.engines.items()}, self.dir).start()
        self.mirror = hap.Mirror(self.haproxy, self._read_pool, self.scale)
        self._start_controller()
        return self

    def _start_bigip(self) -> None:
        from controller.sim.bigip import BigIPEmulator

        self.bigip = BigIPEmulator(users={USER: PASSWORD}, cert_dir=str(self.dir))
        self.bigip.start()
        members = []
        for name, server in self.engines.items():
            self.member_of[name] = f"127.0.0.1:{server.port}"
            members.append({"name": self.member_of[name]})
        self.bigip.add_pool(POOL, members=members, lb_mode="ratio-least-connections-member",
                            queue_on_connection_limit=self.o.queue)

    def _read_pool(self) -> dict[str, tuple[int, int]]:
        by_member = {m: n for n, m in self.member_of.items()}
        return {by_member[m["name"]]: (int(m.get("ratio", 1)), int(m.get("connectionLimit", 0)))
                for m in self.bigip.members(POOL) if m["name"] in by_member}

    def _start_controller(self) -> None:
        self.telemetry_port = free_port()
        cfg = {
            "f5": {"host": "127.0.0.1", "port": self.bigip.port, "username": USER, "password_env": "F5_PASSWORD",
                   "verify_tls": self.bigip.cert_path, "timeout": 2},
            "scheduler": {"metrics_fetch_interval": self.o.interval_ms, "pool_fetch_interval": 10},
            "pools": [{"name": "llm-real", "partition": "Common", "engine_type": "llamacpp",
                       "metrics": {"schema": "http", "path": "/metrics", "timeout": 1}}],
            "telemetry": {"host": "127.0.0.1", "port": self.telemetry_port},
        }
        path = self.dir / "controller.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(F5_PASSWORD=PASSWORD, NO_PROXY="*", PYTHONUNBUFFERED="1")
        env.pop("CREDENTIALS_DIRECTORY", None)
        self._controller_log = open(self.dir / "controller.log", "w")
        self.controller = subprocess.Popen([sys.executable, "-m", "controller", "run", "--config", str(path)],
                                           cwd=REPO, env=env, stdout=self._controller_log, stderr=subprocess.STDOUT,
                                           preexec_fn=eng.die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.controller.poll() is not None:
                raise RuntimeError(f"the controller exited with {self.controller.returncode}; see {self.dir / 'controller.log'}")
            with contextlib.suppress(requests.RequestException, ValueError, KeyError):
                if self.status()["pools"]:
                    return
            time.sleep(0.2)
        raise RuntimeError("the controller's /status did not come up")

    def stop(self) -> None:
        if self.mirror:
            self.mirror.stop()
        if self.controller and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGCONT)
            eng.stop_process(self.controller, 15.0)
        if self.haproxy:
            self.haproxy.stop()
        for server in self.engines.values():
            server.stop()
        if self.bigip:
            self.bigip.stop()
        self.tmp.cleanup()

    # -- views -------------------------------------------------------------------------------------------
    def status(self) -> dict:
        if self.controller is not None:
            self.controller.send_signal(signal.SIGCONT)  # it may be stopped between its rounds
        return requests.get(f"http://127.0.0.1:{self.telemetry_port}/status", timeout=5).json()

    def members_status(self) -> dict[str, dict]:
        """The controller's /status member objects by engine name."""
        by_member = {m: n for n, m in self.member_of.items()}
        out = {}
        for pool in self.status().get("pools", []):
            for m in pool.get("members", []):
                key = f"{m.get('ip')}:{m.get('port')}"
                if key in by_member:
                    out[by_member[key]] = m
        return out

    def learned_speed(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, m in self.members_status().items():
            speed = m.get("speed")
            out[name] = speed.get("value") if isinstance(speed, dict) else speed
        return out

    def request_rate(self, prompt: float, output: float) -> float:
        """Requests/s of this mix one engine serves alone, one request at a time (its measured speeds)."""
        return sum(s.request_rate(prompt, output) for s in self.speeds.values())

    # -- running contenders -----------------------------------------------------------------------------
    def use(self, contender: str, weights: dict[str, int] | None = None, limits: dict[str, int] | None = None) -> None:
        """Put the data plane (and the controller) in the state one contender needs."""
        assert self.haproxy and self.mirror and self.controller
        if contender == "default":
            self.controller.send_signal(signal.SIGCONT)
            self.mirror.resume()
            return
        self.controller.send_signal(signal.SIGSTOP)
        self.mirror.pause()
        for name in self.engines:
            self.haproxy.set_weight(name, (weights or {}).get(name, hap.MAX_WEIGHT // 2))
            self.haproxy.set_maxconn(name, (limits or {}).get(name, 0))

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until no engine runs or defers a request (the previous contender's tail is gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = 0.0
            for server in self.engines.values():
                with contextlib.suppress(requests.RequestException):
                    for line in requests.get(server.url + "/metrics", timeout=2).text.splitlines():
                        if line.startswith(("llamacpp:requests_processing", "llamacpp:requests_deferred")):
                            busy += float(line.split()[-1])
            if busy == 0:
                return
            time.sleep(0.5)

    def run_once(self, contender: str, arrivals: list[load.Arrival], weights: dict[str, int] | None = None,
                 limits: dict[str, int] | None = None) -> list[load.Outcome]:
        self.use(contender, weights, limits)
        try:
            return load.run("127.0.0.1", self.haproxy.port, arrivals, patience=60.0, drain=60.0)
        finally:
            self.wait_idle()

    def request_rate_of(self, name: str, workloads: dict) -> float:
        """One engine's requests/s of the workloads' mean mix, one request at a time (from its measured speeds)."""
        prompt = sum(w.mean_prompt for w in workloads.values()) / len(workloads)
        output = sum(w.mean_output for w in workloads.values()) / len(workloads)
        return self.speeds[name].request_rate(prompt, output)
