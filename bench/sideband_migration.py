"""Migrating from the sideband scheduler, measured: its shipped config files run through `check` and `plan`.

    python -m bench.sideband_migration [--sideband-git DIR]

What it does, all on 127.0.0.1:
* starts the BIG-IP emulator with the pools the sideband's files name (/Common/example_pool1,
  /Common/example_pool2, /Common/llm-pool-1, /tenant-1/llm-pool-2) and one engine page server per member
  (vLLM pages with the pre-0.10 KV gauge `vllm:gpu_cache_usage_perc`, which the sideband reads; SGLang pages),
  each with fixed figures (FIGURES);
* takes each of the sideband's config files (tests/sideband_configs/: its three config/*.yaml, the ConfigMap
  of k8s-deployment.yaml and the complete examples of README.md and docs/README-zh.md, at f254c3e), sets
  only `f5.port`, `f5.verify_tls` and `f5.timeout` for the emulator (f5.host is already 127.0.0.1 there),
  and runs `python -m controller check --json` and `plan --json` on it with F5_PASSWORD set and METRIC_PWD
  not set;
* where a checkout of the sideband is at hand (--sideband-git, a bare git dir), runs the sideband's own
  ScoreCalculator (tests/sideband_reference.py) on the same figures with the file's first mode, and prints
  its scores and `percent` beside the controller's.

Prints one Markdown table per file; docs/migration.md quotes the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import yaml

from controller.policy import sideband_modes
from controller.sim.bigip import BigIPEmulator
from controller.sim.engine import Engine, EngineSpec
from controller.sim.engine_server import EngineServer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "sideband_configs"
PASSWORD = "bench-Pa55-sideband"
#: pool -> (page flavour, [(waiting, running, KV use)] per member)
FIGURES = {
    "/Common/example_pool1": ("vllm-legacy", [(0, 4, 0.30), (2, 10, 0.55), (0, 2, 0.12), (5, 30, 0.80)]),
    "/Common/example_pool2": ("sglang", [(0, 3, 0.25), (1, 8, 0.60)]),
    "/Common/llm-pool-1": ("vllm-legacy", [(0, 4, 0.30), (2, 10, 0.55), (0, 2, 0.12), (5, 30, 0.80)]),
    "/tenant-1/llm-pool-2": ("sglang", [(0, 3, 0.25), (1, 8, 0.60)]),
}
DEFAULT_GIT = REPO.parent.parent / ".mirror" / "f5devcentral+llm-inference-lb" / "repo"


class Fixed:
    """A member's page source: an idle engine's snapshot with waiting, running and KV use set."""

    _base = None

    def __init__(self, name: str, waiting: int, running: int, kv: float):
        self.name, self.waiting, self.running, self.kv = name, waiting, running, kv

    def snapshot(self):
        if Fixed._base is None:
            Fixed._base = Engine(EngineSpec(name="sideband-bench")).snapshot()
        base = Fixed._base
        used = round(self.kv * base.num_gpu_blocks)
        return dataclasses.replace(base, name=self.name, waiting=self.waiting, running=self.running,
                                   kv_usage=used / base.num_gpu_blocks, kv_used_blocks=used)


def start() -> tuple[BigIPEmulator, list[EngineServer], dict[str, list[str]]]:
    bigip = BigIPEmulator(users={"admin": PASSWORD, "llmscheduler": PASSWORD})
    bigip.start()
    servers, members = [], {}
    for pool, (flavour, loads) in FIGURES.items():
        names = []
        for i, (w, r, kv) in enumerate(loads):
            srv = EngineServer(Fixed(f"{pool}-{i}", w, r, kv), flavour)
            names.append(f"127.0.0.1:{srv.start()}")
            servers.append(srv)
        bigip.add_pool(pool, members=[{"name": n, "ratio": 1} for n in names])
        members[pool] = names
    return bigip, servers, members


def for_emulator(src: Path, bigip: BigIPEmulator, out: Path) -> Path:
    data = yaml.safe_load(src.read_text())
    assert data["f5"]["host"] == "127.0.0.1", "the fixtures point f5.host at loopback"
    data["f5"].update(port=bigip.port, verify_tls=bigip.cert_path, timeout=2)
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out


def cli(*args: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(F5_PASSWORD=PASSWORD, NO_PROXY="*")
    env.pop("METRIC_PWD", None)
    p = subprocess.run([sys.executable, "-m", "controller", *args, "--json"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, {"stderr": p.stderr.strip()[-300:]}


def sideband_scores(git: Path | None, cases: list[dict]) -> list[list[float]] | None:
    if git is None or not (git / "HEAD").is_file() or not cases:
        return None
    with tempfile.TemporaryDirectory() as tree:
        tar = subprocess.run(["git", "--git-dir", str(git), "archive", "f254c3e"], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=BytesIO(tar)) as archive:
            archive.extractall(tree, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        p = subprocess.run([sys.executable, str(REPO / "tests" / "sideband_reference.py"), tree], input=json.dumps(cases),
                           capture_output=True, text=True, check=True, timeout=120,
                           cwd=tree)  # its logger writes scheduler.log into the working directory
    return json.loads(p.stdout)


def report(name: str, check: tuple[int, dict], plan: tuple[int, dict], mode: dict, git: Path | None) -> list[str]:
    code, doc = check
    findings = doc.get("findings", [])
    count = {s: sum(1 for f in findings if f["severity"] == s) for s in ("warn", "fail")}
    fails = "; ".join(f"{f['item']}: {f['message'][:90]}" for f in findings if f["severity"] == "fail")
    warns = "; ".join(f"{f['message'][:90]}" for f in findings if f["code"] == "config-warning")
    lines = [f"### {name}", "", f"- `check`: exit {code}; {count['warn']} warn, {count['fail']} FAIL"
             + (f" ({fails})" if fails else "") + (f"; config warnings: {warns}" if warns else "")]
    pcode, pdoc = plan
    lines.append(f"- `plan`: exit {pcode}; mode {mode['name']} (w_a {mode['w_a']}, w_b {mode['w_b']}, w_g {mode['w_g']})")
    cases, rows = [], []
    for pool in pdoc.get("pools", []):
        path = pool.get("full_path") or f"/{pool['partition']}/{pool['name']}"
        ms = pool["members"]
        fresh = [m for m in ms if m["metrics"]["waiting_queue"] is not None]
        if fresh and len(fresh) == len(ms) and pool.get("policy") in sideband_modes.SIDEBAND_MODES:
            cases.append({"mode": pool["policy"], "wa": mode["w_a"], "wb": mode["w_b"], "wg": mode["w_g"],
                          "tp": mode.get("transition_point", 30.0), "st": mode.get("steepness", 1.0),
                          "w": [m["metrics"]["waiting_queue"] for m in ms], "c": [m["metrics"]["cache_usage"] for m in ms],
                          "r": [m["metrics"]["running_req"] for m in ms]})
        rows.append((path, pool, len(cases) - 1 if cases and fresh and len(fresh) == len(ms) else None))
    theirs = sideband_scores(git, cases)
    lines += ["", "| pool | member (wait/run/kv) | action | ratio | score | percent | ratio_percent | sideband score | sideband percent |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for path, pool, case in rows:
        sb = theirs[case] if theirs is not None and case is not None else None
        sb_pct = sideband_modes.percents(dict(enumerate(sb))) if sb else {}
        if pool.get("error") or not pool["members"]:
            lines.append(f"| {path} | — | {pool.get('error') or pool.get('note') or ''} | | | | | | |")
        for i, m in enumerate(pool["members"]):
            x = m["metrics"]
            fig = "no metrics" if x["waiting_queue"] is None else f"{x['waiting_queue']:g}/{x['running_req']:g}/{x['cache_usage']:g}"
            score = "" if m["score"] is None else f"{m['score']:.4f}"
            lines.append(f"| {path} | :{m['port']} {fig} | {m['action']} | {m['ratio']}→{m['planned_ratio']} | {score} | "
                         f"{m['percent']} | {m['ratio_percent']} | {'' if sb is None else f'{sb[i]:.4f}'} | "
                         f"{'' if sb is None else sb_pct[i]} |")
    return [*lines, ""]


def first_mode(path: Path) -> dict:
    """The mode the sideband uses for every pool: the file's first, an unknown name read as s1."""
    from controller.config import yamlfile

    cfg = yamlfile.parse(yaml.safe_load(path.read_text()), {"F5_PASSWORD": "x"}, source=str(path))
    m = cfg.modes[0]
    return {"name": m.name, "w_a": m.w_a, "w_b": m.w_b, "w_g": m.w_g, "transition_point": m.transition_point,
            "steepness": m.steepness}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sideband-git", type=Path, default=Path(os.environ.get("F5LR_SIDEBAND_GIT", DEFAULT_GIT)),
                    help="bare git dir of github.com/f5devcentral/llm-inference-lb (for its own scores)")
    args = ap.parse_args(argv)
    git = args.sideband_git if (args.sideband_git / "HEAD").is_file() else None
    bigip, servers, _ = start()
    out: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for src in sorted(CONFIGS.glob("*.yaml")):
                path = for_emulator(src, bigip, Path(tmp) / src.name)
                out += report(src.name, cli("check", "--config", str(path)), cli("plan", "--config", str(path)),
                              first_mode(path), git)
    finally:
        for s in servers:
            s.stop()
        bigip.stop()
    print("\n".join(out))
    if git is None:
        print("(no sideband checkout: its own scores not computed; pass --sideband-git)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
