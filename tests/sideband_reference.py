"""Run the sideband scheduler's *own* ScoreCalculator on given figures (a harness; none of its code is here).

Usage: python tests/sideband_reference.py <checkout of github.com/f5devcentral/llm-inference-lb at f254c3e>
with a JSON list of cases on stdin ({"mode", "w", "c", "r", "wa", "wb", "wg", "tp", "st"}); prints the
scores per case as JSON. Its web and HTTP dependencies are stubbed: only core/score_calculator.py runs.
tests/unit/test_sideband_modes.py uses it to cross-check controller.policy.sideband_modes when the checkout is there,
and it produced the committed table of that test.
"""

import json
import logging
import sys
from unittest import mock

ROOT = sys.argv[1]
sys.path.insert(0, ROOT)
for name in ("aiohttp", "fastapi", "fastapi.responses", "pydantic", "uvicorn"):
    sys.modules.setdefault(name, mock.MagicMock())
logging.disable(logging.CRITICAL)
from config.config_loader import ModeConfig  # noqa: E402 - after the stubs
from core.models import EngineType, Pool, PoolMember  # noqa: E402
from core.score_calculator import ScoreCalculator  # noqa: E402


def run(mode, w, c, r, wa=0.5, wb=0.5, wg=0.0, tp=30.0, st=1.0):
    members = []
    for i, (a, b, x) in enumerate(zip(w, c, r, strict=True)):
        m = PoolMember(f"10.0.0.{i+1}", 8000, "Common")
        m.metrics = {"waiting_queue": a, "cache_usage": b, "running_req": x}
        members.append(m)
    pool = Pool("p", "Common", EngineType.VLLM, members)
    mc = ModeConfig(name=mode, w_a=wa, w_b=wb, w_g=wg, transition_point=tp, steepness=st)
    ScoreCalculator().calculate_pool_scores(pool, mc)
    return [m.score for m in pool.members]

if __name__ == "__main__":
    cases = json.load(sys.stdin)
    print(json.dumps([run(**c) for c in cases]))
