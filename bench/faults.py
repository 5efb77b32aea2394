"""Fault campaign (issue 12) through the real CLI: a BIG-IP that trickles or hangs, reads or writes.

    python bench/faults.py [--seconds 12]

For each case the daemon (`run`) talks to the BIG-IP emulator through `controller/sim/faultproxy.py`,
with a fake systemd NOTIFY_SOCKET. While the fault is on, it records the longest gap between two
WATCHDOG=1 pings and compares it with the bound derived from the config (`controller.config.bounds`, what
`check` prints: the worst-case tick plus one interval); then it clears the fault and times the first
write. A last case runs 10 SIGKILL-and-restart cycles with $STATE_DIRECTORY and counts live tokens.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from controller.config import bounds, yamlfile
from controller.sim.faultproxy import FaultProxy
from tests.e2e_env import USER, Daemon, Stack, cli_env, seed_config, wait_for, write_config

LOADS = [(0, 0, 0.1), (4, 2, 0.5), (8, 4, 0.9)]


class Notify:
    def __init__(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(prefix="f5lr-bench-"), "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.pings: list[float] = []
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            if "WATCHDOG=1" in data.split("\n"):
                self.pings.append(time.monotonic())

    def max_gap(self, since: float, until: float) -> float:
        ts = [since, *[t for t in self.pings if since <= t <= until], until]
        return max(b - a for a, b in zip(ts, ts[1:], strict=False))

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def case(name: str, mode: str, method: str, seconds: float, work: pathlib.Path) -> None:
    s = Stack(LOADS).start()
    proxy = FaultProxy("127.0.0.1", s.bigip.port).start()
    notify = Notify()
    try:
        data = seed_config(s, port=proxy.port)
        data["f5"].update(verify_tls=proxy.cert_path, timeout=2, tick_budget=4)
        data["scheduler"].update(metrics_fetch_interval=500, pool_fetch_interval=0.5)
        data["telemetry"] = {"enabled": False}
        path = write_config(work / f"{name}.yaml", data)
        env = cli_env(NOTIFY_SOCKET=notify.path)
        bound = bounds.tick_bound(yamlfile.load(str(path), env))
        d = Daemon(path, env=env)
        try:
            wait_for(lambda: len(s.member_writes()) >= 2, 20, what="first writes")
            proxy.set(mode, method=method, interval=1.0)
            on = time.monotonic()
            # keep the controller wanting to write: flip the loads every second
            while time.monotonic() - on < seconds:
                for load, (w, r, kv) in zip(s.loads, LOADS if int(time.monotonic()) % 2 else LOADS[::-1], strict=True):
                    load.set(w, r, kv)
                time.sleep(0.5)
            off = time.monotonic()
            gap = notify.max_gap(on, off)
            before = len(s.member_writes())
            proxy.clear()
            for load, (w, r, kv) in zip(s.loads, [LOADS[2], LOADS[0], LOADS[1]], strict=True):  # a new order
                load.set(w, r, kv)
            wait_for(lambda: len(s.member_writes()) > before, 20, what="a write after the fault cleared")
            recovered = time.monotonic() - off
            alive = d.alive()
        finally:
            d.stop()
            d.close()
        verdict = "ok" if gap <= bound.ping_gap and alive else "MISSED"
        print(f"{name:<22} longest watchdog gap {gap:5.2f}s  bound {bound.ping_gap:5.2f}s "
              f"({bound.explain()})  first write after clear {recovered:5.2f}s  {verdict}", flush=True)
    finally:
        notify.close()
        proxy.stop()
        s.stop()


def sigkill_cycles(work: pathlib.Path, cycles: int = 10) -> None:
    s = Stack(LOADS).start()
    try:
        path = write_config(work / "kill.yaml", {**seed_config(s), "telemetry": {"enabled": False}})
        env = cli_env(STATE_DIRECTORY=str(work / "state"))
        peak = 0
        for _ in range(cycles):
            s.bigip.request_log.clear()
            d = Daemon(path, env=env)
            wait_for(lambda d=d: d.events("started") and any(r.path.startswith("/mgmt/tm/ltm/pool")
                                                              for r in list(s.bigip.request_log)), 30, what="a tick")
            peak = max(peak, len(s.bigip.live_tokens(USER)))
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(timeout=5)
            d.close()
        print(f"{cycles} SIGKILL-and-restart cycles: live tokens after {len(s.bigip.live_tokens(USER))}, "
              f"peak {peak}, logins {s.bigip.logins}", flush=True)
    finally:
        s.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=12.0, help="how long each fault stays on")
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="f5lr-faults-"))
    for name, mode, method in (("trickling reads", "trickle", "GET"), ("hanging reads", "hang", "GET"),
                               ("trickling writes", "trickle", "PATCH"), ("hanging writes", "hang", "PATCH")):
        case(name.replace(" ", "-"), mode, method, args.seconds, work)
    sigkill_cycles(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
