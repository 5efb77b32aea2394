"""The sideband's 16 modes against the sideband's own code, run in a subprocess from a checkout of
github.com/f5devcentral/llm-inference-lb (skipped, saying so, without one)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from controller.config.schema import ModeConfig
from controller.policy import sideband_modes

TESTS = Path(__file__).resolve().parents[1]


def _sideband_git() -> Path | None:
    candidates = [os.environ.get("F5LR_SIDEBAND_GIT", ""),
                  str(TESTS.parent.parent / ".mirror" / "f5devcentral+llm-inference-lb" / "repo"),
                  "/work/.mirror/f5devcentral+llm-inference-lb/repo"]
    return next((Path(c) for c in candidates if c and (Path(c) / "HEAD").is_file()), None)


def test_matches_the_sidebands_own_code_on_random_pools(tmp_path):
    git = _sideband_git()
    if git is None:
        pytest.skip("no checkout of github.com/f5devcentral/llm-inference-lb (set F5LR_SIDEBAND_GIT to its git dir)")
    tar = subprocess.run(["git", "--git-dir", str(git), "archive", "f254c3e"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as archive:
        archive.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    rng = random.Random(20)
    cases = []
    for mode in sideband_modes.SIDEBAND_MODES:
        for _ in range(12):
            n = rng.randint(1, 6)
            cases.append({
                "mode": mode, "wa": round(rng.uniform(0, 1), 2), "wb": round(rng.uniform(0, 1), 2),
                "wg": round(rng.uniform(0, 0.5), 2), "tp": rng.choice([10.0, 30.0, 50.0]), "st": rng.choice([0.5, 1.0, 2.0]),
                "w": [rng.choice([0, 0, 1, 2, 5, 20, 80]) for _ in range(n)],
                "c": [round(rng.uniform(0, 1), 3) for _ in range(n)],
                "r": [rng.randint(0, 40) for _ in range(n)],
            })
    proc = subprocess.run([sys.executable, str(TESTS / "sideband_reference.py"), str(tmp_path)], input=json.dumps(cases),
                          capture_output=True, text=True, check=True, timeout=120,
                          cwd=tmp_path)  # its logger writes scheduler.log into the working directory
    theirs = json.loads(proc.stdout)
    for case, expected in zip(cases, theirs, strict=True):
        mode = ModeConfig(case["mode"], case["wa"], case["wb"], case["wg"], case["tp"], case["st"])
        if mode.w_a == mode.w_b == mode.w_g == 0:
            continue
        ours = sideband_modes.scores(case["mode"], case["w"], case["c"], case["r"], mode)
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12), case
