"""BIG-IP tokens over 24 simulated hours: logins per day, deletions, live tokens.

    .venv/bin/python bench/tokens.py                   # 24 h, a tick every 10 s of simulated time
    .venv/bin/python bench/tokens.py --hours 24 --step 10
    .venv/bin/python bench/tokens.py --token-timeout 600 --scenarios extend   # the old 600 s tokens

The controller (daemon.build: BigIPClient + TokenManager + Reconciler) runs against the BIG-IP emulator
over HTTPS; both share one FakeClock, which moves `--step` seconds per tick, so 24 hours take seconds.
Engine samples come from an in-process stand-in (no sockets); the load moves every hour so the
controller also writes now and then. pool_fetch_interval is `--step`, so every tick reads BIG-IP.
Three scenarios:

- extend:     BIG-IP issues 1,200 s tokens; the controller sets them to f5.token_timeout (default 36,000 s,
              BIG-IP's maximum; `--token-timeout`) (the normal case);
- basic:      `f5.auth: basic`: HTTP basic auth on every call, no token at all;
- no-extend:  every token PATCH fails (500), so tokens keep their 1,200 s lifetime;
- restart:    as extend, and restjavad restarts (all tokens gone) every 5 hours: 401, one re-login.

After every tick it counts the user's live tokens on the emulator. Targets: at most one login per token
lifetime (plus one per forced loss), every token deleted, never more than one live token (issue #5); and in
steady operation (extend, basic) at most 3 logins a day per unit (issue #22: BIG-IP 17.1.2.x does not free
non-admin users' tokens, bug ID1787517, so every login counts toward the 100-token limit for good).
"""

from __future__ import annotations

import argparse
import math
import time

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/tokens.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataclasses import replace

from bench._common import PASSWORD, app_config, machine, quiet_logs
from controller.loop import daemon
from controller.clock import FakeClock
from controller.model import Sample, ScrapeResult
from controller.sim.bigip import BigIPEmulator

POOL = "/Common/tokens"


class _Samples:
    def __init__(self, clock):
        self.clock = clock

    def scrape(self, targets, deadline):
        hour = int(self.clock.monotonic() // 3600)
        out = {}
        for i, t in enumerate(sorted(targets, key=lambda t: t.member)):
            n = i + hour
            out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), sample=Sample(n % 5, 4, (n % 10) / 10))
        return out

    def close(self):
        pass


STEADY = ("extend", "basic")  # steady operation: at most 3 logins a day
MAX_LOGINS_PER_DAY = 3


def scenario(name: str, hours: float, step: float, token_timeout: int = 36000) -> dict:
    clock = FakeClock()
    with BigIPEmulator({"admin": PASSWORD}, clock=clock, token_timeout=1200) as emu:
        emu.add_pool(POOL, [f"10.3.0.{i}:8000" for i in range(1, 11)])
        if name == "no-extend":
            emu.fail_next(10**9, "mcpd", path="^/mgmt/shared/authz/tokens/", method="PATCH")
        cfg = app_config(emu.port, emu.cert_path, ["tokens"], pool_fetch_interval=step, tick_ms=int(step * 1000))
        cfg = replace(cfg, f5=replace(cfg.f5, token_timeout=token_timeout, auth="basic" if name == "basic" else "token"))
        rec = daemon.build(cfg, dry_run=False, clock=clock)
        rec.scraper.close()
        rec.scraper = _Samples(clock)
        issued: set[str] = set()
        max_live = 0
        restarts = 0
        start = clock.monotonic()
        ticks = int(hours * 3600 / step)
        failed_ticks = 0
        writes = 0
        login_times: list[float] = []
        forced: set[int] = set()  # indexes into login_times of logins forced by a restart
        t0 = time.perf_counter()
        for i in range(ticks):
            restarted = name == "restart" and i and (i * step) % (5 * 3600) == 0
            if restarted:
                emu.restart()
                restarts += 1
            before = emu.logins
            report = rec.tick()
            if emu.logins > before:
                if restarted:
                    forced.add(len(login_times))
                login_times.append(clock.monotonic())
            failed_ticks += not report.ok
            writes += report.applied
            live = emu.live_tokens("admin")
            issued.update(live)
            max_live = max(max_live, len(live))
            clock.advance(step)
            if i % 500 == 0:
                emu.clear_logs()
        lifetime = getattr(rec.bigip.tokens, "_lifetime", 0.0)  # 0: basic auth, no token
        daemon.close(rec)
        elapsed = clock.monotonic() - start
        live_after = len(emu.live_tokens("admin"))
        with emu._lock:
            undeleted = [t for t in issued if t in emu._tokens]
        gaps = [b - a for k, (a, b) in enumerate(zip(login_times, login_times[1:]), 1) if k not in forced]
        return {
            "min_gap": min(gaps) if gaps else float("inf"),
            "scenario": name, "hours": elapsed / 3600, "ticks": ticks, "wall": time.perf_counter() - t0,
            "logins": emu.logins, "lifetime": lifetime,
            "allowed": (math.ceil(elapsed / lifetime) if lifetime else 0) + restarts,
            # the most logins in any 24 h window (the whole run when shorter: then a lower bound)
            "per_day": max((sum(1 for u in login_times if t <= u < t + 86400) for t in login_times), default=0),
            "restarts": restarts, "issued": len(issued), "undeleted": len(undeleted), "max_live": max_live,
            "live_after": live_after, "client_deletions": rec.bigip.tokens.deletions, "failed_ticks": failed_ticks,
            "writes": writes,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--step", type=float, default=10.0, help="simulated seconds per tick")
    ap.add_argument("--scenarios", default="extend,basic,no-extend,restart")
    ap.add_argument("--token-timeout", type=int, default=36000, help="f5.token_timeout, seconds (default 36000)")
    ap.add_argument("--json", action="store_true", help="one JSON document (per scenario: logins_per_day, ...)")
    args = ap.parse_args()
    quiet_logs()
    results: list[dict] = []
    if args.json:  # the table goes to stderr; stdout carries only the JSON document
        sys.stdout, real_stdout = sys.stderr, sys.stdout
    print(f"# bench/tokens.py  {time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
    print(f"# {args.hours:g} simulated hours, a tick every {args.step:g} s (FakeClock shared by controller and emulator); "
          f"f5.token_timeout {args.token_timeout}")
    print(f"{'scenario':<10} | {'ticks':>5} | {'token life s':>12} | {'logins':>6} | {'logins/day':>10} | {'allowed':>7} | {'issued':>6} | "
          f"{'min gap/life':>12} | {'deleted':>7} | {'not deleted':>11} | {'max live':>8} | {'live after exit':>15} | {'writes':>6} | {'wall s':>6} | verdict")
    ok_all = True
    for name in args.scenarios.split(","):
        r = scenario(name, args.hours, args.step, args.token_timeout)
        clean = r["undeleted"] == 0 and r["max_live"] <= 1 and r["live_after"] == 0
        early = not r["lifetime"] or r["min_gap"] >= 0.9 * r["lifetime"] - args.step  # never before 90% of a token's life
        gap = min(r["min_gap"] / r["lifetime"], 99) if r["lifetime"] else float("nan")
        daily = name not in STEADY or r["per_day"] <= MAX_LOGINS_PER_DAY
        ok = clean and r["logins"] <= r["allowed"] and daily
        ok_all &= clean and early and daily
        verdict = "met" if ok else (f"logins +{r['logins'] - r['allowed']} (refresh at 90% of life)" if clean and early
                                    and daily else "MISSED")
        results.append({**{k: v for k, v in r.items() if k != "min_gap"}, "logins_per_day": r["per_day"],
                        "min_gap_seconds": None if r["min_gap"] == float("inf") else r["min_gap"], "verdict": verdict,
                        "token_timeout": args.token_timeout})
        print(f"{name:<10} | {r['ticks']:>5} | {r['lifetime']:>12.0f} | {r['logins']:>6} | {r['per_day']:>10} | {r['allowed']:>7} | "
              f"{r['issued']:>6} | {gap:>12.2f} | {r['client_deletions']:>7} | {r['undeleted']:>11} | {r['max_live']:>8} | "
              f"{r['live_after']:>15} | {r['writes']:>6} | {r['wall']:>6.1f} | {verdict}", flush=True)
    print("# min gap/life = shortest time between two logins (not forced by a restart) over the token lifetime: "
          "the controller replaces a token when 10% (at least 60 s) of its life is left, so 0.90 is by design")
    print("# allowed = ceil(simulated time / token lifetime) + forced losses (restarts); deleted = DELETEs that "
          "succeeded; a token lost to a restart is gone from BIG-IP, so it counts as deleted")
    print(f"# logins/day = the most logins in any 24 h window (over the whole run when it is shorter); target in "
          f"steady operation ({', '.join(STEADY)}): at most {MAX_LOGINS_PER_DAY}")
    if args.json:
        import json

        sys.stdout = real_stdout
        sys.stdout.write(json.dumps({"bench": "tokens", "hours": args.hours, "step": args.step, "ok": ok_all,
                                     "max_logins_per_day": MAX_LOGINS_PER_DAY, "scenarios": results}, indent=1) + "\n")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
