"""End to end: the real CLI (a subprocess) against the HTTPS BIG-IP emulator and loopback vLLM engines.

Nothing is faked inside the controller: `python -m controller ...` reads a YAML file in the sideband
seed's format, logs in to the emulator over TLS (verified against the emulator's own certificate),
scrapes the engines over HTTP and PATCHes member ratios. The tests assert what an operator can observe:
the emulator's member ratios, writes, request log and tokens; the exit code; stdout/stderr.
Every CLI run is also checked for tracebacks and for any secret in its output (e2e_env.assert_clean).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e_cli_support import (
    LOADS,
    flip_loads,
    member_ratio_events,
    strictly_decreasing,
)
from tests.e2e_env import (
    POOL,
    Stack,
    cli,
    cli_env,
    merge,
    seed_config,
    write_config,
)

# --------------------------------------------------------------------------------------------------
# 1, 2: run --once with the seed's own config format


def test_run_once_writes_ratios_ordered_by_load(stack, tmp_path):
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    r = cli("run", "--once", "--config", str(cfg))

    assert r.code == 0, r.err
    first = stack.ratios()
    # every member was written (BIG-IP's default ratio 1 is below the floor, so it is always corrected) ...
    assert {w.member for w in stack.member_writes()} == set(stack.members)
    assert all(set(w.body) <= {"ratio", "connectionLimit", "description"} for w in stack.member_writes())
    assert all(w.kind == "PATCH" for w in stack.bigip.writes)
    # ... stepped from the clamped current value (floor 10), at most max_step x scale (50) per tick, so the
    # idle member gets 60, not 100, and the busy one stays at the floor; the order already follows load
    assert first[0] == 60 and first[-1] == 10 and all(10 <= x <= 60 for x in first), first
    assert first == sorted(first, reverse=True), first
    # one login, and the token is gone at exit
    assert stack.bigip.logins == 1
    assert stack.bigip.live_tokens() == []
    # each change is logged once, naming the member, with the ratio the emulator now holds
    for member, ratio in zip(stack.members, first, strict=True):
        (ev,) = member_ratio_events(r.events(), member)
        assert ev["ratio_to"] == ratio and ev["ratio_from"] == 1

    # two more ticks land the targets: lower waiting/KV -> higher ratio, strictly
    for _ in range(2):
        assert cli("run", "--once", "--config", str(cfg)).code == 0
    ratios = stack.ratios()
    assert strictly_decreasing(ratios), ratios
    # the best member gets the configured scale (default 100); none goes below the floor (default 10)
    assert max(ratios) == 100 and min(ratios) >= 10
    assert stack.bigip.logins == 3 and stack.bigip.live_tokens() == []


def converge(stack: Stack, cfg, runs: int = 3) -> None:
    """`run --once` until the ratios land (max_step lets one tick move a ratio at most 50 of 100)."""
    for _ in range(runs):
        assert cli("run", "--once", "--config", str(cfg)).code == 0


def test_second_run_once_at_unchanged_load_writes_nothing(stack, tmp_path):
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    converge(stack, cfg)
    writes, ratios = list(stack.bigip.writes), stack.ratios()

    r = cli("run", "--once", "--config", str(cfg))

    assert r.code == 0, r.err
    assert stack.bigip.writes == writes
    assert stack.ratios() == ratios
    assert not [e for e in r.events() if e.get("event") == "ratio_changed"]
    assert stack.bigip.logins == 4  # one per process
    assert stack.bigip.live_tokens() == []


def test_run_once_follows_a_load_change(stack, tmp_path):
    """The second run is not just idempotent: when loads change, it rewrites the order."""
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    assert cli("run", "--once", "--config", str(cfg)).code == 0
    flip_loads(stack)
    # one tick moves a ratio at most max_step * scale: several runs converge
    for _ in range(3):
        assert cli("run", "--once", "--config", str(cfg)).code == 0
    assert strictly_decreasing(stack.ratios()[::-1]), stack.ratios()


# --------------------------------------------------------------------------------------------------
# 3: plan and --dry-run write nothing


@pytest.mark.parametrize("args", [("plan",), ("run", "--once", "--dry-run")], ids=["plan", "dry-run"])
def test_plan_and_dry_run_print_every_member_and_write_nothing(stack, tmp_path, args):
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    r = cli(*args, "--config", str(cfg))

    assert r.code == 0, r.err
    for member in stack.members:
        assert member in r.out
    # the table shows the planned change from BIG-IP's default ratio 1, a max_step (50) from the floor
    # (10) toward the best member's target 100, which the reason names
    best = next(line for line in r.out.splitlines() if stack.members[0] in line)
    assert re.search(r"\b1 -> 60\b", best) and "target ratio 100" in best, best
    assert re.search(r"would write 3 member change", r.out), r.out
    assert stack.bigip.writes == []
    assert stack.config_changes() == []
    assert not [q for q in stack.bigip.request_log if q.method == "PATCH" and "/ltm/" in q.path]
    assert stack.ratios() == [1, 1, 1]
    assert stack.bigip.live_tokens() == []


# --------------------------------------------------------------------------------------------------
# 4: broken configs fail before any network call


BROKEN = {
    "unknown-key": (lambda c: merge(c, {"scheduler": {"metrics_fetch_intervall": 200}}), {},
                    "scheduler.metrics_fetch_intervall"),
    "unknown-pool-key": (lambda c: merge(c, {"pools": [{**c["pools"][0], "wieghts": {"floor": 5}}]}), {},
                         "pools[0].wieghts"),
    "bad-engine-type": (lambda c: merge(c, {"pools": [{**c["pools"][0], "engine_type": "vlm"}]}), {},
                        "pools[0].engine_type"),
    "missing-password-env": (lambda c: c, {"F5_PASSWORD": None}, "f5.password_env"),
    "interval-fast": (lambda c: merge(c, {"scheduler": {"metrics_fetch_interval": "fast"}}), {},
                      "scheduler.metrics_fetch_interval"),
}


@pytest.mark.parametrize("case, command", [
    *((case, "run --once") for case in BROKEN),
    *(("unknown-key", command) for command in ("plan", "check", "run", "run --once --dry-run")),
    ("missing-password-env", "run"),
])
def test_broken_config_exits_2_naming_the_key_before_any_call(stack, tmp_path, case, command):
    edit, env_changes, key_path = BROKEN[case]
    cfg = write_config(tmp_path / "broken.yaml", edit(seed_config(stack)))
    r = cli(*command.split(), "--config", str(cfg), env=cli_env(**env_changes), timeout=15)

    assert r.code == 2, (r.out, r.err)
    assert key_path in r.err, r.err
    assert stack.bigip.request_log == []
    assert stack.bigip.logins == 0
    assert stack.scrapes() == 0


def test_every_config_problem_is_reported_at_once(stack, tmp_path):
    c = seed_config(stack)
    c = merge(c, {"scheduler": {"metrics_fetch_interval": "fast"}, "pools": [{**c["pools"][0], "engine_type": "vlm"}]})
    r = cli("run", "--once", "--config", str(write_config(tmp_path / "c.yaml", c)), env=cli_env(F5_PASSWORD=None))
    assert r.code == 2
    for key in ("scheduler.metrics_fetch_interval", "pools[0].engine_type", "f5.password_env"):
        assert key in r.err, r.err
    assert stack.bigip.request_log == []


TYPED_SECRET = "hunter2-Qx7-typed"


@pytest.mark.parametrize("f5", [{"passwrd": TYPED_SECRET}, {"password": TYPED_SECRET},
                                {"password_env": TYPED_SECRET}, {"password_file": TYPED_SECRET},
                                {"Token": TYPED_SECRET}])
def test_a_secret_typed_under_a_wrong_key_never_appears_in_the_error(stack, tmp_path, f5):
    c = merge(seed_config(stack), {"f5": f5})
    for command in (("run", "--once"), ("check",), ("plan",)):
        r = cli(*command, "--config", str(write_config(tmp_path / "c.yaml", c)), timeout=15)
        assert r.code == 2, (r.out, r.err)
        assert f"f5.{next(iter(f5))}" in r.err, r.err  # the key is named
        assert TYPED_SECRET not in r.err and TYPED_SECRET not in r.out  # the value never
    assert stack.bigip.request_log == []


# --------------------------------------------------------------------------------------------------
# 5: one member's scrape fails


@pytest.mark.parametrize("fault, reason", [("refuse", "refused"), ("garbage", "not-prometheus")])
def test_member_scrape_failure_keeps_its_ratio_and_others_are_written(tmp_path, fault, reason):
    # member 1 (medium load) starts at ratio 20 (away from the pool's median, where a stale member would
    # eventually go) and cannot be scraped
    s = Stack(LOADS, ratios=[1, 20, 1]).start()
    try:
        s.servers[1].fault = fault
        cfg = write_config(tmp_path / "seed.yaml", seed_config(s))
        r = cli("run", "--once", "--config", str(cfg))

        # a member whose engine cannot be read is not a failure of the run: BIG-IP keeps balancing
        assert r.code == 0, r.err
        ratios = s.ratios()
        assert ratios[1] == 20, "the unscraped member's ratio must be held"
        assert ratios[0] > ratios[2] > 1, ratios
        assert {w.member for w in s.member_writes()} == {s.members[0], s.members[2]}
        failed = [e for e in r.events() if e.get("event") == "scrape_failed"]
        assert len(failed) == 1, failed
        assert failed[0]["member"] == s.members[1] and failed[0]["reason"] == reason
        assert s.members[0] not in " ".join(str(e) for e in failed)
        assert s.bigip.live_tokens() == []
    finally:
        s.stop()


def test_all_scrapes_failing_writes_nothing(tmp_path):
    s = Stack(LOADS, ratios=[40, 50, 60]).start()
    try:
        for srv in s.servers:
            srv.fault = "http500"
        r = cli("run", "--once", "--config", str(write_config(tmp_path / "seed.yaml", seed_config(s))))
        # (the exit code is left open here: the scrape failures are not BIG-IP failures, but nothing
        # could be decided either; `check` is the command that turns that into a FAIL)
        assert s.ratios() == [40, 50, 60]
        assert s.bigip.writes == [] and s.config_changes() == []
        assert len([e for e in r.events() if e.get("event") == "scrape_failed"]) == 3
    finally:
        s.stop()


# --------------------------------------------------------------------------------------------------
# the opt-in goodput mode: weights.queue_time_limit: slo sets the pool's queueTimeLimit


def pool_writes(s: Stack) -> list:
    return [w for w in s.bigip.writes if w.kind == "PATCH-POOL"]


def queue_time_limit(s: Stack) -> int:
    return s.bigip.pool(POOL, expand=False)["queueTimeLimit"]


def test_queue_time_limit_slo_sets_the_pool_once_and_plan_shows_it(tmp_path):
    s = Stack(LOADS, pool_props={"queue_on_connection_limit": True}).start()
    try:
        cfg = write_config(tmp_path / "slo.yaml", merge(seed_config(s), {"weights": {"queue_time_limit": "slo", "slo_s": 3}}))
        # plan: shows the planned queueTimeLimit (0.5 x 3 s), writes nothing
        r = cli("plan", "--config", str(cfg))
        assert r.code == 0, r.err
        assert "queue: queueTimeLimit 0 -> 1500 ms" in r.out and "and queueTimeLimit on 1 pool(s)" in r.out, r.out
        assert s.bigip.writes == [] and queue_time_limit(s) == 0

        r = cli("run", "--once", "--config", str(cfg))
        assert r.code == 0, r.err
        assert queue_time_limit(s) == 1500
        (w,) = pool_writes(s)
        assert w.body == {"queueTimeLimit": 1500} and w.changed == {"queueTimeLimit": (0, 1500)}
        (ev,) = [e for e in r.events() if e.get("event") == "pool_setting_changed"]
        assert ev["value_from"] == 0 and ev["value_to"] == 1500 and "reset" in ev["reason"]

        # not rewritten while BIG-IP holds it ...
        for _ in range(2):
            assert cli("run", "--once", "--config", str(cfg)).code == 0
        assert len(pool_writes(s)) == 1
        # ... and put back when someone changes it
        s.bigip.set_pool(POOL, queueTimeLimit=0)
        assert cli("run", "--once", "--config", str(cfg)).code == 0
        assert queue_time_limit(s) == 1500 and len(pool_writes(s)) == 2
    finally:
        s.stop()


def test_queue_time_limit_off_never_touches_the_pool(tmp_path):
    s = Stack(LOADS, pool_props={"queue_on_connection_limit": True, "queue_time_limit": 5000}).start()
    try:
        cfg = write_config(tmp_path / "off.yaml", seed_config(s))
        for _ in range(2):
            assert cli("run", "--once", "--config", str(cfg)).code == 0
        assert s.member_writes()  # the run did write its members
        assert pool_writes(s) == [] and queue_time_limit(s) == 5000
    finally:
        s.stop()


def test_queue_time_limit_slo_on_a_pool_that_does_not_queue_says_so_and_writes_no_setting(tmp_path):
    s = Stack(LOADS).start()
    try:
        cfg = write_config(tmp_path / "slo.yaml", merge(seed_config(s), {"weights": {"queue_time_limit": "slo"}}))
        r = cli("check", "--config", str(cfg))
        assert "queueOnConnectionLimit is disabled on the pool" in r.out, r.out
        assert "queue-on-connection-limit enabled" in r.out
        assert cli("run", "--once", "--config", str(cfg)).code == 0
        assert pool_writes(s) == [] and queue_time_limit(s) == 0
    finally:
        s.stop()
