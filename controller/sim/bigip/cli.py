"""`python -m controller.sim.bigip`: serve one emulated BIG-IP (or an HA pair) until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from controller.sim.bigip.emulator import BigIPEmulator
from controller.sim.bigip.ha import HAPair


def _parse_pool_arg(arg: str) -> tuple[str, list[str]]:
    path, _, members = arg.partition("=")
    return path, [m.strip() for m in members.split(",") if m.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller.sim.bigip", description="Serve a BIG-IP iControl REST emulator.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--pool", action="append", default=[], metavar="/Common/name=ADDR:PORT,...",
                    help="a pool and its members; repeatable")
    ap.add_argument("--lb-mode", default="ratio-least-connections-member")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    ap.add_argument("--token-limit", type=int, default=100)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    ap.add_argument("--cert-dir", default=None, help="where to write the self-signed cert (default: a temp dir)")
    ap.add_argument("--ha-peer", default=None, metavar="ADDR",
                    help="also serve a standby peer on ADDR (same port, e.g. 127.0.0.2): an HA pair with auto-sync")
    args = ap.parse_args(argv)

    def unit(hostname: str) -> BigIPEmulator:
        return BigIPEmulator({args.user: args.password}, token_limit=args.token_limit, latency=args.latency,
                             cert_dir=args.cert_dir, hostname=hostname)

    emu = unit("bigip1.example.com")
    pair = HAPair(emu, unit("bigip2.example.com"), hosts=(args.host, args.ha_peer)) if args.ha_peer else None
    for spec in args.pool:
        path, members = _parse_pool_arg(spec)
        for u in pair.units if pair else (emu,):
            u.add_pool(path, members, lb_mode=args.lb_mode)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)  # also when started with SIGINT ignored (background jobs)
    try:
        if pair:
            pair.start(args.port)
            urls = [u.base_url for u in pair.units]
        else:
            urls = [emu.start(args.host, args.port)]
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    for url in urls:
        print(f"BIG-IP emulator listening on {url}", flush=True)
    print(f"certificate (CA bundle): {emu.cert_path}", flush=True)
    for path in emu.pool_paths():
        p = emu.pool(path)
        names = [m["name"] for m in p["membersReference"].get("items", [])]
        print(f"pool {path} ({p['loadBalancingMode']}): {', '.join(names) or 'no members'}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if pair:
            pair.stop()
        else:
            emu.stop()
    print("stopped", flush=True)
    return 0
