"""An HA pair whose roles swap every `--swap` seconds, with the real CLI (`f5-llm-ratio run`) steering it.

    .venv/bin/python bench/ha_failover.py                          # 5 minutes, a swap every 30 s (issue 11)
    .venv/bin/python bench/ha_failover.py --duration 60 --swap 6   # compressed: same checks, shorter

Set-up, all on loopback: two BIG-IP emulator units in one sync-failover device group (`HAPair`, serving
on 127.0.0.1:P and 127.0.0.2:P), `f5.host` listing both, a 1 s tick (`metrics_fetch_interval: 1000`) and
the default `pool_fetch_interval` (10 s). Three pools on both units:

- `/Common/llm`: 4 static members in ratio-least-connections-member, each a real vLLM /metrics page;
- `/Common/rr`: the same 4 engines in round-robin (a mode that ignores member ratios);
- `/Common/fqdn`: an FQDN template whose 2 ephemeral members are 2 of the engines, plus 2 static members.

Engine loads change (seeded) halfway between swaps, so the controller has something to write in every
interval while the loads are steady around each swap. `--auto-sync off` (the default) is the stringent
case: a write on the active unit stays there, so after a swap the new active unit holds the ratios of
its own last active period and must be rewritten; with `on`, BIG-IP's sync does that.

Printed figures (each unit's write log records the unit's failover state at the moment of the write):
writes on a standby unit; member writes in the round-robin pool; write attempts on ephemeral members
(PATCH/PUT/DELETE requests naming `_auto_`, refused ones included); the most live tokens on both units at
once (sampled every 50 ms); per swap, the time until the new active unit's ratios in `/Common/llm` equal
the old active unit's at the swap (converged), against one tick; `bigip_failover` log lines per swap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/ha_failover.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from controller.sim.bigip import BigIPEmulator, HAPair
from controller.sim.engine import Engine, EngineSnapshot, EngineSpec
from controller.sim.engine_server import EngineServer

PASSWORD = "bench-ha-Pa55"
ENGINES = 4
_BASE: EngineSnapshot | None = None


class Load:
    """One engine's load; the EngineServer renders it as a vLLM page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting, self.running, self.kv = 0, 2, 0.2

    def set(self, waiting: int, running: int, kv: float) -> None:
        with self.lock:
            self.waiting, self.running, self.kv = waiting, running, kv

    def snapshot(self) -> EngineSnapshot:
        global _BASE
        if _BASE is None:
            _BASE = Engine(EngineSpec(name="ha")).snapshot()
        with self.lock:
            used = round(self.kv * _BASE.num_gpu_blocks)
            return dataclasses.replace(_BASE, name="ha", waiting=self.waiting, running=self.running,
                                       kv_usage=used / _BASE.num_gpu_blocks, kv_used_blocks=used)


def build(auto_sync: bool, ports: list[int]) -> HAPair:
    a = BigIPEmulator({"admin": PASSWORD}, hostname="bigip-a.example.com")
    b = BigIPEmulator({"admin": PASSWORD}, hostname="bigip-b.example.com")
    pair = HAPair(a, b, auto_sync=auto_sync)
    names = [f"127.0.0.1:{p}" for p in ports]
    for unit in pair.units:
        unit.add_pool("/Common/llm", names)
        unit.add_pool("/Common/rr", names, lb_mode="round-robin")
        unit.add_pool("/Common/fqdn", names[2:])
        unit.add_fqdn_member("/Common/fqdn", "llm.example.com", ports[0], ["127.0.0.1"])
        unit.add_member("/Common/fqdn", f"_auto_127.0.0.1:{ports[1]}", address="127.0.0.1", ephemeral="true",
                        fqdn={"autopopulate": "enabled", "tmName": "llm.example.com"})
    return pair


def config(pair: HAPair, tick_ms: int) -> dict:
    pool = {"partition": "Common", "engine_type": "vllm", "metrics": {"schema": "http", "port": None, "timeout": 0.5}}
    return {
        "f5": {"host": list(pair.hosts), "port": pair.a.port, "username": "admin", "password_env": "F5_PASSWORD",
               "verify_tls": pair.cert_path, "timeout": 2},
        "scheduler": {"metrics_fetch_interval": tick_ms},
        "pools": [{**pool, "name": n} for n in ("llm", "rr", "fqdn")],
        "telemetry": {"enabled": False},
    }


def run(duration: float, swap: float, tick_ms: int, auto_sync: bool, seed: int) -> dict:
    rng = random.Random(seed)
    loads = [Load() for _ in range(ENGINES)]
    servers = [EngineServer(load.snapshot, "vllm") for load in loads]
    ports = [s.start() for s in servers]
    pair = build(auto_sync, ports)
    pair.start()
    tmp = tempfile.mkdtemp(prefix="f5lr-ha-bench-")
    cfg_path = os.path.join(tmp, "ha.yaml")
    with open(cfg_path, "w") as f:
        yaml.safe_dump(config(pair, tick_ms), f)
    err_path = os.path.join(tmp, "stderr.log")
    env = {**os.environ, "F5_PASSWORD": PASSWORD, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    tick = tick_ms / 1000.0
    max_tokens, swaps, stop = [0], [], threading.Event()

    def sample_tokens() -> None:
        while not stop.wait(0.05):
            max_tokens[0] = max(max_tokens[0], pair.live_tokens())

    sampler = threading.Thread(target=sample_tokens, daemon=True)
    sampler.start()
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "controller", "run", "--config", cfg_path],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
    start = time.monotonic()
    try:
        next_swap, next_load = start + swap, start + swap / 2
        while time.monotonic() - start < duration:
            now = time.monotonic()
            if now >= next_load:
                for load in loads:
                    load.set(rng.randint(0, 12), rng.randint(1, 8), round(rng.uniform(0.1, 0.95), 2))
                next_load += swap
            if now >= next_swap:
                old = pair.active
                expected = old.ratios("/Common/llm") if old else {}
                new = pair.swap()
                t0 = time.monotonic()
                stale = new.ratios("/Common/llm") != expected
                converged = None
                while time.monotonic() - t0 < min(swap / 2, 10 * tick):
                    if new.ratios("/Common/llm") == expected:
                        converged = time.monotonic() - t0
                        break
                    time.sleep(0.02)
                swaps.append({"at": round(t0 - start, 1), "to": new.hostname, "converged_s": converged,
                              "stale_at_swap": stale})
                next_swap += swap
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        stop.set()
        sampler.join(2)
        tokens_after = pair.live_tokens()
        pair.stop()
        for s in servers:
            s.stop()
    log = Path(err_path).read_text()
    writes = pair.writes()
    member_writes = [(h, w) for h, w in writes if w.member is not None]
    requests = [r for u in pair.units for r in u.request_log]
    conv = [s["converged_s"] for s in swaps if s["converged_s"] is not None]
    return {
        "conditions": {"duration_s": duration, "swap_every_s": swap, "tick_s": tick, "auto_sync": auto_sync,
                       "pool_fetch_interval_s": 10, "engines": ENGINES, "seed": seed},
        "swaps": len(swaps),
        "member_writes": len(member_writes),
        "writes_on_standby": sum(1 for _, w in writes if w.failover_state != "active"),
        "writes_in_round_robin_pool": sum(1 for _, w in member_writes if w.pool == "/Common/rr"),
        "write_attempts_on_ephemeral": sum(1 for r in requests if r.method in ("PATCH", "PUT", "DELETE")
                                           and "_auto_" in r.path),
        "node_writes": sum(1 for _, w in writes if w.kind == "PATCH-NODE"),
        "max_live_tokens": max_tokens[0],
        "live_tokens_after_exit": tokens_after,
        "swaps_needing_a_rewrite": sum(1 for s in swaps if s["stale_at_swap"]),
        "converged_within_one_tick": sum(1 for c in conv if c <= tick),
        "not_converged": sum(1 for s in swaps if s["converged_s"] is None),
        "convergence_s": {"p50": round(statistics.median(conv), 3) if conv else None,
                          "max": round(max(conv), 3) if conv else None},
        "failover_log_lines": log.count("bigip_failover"),
        "exit_code": code,
        "per_swap": swaps,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    ap.add_argument("--swap", type=float, default=30.0, help="seconds between role swaps (default 30)")
    ap.add_argument("--tick-ms", type=int, default=1000, help="metrics_fetch_interval (default 1000)")
    ap.add_argument("--auto-sync", choices=("on", "off"), default="off")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    r = run(args.duration, args.swap, args.tick_ms, args.auto_sync == "on", args.seed)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    c = r["conditions"]
    print(f"HA pair, roles swapped every {c['swap_every_s']:g} s for {c['duration_s']:g} s, tick {c['tick_s']:g} s, "
          f"auto-sync {'on' if c['auto_sync'] else 'off'}, real CLI over HTTPS (seed {c['seed']})")
    for key in ("swaps", "member_writes", "writes_on_standby", "writes_in_round_robin_pool",
                "write_attempts_on_ephemeral", "node_writes", "max_live_tokens", "live_tokens_after_exit",
                "swaps_needing_a_rewrite", "converged_within_one_tick", "not_converged", "failover_log_lines",
                "exit_code"):
        print(f"  {key:28s} {r[key]}")
    print(f"  {'convergence after swap':28s} p50 {r['convergence_s']['p50']} s, max {r['convergence_s']['max']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
