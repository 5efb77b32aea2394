"""Shared pieces for the end-to-end CLI tests (tests/e2e/test_e2e_cli.py).

Everything runs on 127.0.0.1 and is started and stopped by the test that uses it:

- `BigIPEmulator` over HTTPS with its self-signed certificate (the config's `f5.verify_tls` points at it);
- one `EngineServer` per pool member, serving a vLLM page built from a `Load` the test sets directly
  (a snapshot of an idle engine with waiting/running/KV overridden: deterministic, no engine clock);
- the real CLI as a subprocess: `sys.executable -m controller ...`, with the password in the environment.

`Stack` ties them together; `write_config` writes the sideband seed's config format (plus `f5.port` and
`f5.verify_tls`) for it; `cli()` runs one command to completion; `Daemon` runs `run` in the background.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from controller.sim.bigip import BigIPEmulator
from controller.sim.engine import Engine, EngineSnapshot, EngineSpec
from controller.sim.engine_server import EngineServer

REPO = pathlib.Path(__file__).resolve().parents[1]
POOL = "/Common/llm-pool-1"
USER = "admin"
# Distinctive values, so a leak into any output is unmistakable.
PASSWORD = "e2e-Pa55w0rd-7qZx!not-in-logs"
METRIC_PASSWORD = "e2e-metric-pw-K3yqv"
API_KEY = "e2e-apikey-9Vt2LmQ"
SECRETS = (PASSWORD, METRIC_PASSWORD, API_KEY)

CLI_TIMEOUT = 30.0  # seconds; generous, a hung CLI fails the test instead of the whole run


# ------------------------------------------------------------------------------------------ engines


class Load:
    """A member's load, settable from the test at any time; EngineServer renders it as a /metrics page."""

    _base: EngineSnapshot | None = None

    def __init__(self, waiting: int = 0, running: int = 0, kv: float = 0.0, name: str = "engine"):
        self.name = name
        self.lock = threading.Lock()
        self.set(waiting, running, kv)

    def set(self, waiting: int, running: int = 0, kv: float = 0.0) -> None:
        with self.lock:
            self.waiting, self.running, self.kv = waiting, running, kv

    def snapshot(self) -> EngineSnapshot:
        if Load._base is None:
            Load._base = Engine(EngineSpec(name="e2e")).snapshot()
        base = Load._base
        with self.lock:
            used = round(self.kv * base.num_gpu_blocks)
            return dataclasses.replace(
                base, name=self.name, waiting=self.waiting, running=self.running,
                kv_usage=used / base.num_gpu_blocks, kv_used_blocks=used,
            )


# ------------------------------------------------------------------------------------------ the stack


class Stack:
    """One emulated BIG-IP with one pool whose members are loopback engine servers."""

    def __init__(self, loads: Iterable[tuple[int, int, float]], *, ratios: Iterable[int] | None = None,
                 lb_mode: str = "ratio-least-connections-member", token_timeout: int = 1200,
                 pool_props: dict[str, Any] | None = None):
        self.loads = [Load(w, r, kv, name=f"e{i}") for i, (w, r, kv) in enumerate(loads)]
        self.initial_ratios = list(ratios) if ratios is not None else [1] * len(self.loads)
        self.lb_mode = lb_mode
        self.pool_props = dict(pool_props or {})  # add_pool keywords, e.g. queue_on_connection_limit=True
        self.bigip = BigIPEmulator(users={USER: PASSWORD}, token_timeout=token_timeout)
        self.servers = [EngineServer(load, "vllm") for load in self.loads]
        self.members: list[str] = []

    def start(self) -> Stack:
        self.bigip.start()
        ports = [s.start() for s in self.servers]
        self.members = [f"127.0.0.1:{p}" for p in ports]
        self.bigip.add_pool(POOL, members=[{"name": m, "ratio": r} for m, r in zip(self.members, self.initial_ratios, strict=True)],
                            lb_mode=self.lb_mode, **self.pool_props)
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self.bigip.stop()

    # -- views the tests assert on --
    def ratios(self) -> list[int]:
        """Ratios in member order (the order of `loads`)."""
        r = self.bigip.ratios(POOL)
        return [r[m] for m in self.members]

    def member_writes(self) -> list:
        return [w for w in self.bigip.writes if w.member is not None]

    def config_changes(self) -> list:
        """Requests that could change BIG-IP configuration: anything but GET under /mgmt/tm/."""
        return [r for r in self.bigip.request_log if r.path.startswith("/mgmt/tm/") and r.method != "GET"]

    def scrapes(self) -> int:
        return sum(s.scrapes for s in self.servers)

    def tokens_seen(self) -> set[str]:
        """Every token the emulator handed out and still knows or that a client named in a URL."""
        out = set(self.bigip._tokens)
        for r in self.bigip.request_log:
            if r.path.startswith("/mgmt/shared/authz/tokens/"):
                out.add(r.path.rsplit("/", 1)[-1])
        return {t for t in out if t}


# ------------------------------------------------------------------------------------------ config


def seed_config(stack: Stack | None, *, port: int | None = None) -> dict:
    """The sideband seed's own config format (config/sideband-seed.yaml): one vllm pool, metrics over http,
    `port: null` (each member's own port), with `f5.port` and `f5.verify_tls` added for the emulator and
    short intervals/timeouts so the tests run fast."""
    return {
        "global": {"interval": 5, "api_port": 8080, "api_host": "0.0.0.0", "log_level": "INFO"},
        "f5": {
            "host": "127.0.0.1",
            "port": port if port is not None else stack.bigip.port,
            "username": USER,
            "password_env": "F5_PASSWORD",
            "verify_tls": stack.bigip.cert_path if stack is not None else True,
            "timeout": 2,
        },
        "scheduler": {"pool_fetch_interval": 10, "metrics_fetch_interval": 200},
        "modes": [{"name": "s1", "w_a": 0.8, "w_b": 0.2}],
        "pools": [{
            "name": "llm-pool-1",
            "partition": "Common",
            "engine_type": "vllm",
            "metrics": {
                "schema": "http",
                "port": None,
                "path": "/metrics",
                "timeout": 1,
                "APIkey": API_KEY,
                "metric_user": "metrics_user",
                "metric_pwd_env": "METRIC_PWD",
            },
        }],
    }


def merge(base: dict, changes: dict) -> dict:
    """A deep copy of `base` with `changes` merged in; a value of `DELETE` removes the key."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


DELETE = object()


def write_config(path: pathlib.Path, data: Any) -> pathlib.Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ the CLI


def cli_env(**extra: str | None) -> dict[str, str]:
    """The environment for the CLI: ours, minus proxies, plus the secrets. `NAME=None` removes NAME."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(F5_PASSWORD=PASSWORD, METRIC_PWD=METRIC_PASSWORD, NO_PROXY="*", PYTHONUNBUFFERED="1")
    env.pop("CREDENTIALS_DIRECTORY", None)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


@dataclasses.dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def events(self) -> list[dict]:
        return parse_events(self.err)


def cli(*args: str, env: dict | None = None, timeout: float = CLI_TIMEOUT) -> Result:
    """Run `python -m controller ARGS` to completion. A traceback anywhere fails the test."""
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "controller", *args], cwd=REPO, env=env or cli_env(),
                       capture_output=True, text=True, timeout=timeout)
    r = Result(tuple(args), p.returncode, p.stdout, p.stderr, time.monotonic() - started)
    assert_clean(r.out, r.err)
    return r


def assert_clean(out: str, err: str, secrets: Iterable[str] = SECRETS) -> None:
    assert "Traceback" not in out and "Traceback" not in err, f"traceback in output:\nSTDOUT:\n{out}\nSTDERR:\n{err}"
    for s in secrets:
        assert s not in out and s not in err, "a secret appeared in the CLI output"


def parse_events(text: str) -> list[dict]:
    """The JSON log lines (stderr is not a TTY, so logs are JSON lines); other lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """`run --config FILE` in the background; output goes to files (no pipe can fill up and stall it)."""

    def __init__(self, config: pathlib.Path, *extra: str, env: dict | None = None):
        self.dir = config.parent
        self.out_path = self.dir / "daemon.out"
        self.err_path = self.dir / "daemon.err"
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "controller", "run", "--config", str(config), *extra],
                                     cwd=REPO, env=env or cli_env(), stdout=self._out, stderr=self._err)
        self.code: int | None = None

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def events(self, name: str | None = None) -> list[dict]:
        evs = parse_events(self.err)
        return [e for e in evs if name is None or e.get("event") == name]

    def wait_event(self, name: str, timeout: float = 10.0, count: int = 1) -> list[dict]:
        return wait_for(lambda: (lambda evs: evs if len(evs) >= count else None)(self.events(name)), timeout,
                        what=f"{count} log event(s) {name!r}; stderr so far:\n{self.err}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took to exit). The default wait is generous for a loaded CI
        box; a test about shutdown speed asserts on the returned seconds."""
        started = time.monotonic()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon did not exit within {timeout}s of SIGTERM; stderr:\n{self.err}") from None
        return self.code, time.monotonic() - started

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=5)

    def close(self) -> None:
        self.kill()
        self._out.close()
        self._err.close()
