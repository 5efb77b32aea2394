"""Policy variants tried against the default `balance` (docs/policy.md, "Why the remaining gaps").

Registers each variant as a bench-only policy and traffic contender, runs the chosen scenarios for
10 simulated minutes each, and writes the raw results as JSON; `bench/policy_table.py` prints the
goal ratios from one or more such files. These are the runs docs/policy.md calls "scratch runs".

    SEED=4 python bench/policy_experiments.py /tmp/v.json lc,sideband,balance-rlc,Q50-l15,oracle-work,oracle
    python bench/policy_table.py /tmp/v.json
"""
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dataclasses import replace
import traffic as T
from controller import policy
from controller.config import ModeConfig

def Qf(s):
    return sum(v.waiting for v in s.values()) / sum((v.running or 0.0) + 1.0 for v in s.values())

def lp(samples, mode, ctx, *, lo_leak=0.1, hi_leak=0.2, sharp=1.0, qw=None, big=8, fn=None, pfn=None, **kw):
    n = len(samples)
    caps = {v.kv_max_concurrency for v in samples.values()}
    if kw.pop('homo_exact', True) and len(caps) == 1:
        return policy.balance_step(samples, mode, ctx)
    share = sum(1 for s in samples.values() if s.waiting > 0) / n if n else 0.0
    p = min(1.0, sharp * share) if fn is None else fn(share)
    if pfn is not None:
        p = pfn(samples, share)
    leak = lo_leak + (hi_leak - lo_leak) * p
    qa = kw.pop('qw_all2', False)
    if kw.pop('wscale', False) and n > 4:
        mode = ModeConfig(mode.name, w_a=mode.w_a, w_b=mode.w_b * 4.0 / n)
    if qw is not None and (n >= big or qa):
        mode = ModeConfig(mode.name, w_a=qw, w_b=1.0 - qw)
    return policy.balance_step(samples, mode, ctx, prior=p, leak=leak, **kw)

VARIANTS = {
    "lp": dict(),                       # prior=share, leak 0.1->0.2
    "lp-l2": dict(lo_leak=0.2),         # prior=share, leak 0.2 fixed
    "lp-s2": dict(sharp=2.0),           # prior=min(1, 2*share)
    "lp-q75": dict(qw=0.75),            # + queue weight 0.75 in pools >= 8
    "lp-q100": dict(qw=1.0),
    "all-l2": dict(lo_leak=0.2, fn=lambda x: 1.0 if x >= 1.0 else 0.0),
    "sq-l2": dict(lo_leak=0.2, fn=lambda x: x * x),
    "half-l2": dict(lo_leak=0.2, fn=lambda x: 1.0 if x >= 0.5 else 0.0),
    "p05-l1": dict(lo_leak=0.1, hi_leak=0.1, pfn=lambda s, x: 0.5),
    "p05-l15": dict(lo_leak=0.15, hi_leak=0.15, pfn=lambda s, x: 0.5),
    "p075-l2": dict(lo_leak=0.2, pfn=lambda s, x: 0.75),
    "kvp-l2": dict(lo_leak=0.2, pfn=lambda s, x: sum(v.kv_usage for v in s.values()) / len(s)),
    "kvp-l1": dict(lo_leak=0.1, hi_leak=0.1, pfn=lambda s, x: sum(v.kv_usage for v in s.values()) / len(s)),
    "hs-l2": dict(lo_leak=0.2, pfn=lambda s, x: 0.5 + 0.5 * x),
    "p0-l1": dict(lo_leak=0.1, hi_leak=0.1, pfn=lambda s, x: 0.0),
    "Q10": dict(pfn=lambda s, x: min(1.0, Qf(s) / 0.1)),
    "Q25": dict(pfn=lambda s, x: min(1.0, Qf(s) / 0.25)),
    "Q50": dict(pfn=lambda s, x: min(1.0, Qf(s) / 0.5)),
    "Q25-l2": dict(lo_leak=0.2, pfn=lambda s, x: min(1.0, Qf(s) / 0.25)),
    "Q35": dict(pfn=lambda s, x: min(1.0, Qf(s) / 0.35)),
    "Q75": dict(pfn=lambda s, x: min(1.0, Qf(s) / 0.75)),
    "Q50-l15": dict(lo_leak=0.15, pfn=lambda s, x: min(1.0, Qf(s) / 0.5)),
    "Q50-f25": dict(pfn=lambda s, x: 0.25 + 0.75 * min(1.0, Qf(s) / 0.5)),
    "Q50-f50": dict(pfn=lambda s, x: 0.5 + 0.5 * min(1.0, Qf(s) / 0.5)),
    "qw75": dict(lo_leak=0.2, pfn=lambda s, x: 1.0, qw=0.75, qw_all2=True),
    "Q50-l15-qw75": dict(lo_leak=0.15, pfn=lambda s, x: min(1.0, Qf(s) / 0.5), qw=0.75, qw_all2=True),
    "Q50-l15-dz15": dict(lo_leak=0.15, pfn=lambda s, x: min(1.0, Qf(s) / 0.5), dead_zone=0.015),
    "Q50-l15-f25": dict(lo_leak=0.15, pfn=lambda s, x: 0.25 + 0.75 * min(1.0, Qf(s) / 0.5)),
    "Q50-l15-g4": dict(lo_leak=0.15, pfn=lambda s, x: min(1.0, Qf(s) / 0.5), gain=4.0),
    "big75": dict(lo_leak=0.2, pfn=lambda s, x: 1.0, qw=0.75, homo_exact=False),
    "big100": dict(lo_leak=0.2, pfn=lambda s, x: 1.0, qw=1.0, homo_exact=False),
    "bigscale": dict(lo_leak=0.2, pfn=lambda s, x: 1.0, wscale=True, homo_exact=False),
    "all": dict(fn=lambda x: 1.0 if x >= 1.0 else 0.0),
    "sq": dict(fn=lambda x: x * x),
}
SMOOTH = {"bal-sm3": None, "lp-sm3": ("lp", 0.3), "lp-q75-sm3": ("lp-q75", 0.3)}
for name, kw in VARIANTS.items():
    policy.POLICIES["bench:" + name] = lambda s, m, c, kw=kw: lp(s, m, c, **kw)
    T.CONTENDERS[name] = T.Contender(name, "ctl", "ratio-least-connections-member", "bench:" + name, T.W, label=name)
T.CONTENDERS['bal-sm3'] = T.Contender('bal-sm3', 'ctl', 'ratio-least-connections-member', 'balance', replace(T.W, smoothing=0.3), label='bal-sm3')
for name, (base, sm) in [(k, v) for k, v in SMOOTH.items() if v]:
    T.CONTENDERS[name] = T.Contender(name, "ctl", "ratio-least-connections-member", "bench:" + base, replace(T.W, smoothing=sm), label=name)

if __name__ == "__main__":
    out, cons = sys.argv[1], sys.argv[2].split(",")
    scen = (sys.argv[3] if len(sys.argv) > 3 else "hetero4-conv,homo4-conv,hetero4-code,homo4-code,hetero16-conv,hetero16-code").split(",")
    jobs = []
    for key in scen:
        sc = T.SCENARIOS[key]
        T.pool_capacity(sc.pool, sc.trace)
        for load in sc.loads:
            for c in cons:
                if sc.goal == "homo" and c in ("sideband", "oracle", "oracle-work"):
                    continue
                jobs.append((key, load, c, 600.0, int(os.environ.get('SEED', T.SEED)), T.Timing(), None))
    print(len(jobs), "jobs", flush=True)
    res = T.run_jobs(jobs, 2)
    json.dump(res, open(out, "w"))
