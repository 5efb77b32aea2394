"""Goal ratios from bench/policy_experiments.py result files.

Heterogeneous rows: p99, then p99 ÷ least-connections / ÷ sideband / ÷ best oracle (goals 0.6 / 0.8 / 1.3).
Homogeneous rows: p99 ÷ least-connections (goal 1.05). `w` is BIG-IP writes per minute.

    python bench/policy_table.py RESULTS.json [MORE.json ...]
"""

import json
import sys

BASELINES = ("lc", "sideband", "oracle", "oracle-work")


def load_results(paths):
    results = []
    for path in paths:
        with open(path) as fh:
            results += json.load(fh)
    return {(r["scenario"], r["load"], r["contender"]): r for r in results}


def hetero_cell(d, by, key, load):
    lc, sb = by[(key, load, "lc")], by[(key, load, "sideband")]
    oracle = min(by[(key, load, o)]["p99"] for o in ("oracle", "oracle-work") if (key, load, o) in by)
    ratios = (d["p99"] / lc["p99"], d["p99"] / sb["p99"], d["p99"] / oracle)
    met = sum(r <= g for r, g in zip(ratios, (0.6, 0.8, 1.3), strict=True))
    text = f"{d['p99']:.2f} {ratios[0]:.2f}/{ratios[1]:.2f}/{ratios[2]:.2f}{'' if ratios[2] <= 1.3 else '!'} w{d['writes_per_min']:.0f}"
    return text, met, 3, 0.0


def homo_cell(d, by, key, load):
    ratio = d["p99"] / by[(key, load, "lc")]["p99"]
    return f"{d['p99']:.2f} {ratio:.3f}{'' if ratio <= 1.05 else '!'} w{d['writes_per_min']:.0f}", int(ratio <= 1.05), 1, ratio


def main(paths) -> None:
    by = load_results(paths)
    contenders = sorted({c for _, _, c in by if c not in BASELINES}, key=lambda c: (c != "balance-rlc", c))
    cases = sorted({(k, ld) for k, ld, _ in by if not (k.startswith("hetero") and ld < 0.7)})
    summary = {c: [0, 0, 0.0] for c in contenders}
    print("hetero: p99 vsLC/vsSB/vsOracle (goals .6/.8/1.3); homo: p99 and p99/LC (goal 1.05); w = writes/min")
    print(f"{'case':22s}" + "".join(f"{c:>28s}" for c in contenders))
    for key, load in cases:
        line = f"{key + ' ' + str(load):22s}"
        for c in contenders:
            d = by.get((key, load, c))
            if d is None or (key, load, "lc") not in by or (key.startswith("hetero") and (key, load, "sideband") not in by):
                line += f"{'-':>28s}"
                continue
            text, met, total, homo = (hetero_cell if key.startswith("hetero") else homo_cell)(d, by, key, load)
            s = summary[c]
            s[0], s[1], s[2] = s[0] + met, s[1] + total, max(s[2], homo)
            line += f"{text:>28s}"
        print(line)
    print("cells met:", {c: f"{v[0]}/{v[1]} worst homo {v[2]:.3f}" for c, v in summary.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
