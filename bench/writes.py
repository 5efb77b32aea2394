"""Economy of BIG-IP writes: one PATCH per changed member vs one transaction per pool per tick.

    .venv/bin/python bench/writes.py                      # 50 ms per iControl REST call; 1, 10, 200 changes
    .venv/bin/python bench/writes.py --latency 0.05 --changes 1,10,200 --repeat 3

`BigIPClient.apply` (the code the reconciler calls) writes ratio + description for N members of a
250-member pool on the BIG-IP emulator over HTTPS, once with f5.write_mode "patch" (write_concurrency
parallel PATCHes, default 4) and once with "transaction" (POST a transaction, one PATCH per member
carrying the coordination header, one commit PATCH). The client is logged in before timing. Printed,
median of --repeat runs:

- wall seconds for the apply;
- HTTP calls (ApplyResult.calls) and config commits on BIG-IP (emulator.commits: one per PATCH outside
  a transaction, one per committed transaction: each is an mcpd config change, an audit line and,
  with auto-sync, a config sync).

The second part runs the reconciler itself (daemon.build) against the emulator with fake engine
samples to show: one read per pool per tick, writes only for changed members, the per-minute cap, and
0 writes at steady load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/writes.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PASSWORD, app_config, machine, quiet_logs
from controller.loop import daemon
from controller.ltm.client import BigIPClient
from controller.clock import FakeClock
from controller.config.schema import F5Config
from controller.model import Action, MemberPlan, PoolRef, Sample, ScrapeResult
from controller.sim.bigip import BigIPEmulator

POOL = "/Common/writes"
REF = PoolRef("writes")


def members(n: int) -> list[str]:
    return [f"10.1.{i // 250}.{i % 250 + 1}:8000" for i in range(n)]


def one_apply(emu: BigIPEmulator, mode: str, changes: int, value: int, concurrency: int) -> tuple[float, int, int, int]:
    cfg = F5Config("127.0.0.1", port=emu.port, username="admin", password=PASSWORD, verify_tls=emu.cert_path,
                   write_mode=mode, write_concurrency=concurrency)
    client = BigIPClient(cfg)
    try:
        state = client.read_pool(REF)  # logs in; not timed
        plans = [MemberPlan(member=m, sample=None, score=None, ratio=value, connection_limit=m.connection_limit,
                            action=Action.WRITE, description=f"bench ratio {value}")
                 for m in state.members[:changes]]
        commits = emu.commits
        t = time.perf_counter()
        result = client.apply(REF, plans)
        wall = time.perf_counter() - t
        assert not result.failed, result.failed[:3]
        assert len(result.applied) == changes
        return wall, result.calls, emu.commits - commits, len(result.applied)
    finally:
        client.close()


def compare(latency: float, sizes: list[int], repeat: int, concurrency: int) -> dict:
    out = {}
    with BigIPEmulator({"admin": PASSWORD}) as emu:
        emu.add_pool(POOL, members(max(250, max(sizes))))
        emu.latency = latency
        print(f"{'changed':>7} | {'mode':<11} | {'wall s':>7} | {'HTTP calls':>10} | {'BIG-IP commits':>14}")
        value = 2
        for n in sizes:
            for mode in ("patch", "transaction"):
                runs = []
                for _ in range(repeat):
                    value = value % 60000 + 1 + (value == 1)
                    runs.append(one_apply(emu, mode, n, value, concurrency))
                wall = statistics.median(r[0] for r in runs)
                out[(n, mode)] = wall
                print(f"{n:>7} | {mode:<11} | {wall:7.3f} | {runs[0][1]:>10} | {runs[0][2]:>14}", flush=True)
    return out


class _Samples:
    """A Scraper stand-in: every member reports the sample `load` gives it (no sockets)."""

    def __init__(self, clock, load):
        self.clock = clock
        self.load = load

    def scrape(self, targets, deadline):
        return {t.key: ScrapeResult(t.member, self.clock.monotonic(), sample=self.load(t.member)) for t in targets}

    def close(self):
        pass


def economy(per_minute: int, shift_at: int = 6, ticks: int = 10) -> None:
    """The reconciler's own economy: reads per tick, writes only when something changed, the cap.
    The fake clock moves 60 s per tick, so each tick has a fresh minute of write budget."""
    clock = FakeClock()
    with BigIPEmulator({"admin": PASSWORD}, clock=clock) as emu:
        pools = [f"/Common/eco-{i}" for i in range(4)]
        for i, p in enumerate(pools):
            emu.add_pool(p, [f"10.2.{i}.{j + 1}:8000" for j in range(250)])
        cfg = app_config(emu.port, emu.cert_path, [p.rsplit("/", 1)[1] for p in pools], pool_fetch_interval=0.0,
                         max_writes_per_minute=per_minute)
        rec = daemon.build(cfg, dry_run=False, clock=clock)
        phase = {"shift": 0}

        def load(key: str) -> Sample:
            n = int(key.rsplit(".", 1)[1].split(":")[0]) + phase["shift"]
            return Sample(waiting=n % 7, running=4, kv_usage=(n % 10) / 10)

        rec.scraper.close()
        rec.scraper = _Samples(clock, load)
        print(f"\n# reconciler economy: 4 pools x 250 members, pool_fetch_interval 0 (a read every tick), "
              f"max_writes_per_minute {per_minute}, 60 s between ticks (fake clock)")
        print(f"{'tick':>4} | {'what':<24} | {'GET pool':>8} | {'PATCH member':>12} | {'other calls':>11} | {'held back by cap':>16}")
        for tick in range(1, ticks + 1):
            if tick == shift_at:
                phase["shift"] = 3  # the load moves: some members' ratios must change
            emu.clear_logs()
            report = rec.tick()
            log = list(emu.request_log)
            gets = sum(1 for r in log if r.method == "GET" and "/ltm/pool/" in r.path)
            writes = sum(1 for r in log if r.method == "PATCH" and "/members/" in r.path)
            other = len(log) - gets - writes
            held = sum(len(p.writes) for p in report.plans) - report.applied - report.failed
            what = {1: "first (login, ratios)", shift_at: "load shifts"}.get(tick, "")
            print(f"{tick:>4} | {what:<24} | {gets:>8} | {writes:>12} | {other:>11} | {max(0, held):>16}")
            clock.advance(60.0)
        daemon.close(rec)
        print(f"# live tokens after close: {len(emu.live_tokens())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per iControl REST call (emulator)")
    ap.add_argument("--changes", default="1,10,200")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=F5Config("x").write_concurrency, help="f5.write_concurrency")
    ap.add_argument("--cap", type=int, default=F5Config("x").max_writes_per_minute, help="f5.max_writes_per_minute")
    args = ap.parse_args()
    quiet_logs()
    print(f"# bench/writes.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"# BIG-IP emulator at {args.latency * 1000:g} ms per call, write_concurrency {args.concurrency}, "
          f"median of {args.repeat}; default write_mode = {F5Config('x').write_mode!r}")
    sizes = [int(x) for x in args.changes.split(",")]
    walls = compare(args.latency, sizes, args.repeat, args.concurrency)
    for n in sizes:
        p, t = walls[(n, "patch")], walls[(n, "transaction")]
        print(f"# {n} changed: {'patch' if p <= t else 'transaction'} faster ({min(p, t):.3f} s vs {max(p, t):.3f} s)")
    economy(args.cap, shift_at=17, ticks=26)
    economy(100, shift_at=99, ticks=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
