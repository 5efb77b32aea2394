"""Migrating from the sideband scheduler, end to end: `check` and `plan` on each of its shipped config files
against the BIG-IP emulator, and its ConfigMap run as the daemon serving its API (tests/unit/test_sideband_migration.py
has the in-process half)."""

from __future__ import annotations

import os

import pytest
import yaml

from controller.config.schema import ModeConfig
from controller.policy import sideband_modes
from tests.sideband_files import CONFIGS, SHIPPED


@pytest.fixture(scope="module")
def emulator():
    from bench import sideband_migration as mig

    bigip, servers, _ = mig.start()
    yield mig, bigip
    for s in servers:
        s.stop()
    bigip.stop()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_check_accepts_every_shipped_file(emulator, tmp_path, name):
    mig, bigip = emulator
    path = mig.for_emulator(CONFIGS / name, bigip, tmp_path / name)
    code, doc = mig.cli("check", "--config", str(path))
    assert code in (0, 1), doc  # never 2: the file is accepted
    fails = {f["code"] for f in doc["findings"] if f["severity"] == "fail"}
    warns = [f for f in doc["findings"] if f["code"] == "config-warning"]
    assert len(warns) == SHIPPED[name][2]
    if SHIPPED[name][1]:
        assert "unsupported-engine" in fails
    if name.startswith("readme") and name.endswith("2.yaml"):
        assert fails == {"metrics-refused"}  # its second pool scrapes https://...:9090/custom/metrics: nothing listens
    elif not SHIPPED[name][1]:
        assert code == 0 and not fails


def test_plan_gives_the_sidebands_scores_and_percent(emulator, tmp_path):
    mig, bigip = emulator
    path = mig.for_emulator(CONFIGS / "scheduler-config.yaml", bigip, tmp_path / "s.yaml")
    code, doc = mig.cli("plan", "--config", str(path))
    assert code == 0
    pools = {p["full_path"]: p for p in doc["pools"]}
    ms = pools["/Common/example_pool1"]["members"]
    w, c, r = ([m["metrics"][k] for m in ms] for k in ("waiting_queue", "cache_usage", "running_req"))
    theirs = sideband_modes.scores("s1_enhanced", w, c, r, ModeConfig("s1_enhanced", 0.2, 0.6))
    assert [m["score"] for m in ms] == pytest.approx(theirs, abs=2e-4)  # figures shown to 4 decimals
    assert [m["percent"] for m in ms] == pytest.approx(list(sideband_modes.percents(dict(enumerate(theirs))).values()), abs=0.02)
    assert all(m["ratio_percent"] == 25.0 for m in ms)  # plan writes nothing: the current, equal ratios
    fallback = pools["/Common/example_pool2"]
    assert {m["action"] for m in fallback["members"]} == {"pool-fallback"}
    assert sum(m["percent"] for m in fallback["members"]) == pytest.approx(100.0, abs=0.02)


def _get_json(url: str) -> tuple[int, dict] | None:
    import json
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
    try:
        with opener.open(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return None


def test_the_sidebands_configmap_runs_serves_its_api_and_follows_a_configmap_update(tmp_path):
    """`run` on the sideband's own ConfigMap, laid out as the kubelet mounts it (config.yaml -> ..data/config.yaml,
    ..data -> a timestamped directory, swapped on update), with the container's telemetry address from the
    environment: /health answers 200 with the sideband's body, /pools/status gives the sideband's score and
    percent, and a ConfigMap update (the ..data swap, no signal) is reloaded."""
    from bench import sideband_migration as mig
    from tests.conftest import free_port
    from tests.e2e_env import Daemon, assert_clean, cli_env, wait_for

    bigip, servers, _ = mig.start()
    d = None
    try:
        def version(name: str, changes: dict) -> str:
            (tmp_path / name).mkdir()
            path = mig.for_emulator(CONFIGS / "k8s-deployment-configmap.yaml", bigip, tmp_path / name / "config.yaml")
            data = yaml.safe_load(path.read_text())
            data["global"]["interval"] = 0.5  # the file's 5 s, shortened for the test
            for key, value in changes.items():
                data[key] = value
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            return name

        (tmp_path / "..data").symlink_to(version("..2026_12_07_01", {}))
        (tmp_path / "config.yaml").symlink_to("..data/config.yaml")
        port = free_port()
        env = cli_env(F5_PASSWORD=mig.PASSWORD, METRIC_PWD=None, F5LR_TELEMETRY_HOST="127.0.0.1",
                      F5LR_TELEMETRY_PORT=str(port))
        d = Daemon(tmp_path / "config.yaml", env=env)
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _get_json(base + "/health"), 20, what="/health") == (
            200, {"status": "healthy", "message": "Scheduler running normally"})

        def scored(policy_name: str):
            got = _get_json(base + "/pools/status")
            if not got or not got[1].get("pools"):
                return None
            (pool,) = got[1]["pools"]
            ok = pool.get("policy") == policy_name and all(m["score"] is not None for m in pool["members"])
            return pool if ok else None

        pool = wait_for(lambda: scored("s1_enhanced"), 20, what="scores on /pools/status")
        ms = pool["members"]
        w, c, r = ([m["metrics"][k] for m in ms] for k in ("waiting_queue", "cache_usage", "running_req"))
        theirs = sideband_modes.scores("s1_enhanced", w, c, r, ModeConfig("s1_enhanced", 0.2, 0.8))
        assert [m["score"] for m in ms] == pytest.approx(theirs, abs=2e-4)
        assert [m["percent"] for m in ms] == pytest.approx(list(sideband_modes.percents(dict(enumerate(theirs))).values()),
                                                           abs=0.02)

        # the ConfigMap is updated: the kubelet swaps ..data atomically; no signal reaches the process
        (tmp_path / "..data.new").symlink_to(version("..2026_12_07_02", {"modes": [{"name": "s2", "w_a": 0.4, "w_b": 0.3,
                                                                                     "w_g": 0.3}]}))
        os.replace(tmp_path / "..data.new", tmp_path / "..data")
        d.wait_event("config_reloaded", timeout=20)
        pool = wait_for(lambda: scored("s2"), 20, what="s2 scores after the update")
        assert sum(m["percent"] for m in pool["members"]) == pytest.approx(100.0, abs=0.05)
        assert d.stop()[0] == 0
        assert_clean(d.out, d.err, secrets=(mig.PASSWORD, "abcdefdfdsfds"))  # no traceback; neither the password nor the APIkey
    finally:
        if d is not None:
            d.close()
        for s in servers:
            s.stop()
        bigip.stop()
