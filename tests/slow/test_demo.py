"""The main job, as a new user runs it: `f5-llm-ratio demo`, with its telemetry answering meanwhile."""

import json
import re
import subprocess
import sys
import time
import urllib.request

from tests.conftest import free_port


def get(url: str):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read().decode()


def poll(url: str, deadline: float, proc: subprocess.Popen | None = None):
    """The body once `url` answers 200; fails at `deadline` or as soon as `proc` has exited."""
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            status, body = get(url)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never answered 200" + ("" if proc is None or proc.poll() is None else " before the demo exited"))


def test_demo_runs_the_controller_and_serves_telemetry():
    port = free_port()
    cmd = [sys.executable, "-m", "controller", "demo", "--duration", "10", "--compare", "--telemetry-port", str(port), "--interval", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        # Generous for a loaded CI box: start-up (imports, a TLS certificate) can take seconds there; the
        # demo runs 10 s once started, and polling stops when it exits.
        health = json.loads(poll(f"{base}/healthz", time.monotonic() + 60, proc))
        assert health["status"] == "healthy"
        status = json.loads(poll(f"{base}/status", time.monotonic() + 3))
        members = status["pools"][0]["members"]
        assert len(members) == 4 and all(m["ratio"] >= 1 for m in members)
        assert abs(sum(m["share"] for m in members) - 1.0) < 1e-6
        assert "f5lr_member_ratio_weight{" in poll(f"{base}/metrics", time.monotonic() + 3)
        assert "history.json" in poll(f"{base}/static/app.js", time.monotonic() + 3)  # the live page the demo points at
        history = json.loads(poll(f"{base}/history.json", time.monotonic() + 3))
        assert len(history["pools"][0]["members"]) == 4
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert "final ratios:" in out and "least-conn" in out
    assert f"live page: http://127.0.0.1:{port}/" in out
    ratios = dict(kv.split("=") for kv in out.split("final ratios: ")[1].splitlines()[0].split(", "))
    assert set(ratios) == {"a100-a", "a100-b", "h100", "l40s"}
    # Ratios were written: at least one member moved off BIG-IP's default of 1.
    assert any(int(v) != 1 for v in ratios.values())
    summary = out.split("final ratios: ")[1]
    assert "lower is better" in summary and "p50 TTFT" in summary and "p99 TTFT" in summary
    assert "TTFT <= 2 s" in summary and re.search(r"requests done +\d+ of +\d+ \(open +\d+\)", summary)
    # the table's score column is on 0-1, as everywhere else; members are named as BIG-IP shows them
    rows = [line.split() for line in out.split("final ratios: ")[0].splitlines() if re.match(r"^(a100-a|h100):\d+ ", line)]
    assert rows and all(0.0 <= float(r[4]) <= 1.0 for r in rows if r[4] != "-")
    assert {m["name"].split(":")[0] for m in members} == {"a100-a", "a100-b", "h100", "l40s"}


