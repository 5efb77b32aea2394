"""One reconcile tick at scale: 1,000 members, full-size vLLM pages, 5 ms per page, the BIG-IP emulator.

    .venv/bin/python bench/tick.py                                  # the product defaults
    .venv/bin/python bench/tick.py --concurrency 16,32,64,128        # a concurrency sweep
    .venv/bin/python bench/tick.py --variants                       # gzip on/off x connection reuse on/off

The controller is wired exactly as `run` wires it (`daemon.build`: BigIPClient + Scraper + Reconciler,
real clock). The engines' page server and the BIG-IP emulator run in a child process (bench/_common.py),
so wall time, CPU time and peak RSS are the controller's own. Per configuration it prints:

- the first tick (cold: login, one TCP connection per member, the initial ratio writes);
- the steady tick (median of --ticks ticks after the ratios have converged: connections warm, 0 writes),
  with pool_fetch_interval 0 so every tick reads every pool (the worst case);
- BIG-IP requests per steady tick, and writes;
- the floor: fetching the same pages with the same concurrency and nothing else (a thread pool and a
  bare urllib3.PoolManager, warm connections, same headers; "fl.rq": the same with a requests.Session,
  what the Scraper was built on before it moved to urllib3), and the ideal ceil(members / concurrency) x latency.

Targets (issue #5): steady tick wall <= 2 s, and <= 1.5x the floor.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import requests
import urllib3
from requests.adapters import HTTPAdapter

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/tick.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Edges, collect, cpu_seconds, machine, median, peak_rss_mb, quiet_logs
from controller.loop import daemon
from controller.engines.scrape import target_for as product_target_for

TARGET_WALL = 2.0
TARGET_FLOOR_RATIO = 1.5


def variant_target_for(gzip: bool, reuse: bool):
    """The product's target_for, with gzip and/or keep-alive switched off for a comparison."""

    def target_for(member, pool, keys):
        t = product_target_for(member, pool, keys)
        headers = [(k, v) for k, v in t.headers if k.lower() != "accept-encoding"]
        headers.append(("Accept-Encoding", "gzip" if gzip else "identity"))
        if not reuse:
            headers.append(("Connection", "close"))
        return replace(t, headers=tuple(headers))

    return target_for


def floor(urls: list[str], concurrency: int, headers: dict, passes: int = 3, lean: bool = True) -> tuple[float, float]:
    """(cold, warm median) seconds to GET every page (body read and decompressed) with `concurrency`
    threads and nothing else. lean: urllib3's PoolManager, the cheapest client in this environment (and
    what the Scraper is built on); else a requests.Session, for comparison."""
    if lean:
        pm = urllib3.PoolManager(num_pools=len(urls) * 2, maxsize=4, retries=False)

        def get(url: str) -> int:
            return len(pm.request("GET", url, headers=headers, timeout=5).data)
    else:
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_connections=len(urls) * 2, pool_maxsize=4, max_retries=0))

        def get(url: str) -> int:
            return len(session.get(url, headers=headers, timeout=5).content)

    times = []
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(passes + 1):
            t = time.perf_counter()
            sizes = list(pool.map(get, urls))
            times.append(time.perf_counter() - t)
            assert all(sizes)
    pm.clear() if lean else session.close()
    return times[0], median(times[1:])


def run_one(edges: Edges, concurrency: int, ticks: int, gzip: bool, reuse: bool, deadline: float = 10.0) -> dict:
    # A generous tick deadline: the figure is how long a full scrape takes, not how much fits in 1 s.
    cfg = edges.config(concurrency=concurrency, pool_fetch_interval=0.0, deadline=deadline)
    rec = daemon.build(cfg, dry_run=False)
    rec.target_for = variant_target_for(gzip, reuse)
    edges.call("clear")
    out: dict = {"concurrency": concurrency, "gzip": gzip, "reuse": reuse}
    try:
        collect()
        c0, t0 = cpu_seconds(), time.perf_counter()
        first = rec.tick()
        out["cold_wall"], out["cold_cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
        out["cold_writes"] = first.applied
        out["cold_ok"] = sum(1 for p in first.plans for m in p.members if m.sample is not None)
        for _ in range(10):  # converge (the write cap may defer some of the first writes)
            if rec.tick().applied == 0:
                break
        walls, cpus, reqs, writes, ok = [], [], [], [], []
        for _ in range(ticks):
            before = edges.stats()["bigip_requests"]
            c0, t0 = cpu_seconds(), time.perf_counter()
            report = rec.tick()
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu_seconds() - c0)
            reqs.append(edges.stats()["bigip_requests"] - before)
            writes.append(report.applied)
            ok.append(sum(1 for p in report.plans for m in p.members if m.sample is not None))
            time.sleep(0.05)
        out.update(wall=median(walls), wall_min=min(walls), wall_max=max(walls), cpu=median(cpus),
                   bigip_requests=max(reqs), writes=sum(writes), scraped_ok=min(ok), peak_rss=peak_rss_mb())
        urls = [f"http://127.0.0.1:{p}/metrics" for p in edges.ports]
        headers = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip" if gzip else "identity"}
        if not reuse:
            headers["Connection"] = "close"
        out["floor_cold"], out["floor"] = floor(urls, concurrency, headers)
        out["floor_requests"] = floor(urls, concurrency, headers, lean=False)[1]
    finally:
        daemon.close(rec)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--pools", type=int, default=4, help="the members are spread over this many pools")
    ap.add_argument("--latency", type=float, default=0.005, help="seconds before each page is answered")
    ap.add_argument("--concurrency", default="", help="comma-separated; default: the config default")
    ap.add_argument("--ticks", type=int, default=5, help="steady ticks measured per configuration")
    ap.add_argument("--variants", action="store_true", help="also gzip off and connection reuse off")
    args = ap.parse_args()
    quiet_logs()
    from controller.config.schema import SchedulerConfig

    levels = [int(c) for c in args.concurrency.split(",") if c] or [SchedulerConfig().scrape_concurrency]
    combos = [(True, True)] + ([(False, True), (True, False), (False, False)] if args.variants else [])
    print(f"# bench/tick.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"# {args.members} members in {args.pools} pools, vLLM pages, {args.latency * 1000:g} ms per page; "
          f"steady = median of {args.ticks} ticks")
    with Edges(args.members, latency=args.latency, pools=args.pools) as edges:
        print(f"# page size {len(_page(edges))} bytes")
        hdr = (f"{'conc':>4} {'gzip':>4} {'reuse':>5} | {'cold s':>6} {'cpu':>5} | {'tick s':>6} {'min':>5} {'max':>5} "
               f"{'cpu s':>5} | {'floor':>5} {'fl.rq':>5} {'ideal':>5} {'x floor':>7} | {'bigip req':>9} {'writes':>6} {'ok':>5} | {'peakRSS MB':>10}")
        print(hdr)
        for gzip, reuse in combos:
            for c in levels:
                r = run_one(edges, c, args.ticks, gzip, reuse)
                ideal = math.ceil(args.members / c) * args.latency
                verdict = "met" if r["wall"] <= TARGET_WALL and r["wall"] <= TARGET_FLOOR_RATIO * r["floor"] else "MISSED"
                print(f"{c:>4} {'on' if gzip else 'off':>4} {'on' if reuse else 'off':>5} | {r['cold_wall']:6.2f} "
                      f"{r['cold_cpu']:5.2f} | {r['wall']:6.3f} {r['wall_min']:5.3f} {r['wall_max']:5.3f} {r['cpu']:5.2f} | "
                      f"{r['floor']:5.3f} {r['floor_requests']:5.3f} {ideal:5.3f} {r['wall'] / r['floor']:7.2f} | {r['bigip_requests']:>9} "
                      f"{r['writes']:>6} {r['scraped_ok']:>5} | {r['peak_rss']:10.1f}  {verdict}", flush=True)
    print("# floor = urllib3 only, same concurrency, warm connections (median of 3); fl.rq = the same with requests;"
          " ideal = ceil(members/concurrency) x latency")
    print(f"# targets: steady tick <= {TARGET_WALL} s and <= {TARGET_FLOOR_RATIO}x floor; "
          "bigip req = BIG-IP calls per steady tick (one GET per pool); ok = members with a fresh sample")
    return 0


def _page(edges: Edges) -> bytes:
    return requests.get(f"http://127.0.0.1:{edges.ports[0]}/metrics", headers={"Accept-Encoding": "identity"}).content


if __name__ == "__main__":
    raise SystemExit(main())
