"""End to end on real engines: two llama.cpp servers of different speed behind HAProxy, the BIG-IP
emulator, and the real controller (`python -m controller run`) between them (bench/real).

Builds llama-server into the cache outside the checkout when it is not there yet (5-10 minutes on two
cores; `.ci/run` builds it first; `F5LR_NO_ENGINE_BUILD=1` skips instead), and skips, saying why, when it
cannot be built or HAProxy is not installed.
"""

from __future__ import annotations

import os
import time

import pytest

from bench.real import engine as eng
from bench.real import haproxy as hap
from bench.real import load
from bench.real.model import ModelSpec
from bench.real.rig import Options, Rig

#: small models so the test learns quickly; the second is several times slower per token
ENGINES = (("quick", ModelSpec("quick", 256, 4)), ("sluggish", ModelSpec("sluggish", 512, 8)))


@pytest.fixture(scope="module")
def rig():
    pytest.importorskip("gguf", reason="the gguf package writes the test's models (pip install -e '.[test]')")
    try:
        hap.binary()
    except hap.HAProxyUnavailable as e:
        pytest.skip(str(e))
    try:
        eng.ensure_server(build=os.environ.get("F5LR_NO_ENGINE_BUILD") != "1", timeout=1800, log=print)
    except eng.EngineUnavailable as e:
        pytest.skip(f"llama-server unavailable: {e}")
    r = Rig(Options(engines=ENGINES, slots=2, threads=1, interval_ms=500, log=print))
    try:
        r.start()
    except (eng.EngineUnavailable, hap.HAProxyUnavailable) as e:
        r.stop()
        pytest.skip(f"the rig could not start: {e}")
    yield r
    r.stop()


def test_the_controller_learns_the_slower_engine_and_gives_it_the_lower_ratio(rig):
    rig.use("default")
    rate = 0.6 * rig.request_rate(192, 48)
    arrivals = load.poisson(rate, 30.0, 192, 48, seed=7)
    outcomes = load.run("127.0.0.1", rig.haproxy.port, arrivals, patience=60.0, drain=60.0)
    # the point is what the controller learned; on a loaded machine some requests may time out
    assert sum(o.error is None for o in outcomes) >= 0.5 * len(outcomes), [o.error for o in outcomes if o.error][:5]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a tick or two after the load: the last windows close
        members = rig.members_status()
        speeds = {n: (m.get("speed") or {}).get("value") for n, m in members.items()}
        if all(speeds.values()) and len(speeds) == 2:
            break
        time.sleep(0.5)
    # it read the real pages: llama.cpp detected, the slots from /props, no scrape error
    for name, m in members.items():
        assert m["detected_engine_type"] == "llamacpp", (name, m)
        assert m["metrics"]["running_req"] is not None, (name, m)
        assert m["speed"]["source"] == "measured", (name, m["speed"])
    # it learned the slower engine as slower, as the engines' own timings say
    assert rig.speeds["sluggish"].gen_tps < rig.speeds["quick"].gen_tps
    assert speeds["sluggish"] < speeds["quick"], speeds
    # and gave it the lower ratio, on BIG-IP and (mirrored) in HAProxy
    ratios = {n: r for n, (r, _limit) in rig._read_pool().items()}
    assert ratios["sluggish"] < ratios["quick"], ratios
    weights = {n: s["weight"] for n, s in rig.haproxy.state().items()}
    assert weights["sluggish"] < weights["quick"], weights
