"""The daemon at fleet scale (issue 19): 1,000 to 10,000 members, the whole process as `run` runs it.

    nice -n 10 .venv/bin/python bench/scale.py                          # 1,000 and 2,000 at 1 s, 5,000 and 10,000 at 5 s
    nice -n 10 .venv/bin/python bench/scale.py --sizes 2000:1 --seconds 60
    nice -n 10 .venv/bin/python bench/scale.py --nofile 1024            # the open-file limit (default: systemd's 1,024)

Per fleet size, in a fresh child process each (so the figures are that size's own): the engines' page
server and the BIG-IP emulator run in a grandchild (bench/_common.py: one listening socket per member,
full-size vLLM pages, 5 ms before each page is answered), and the controller is the real daemon: the
product defaults (scrape_concurrency 32, scrape_keepalive 128, the default scrape deadline, pool_fetch
interval 10 s, write cap 600/min), `Daemon.run_forever` (the monotonic tick loop, signals) and the
telemetry server, with the soft open-file limit set to --nofile first. It prints:

- ticks/s over the run (after a warm-up of 3 ticks), tick p50 / p99 (report.finished - report.started);
- blind ticks (some pool with no active member with a sample), and /healthz answers that were not 200;
- members planned on a sample per tick (min), of which fresh this tick (median), and the oldest sample
  used (the scrape in turns carries the others: controller/loop/reconcile.py);
- writes applied; open fds, threads and RSS of the controller process (max over the run, sampled every 0.5 s);
- the fetch-only floor: the same pages fetched by a bare urllib3 thread pool with the same concurrency
  and the same socket bound (Connection: close beyond the first 128 endpoints), nothing else: pages/s,
  against the controller's fresh scrapes per second.

Goal (issue 19): 2,000 members at 1 s ticks under a 1,024 open-file limit with >= 0.8 ticks/s, no blind
tick, <= 300 open fds; 10,000 members steered at 5 s ticks.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/scale.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARMUP_TICKS = 3


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def floor(ports: list[int], concurrency: int, keepalive: int, passes: int = 2) -> float:
    """Pages per second fetching every page with `concurrency` threads and a bare urllib3, nothing else,
    under the same socket bound as the Scraper: keep-alive for the first `keepalive` endpoints only."""
    import urllib3

    kept = urllib3.PoolManager(num_pools=keepalive + 8, maxsize=2, retries=False)
    cold = urllib3.PoolManager(num_pools=concurrency * 2, maxsize=2, retries=False)
    base = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}

    def get(i: int) -> int:
        url = f"http://127.0.0.1:{ports[i]}/metrics"
        if i < keepalive:
            return len(kept.request("GET", url, headers=base, timeout=10).data)
        r = cold.request("GET", url, headers={**base, "Connection": "close"}, timeout=10, preload_content=False)
        try:
            return len(r.read(decode_content=True))
        finally:
            r.close()
            r.release_conn()

    rates = []
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(passes):
            t = time.perf_counter()
            assert all(pool.map(get, range(len(ports))))
            rates.append(len(ports) / (time.perf_counter() - t))
    kept.clear()
    cold.clear()
    return statistics.median(rates)


def run_size(members: int, tick_s: float, seconds: float, pools: int, nofile: int, telemetry_on: bool) -> dict:
    from bench._common import Edges, quiet_logs
    from bench._common import app_config as bench_config
    from controller import telemetry
    from controller.loop import daemon
    from controller.config.schema import SchedulerConfig, TelemetryConfig

    quiet_logs()
    with Edges(members, latency=0.005, pools=pools, page_count=64) as edges:
        # The limit applies to the controller only (the edges' process has one socket per member).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))
        base = bench_config(edges.bigip_port, edges.cert, [p.rsplit("/", 1)[1] for p in edges.pools],
                            tick_ms=int(tick_s * 1000))
        cfg = replace(base, scheduler=replace(base.scheduler, pool_fetch_interval=SchedulerConfig().pool_fetch_interval,
                                              tick_deadline=None),
                      telemetry=TelemetryConfig(enabled=telemetry_on, port=_free_port()))
        d = daemon.Daemon("bench", cfg)
        tel = telemetry.serve(d) if telemetry_on else None
        ticks: list[dict] = []
        samples: dict[str, list[float]] = {"fds": [], "threads": [], "rss": []}
        health: list[int] = []
        done = threading.Event()
        began = time.monotonic()

        def on_tick(report) -> None:
            now = d.rec.clock.monotonic()
            results = [r for pool in d.rec.last_scrapes.values() for r in pool.values()]
            planned = sum(1 for p in report.plans for m in p.members if m.sample is not None)
            fresh = sum(1 for r in results if r.ok and not r.carried)
            oldest = max((now - r.at for r in results if r.ok), default=float("nan"))
            ru = resource.getrusage(resource.RUSAGE_SELF)
            ticks.append({"at": time.monotonic(), "cpu": ru.ru_utime + ru.ru_stime, "seconds": report.finished - report.started,
                          "blind": any(p.blind for p in report.plans), "planned": planned, "fresh": fresh,
                          "oldest": oldest, "writes": report.applied, "errors": len(report.errors)})
            if time.monotonic() - began > seconds:
                d.stop()  # right after a tick, so the shutdown never waits on one

        d.on_tick.append(on_tick)

        def watch() -> None:
            while not done.wait(0.5):
                samples["fds"].append(_fds())
                samples["threads"].append(_proc_status("Threads"))
                samples["rss"].append(_proc_status("VmRSS") / 1024)
                if tel is not None and len(ticks) > WARMUP_TICKS:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{cfg.telemetry.port}/healthz", timeout=5) as r:
                            health.append(r.status)
                    except urllib.error.HTTPError as e:
                        health.append(e.code)
                    except OSError:
                        health.append(-1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        d.run_forever()
        wall = time.monotonic() - t0
        done.set()
        watcher.join(5)
        if tel is not None:
            tel.stop()
        fds_after = _fds()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        floor_rate = floor(edges.ports, cfg.scheduler.scrape_concurrency, cfg.scheduler.scrape_keepalive)

    steady = ticks[WARMUP_TICKS:]
    span = (steady[-1]["at"] - steady[0]["at"]) if len(steady) > 1 else float("nan")
    durations = [t["seconds"] for t in steady]
    fresh_per_s = sum(t["fresh"] for t in steady[1:]) / span if span == span and span > 0 else float("nan")
    return {
        "members": members, "pools": pools, "tick_s": tick_s, "run_s": round(wall, 1), "ticks": len(ticks),
        "ticks_per_s": (len(steady) - 1) / span if span == span and span > 0 else float("nan"),
        "p50": statistics.median(durations) if durations else float("nan"), "p99": _pct(durations, 0.99),
        "blind": sum(t["blind"] for t in ticks), "blind_steady": sum(t["blind"] for t in steady),
        "healthz_not_200": sum(1 for h in health if h != 200), "healthz": len(health),
        "planned_min": min((t["planned"] for t in steady), default=0),
        "fresh_median": statistics.median([t["fresh"] for t in steady]) if steady else 0,
        "oldest_max": max((t["oldest"] for t in steady), default=float("nan")),
        "writes": sum(t["writes"] for t in ticks),
        "fds_max": max(samples["fds"], default=-1), "threads_max": max(samples["threads"], default=-1),
        "rss_max_mb": max(samples["rss"], default=-1.0), "fds_after": fds_after,
        "fresh_per_s": fresh_per_s, "floor_pages_per_s": floor_rate,
        # CPU seconds of the controller process per tick (all its threads: scrapes, plans, BIG-IP, telemetry):
        # the steadier figure on a shared machine, where wall time waits for a core.
        "cpu_per_tick": (steady[-1]["cpu"] - steady[0]["cpu"]) / (len(steady) - 1) if len(steady) > 1 else float("nan"),
    }


def _child(conn, *args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send(run_size(*args))
    except Exception as e:  # noqa: BLE001 - reported by the parent
        conn.send(e)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000:1,2000:1,5000:5,10000:5", help="members:tick seconds, comma-separated")
    ap.add_argument("--seconds", type=float, default=0, help="run length per size (default: 30 ticks, at least 30 s)")
    ap.add_argument("--pools", type=int, default=20)
    ap.add_argument("--nofile", type=int, default=1024, help="the controller's soft open-file limit")
    ap.add_argument("--no-telemetry", action="store_true", help="without the telemetry server and its observe()")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from bench._common import machine

    print(f"# bench/scale.py  {time.strftime('%Y-%m-%d %H:%M')} UTC  {machine()}  load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    print(f"# {args.pools} pools, vLLM pages (5 ms each), product defaults, open-file limit {args.nofile}, "
          f"telemetry {'off' if args.no_telemetry else 'on'}", flush=True)
    print(f"{'members':>7} {'tick':>4} | {'ticks/s':>7} {'p50 s':>6} {'p99 s':>6} | {'blind':>5} {'hz!200':>6} | "
          f"{'planned':>7} {'fresh':>6} {'oldest s':>8} {'writes':>6} | {'fds':>4} {'thr':>4} {'RSS MB':>6} | "
          f"{'fresh/s':>7} {'floor/s':>7} | {'cpu/t':>5} | load", flush=True)
    ctx = mp.get_context("spawn")
    out = []
    for spec in args.sizes.split(","):
        members, tick = int(spec.split(":")[0]), float(spec.split(":")[1])
        seconds = args.seconds or max(30.0, 30 * tick) + 10
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(child, members, tick, seconds, args.pools, args.nofile,
                                                not args.no_telemetry))
        proc.start()
        r = parent.recv()
        proc.join(30)
        if isinstance(r, Exception):
            print(f"{members:>7} {tick:>4g} | failed: {type(r).__name__}: {r}", flush=True)
            continue
        r["load"] = os.getloadavg()[0]
        out.append(r)
        print(f"{members:>7} {tick:>4g} | {r['ticks_per_s']:7.2f} {r['p50']:6.2f} {r['p99']:6.2f} | "
              f"{r['blind']:>5} {r['healthz_not_200']:>6} | {r['planned_min']:>7} {r['fresh_median']:>6.0f} "
              f"{r['oldest_max']:8.1f} {r['writes']:>6} | {r['fds_max']:>4} {r['threads_max']:>4} {r['rss_max_mb']:6.0f} | "
              f"{r['fresh_per_s']:7.0f} {r['floor_pages_per_s']:7.0f} | {r['cpu_per_tick']:5.2f} | {r['load']:.1f}", flush=True)
    print("# ticks/s and p50/p99 after 3 warm-up ticks; blind = ticks with a blind pool (all ticks); hz!200 = /healthz "
          "answers other than 200 (polled every 0.5 s); planned = members planned on a sample (min per tick); fresh = "
          "scraped this tick (median); oldest = oldest sample used (s); fds/thr/RSS = max of the controller process; "
          "fresh/s = the controller's fresh scrapes per second; floor/s = bare urllib3 pages per second, same "
          "concurrency and socket bound; cpu/t = the controller's CPU seconds per tick; load = 1-minute load average "
          "after the run (2 cores)", flush=True)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
