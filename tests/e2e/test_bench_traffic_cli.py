"""`python -m bench.traffic` and `python bench/traffic.py` as subprocesses: both run a scenario file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.traffic_support import TINY, write


@pytest.mark.parametrize("how", [["-m", "bench.traffic"], ["bench/traffic.py"]])
def test_runs_as_module_and_as_script(tmp_path, how):
    path = write(tmp_path, {**TINY, "duration_s": 20})
    out = tmp_path / "o.json"
    proc = subprocess.run([sys.executable, *how, "--scenario", str(path), "--json", str(out), "--quiet",
                           "--contenders", "lc,default"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(out.read_text())["contenders"]) == {"lc", "default"}
