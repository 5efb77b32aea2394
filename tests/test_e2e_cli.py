"""End to end: the real CLI (a subprocess) against the HTTPS BIG-IP emulator and loopback vLLM engines.

Nothing is faked inside the controller: `python -m controller ...` reads a YAML file in the sideband
seed's format, logs in to the emulator over TLS (verified against the emulator's own certificate),
scrapes the engines over HTTP and PATCHes member ratios. The tests assert what an operator can observe:
the emulator's member ratios, writes, request log and tokens; the exit code; stdout/stderr.
Every CLI run is also checked for tracebacks and for any secret in its output (e2e_env.assert_clean).
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from e2e_env import (
    API_KEY,
    METRIC_PASSWORD,
    PASSWORD,
    POOL,
    Daemon,
    Stack,
    assert_clean,
    cli,
    cli_env,
    free_port,
    merge,
    seed_config,
    wait_for,
    write_config,
)

# idle, medium, busy: (waiting, running, KV usage)
LOADS = [(0, 1, 0.05), (6, 8, 0.40), (24, 16, 0.90)]


@pytest.fixture
def stack():
    s = Stack(LOADS).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def daemons():
    """Background `run` processes; killed (and their files closed) whatever the test did."""
    started: list[Daemon] = []

    def start(config, *extra, **kw) -> Daemon:
        d = Daemon(config, *extra, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
    for d in started:  # whatever a test asserted, no daemon may have printed a traceback or a secret
        assert_clean(d.out, d.err)


def daemon_config(stack: Stack, **changes) -> dict:
    """The seed config tuned for a long-running test: membership re-read often (so the token is used
    every few ticks), telemetry off (no fixed port to collide on)."""
    return merge(seed_config(stack), merge({"scheduler": {"pool_fetch_interval": 0.3}, "telemetry": {"enabled": False}}, changes))


def strictly_decreasing(xs) -> bool:
    return all(xs[i] > xs[i + 1] for i in range(len(xs) - 1))


def flip_loads(stack: Stack) -> None:
    """The idle member becomes the busy one and vice versa."""
    for load, (w, run, kv) in zip(stack.loads, reversed(LOADS), strict=True):
        load.set(w, run, kv)


def member_ratio_events(events, member: str) -> list[dict]:
    return [e for e in events if e.get("event") == "ratio_changed" and e.get("member") == member]


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
# 6: token lifecycle in the daemon


def test_daemon_keeps_one_token_past_its_original_timeout_and_deletes_it_on_sigterm(tmp_path, daemons):
    s = Stack(LOADS, token_timeout=2).start()  # unextended, the token would die after 2 s
    try:
        d = daemons(write_config(tmp_path / "d.yaml", daemon_config(s)))
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        peak = 0
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            peak = max(peak, len(s.bigip.live_tokens()))
            time.sleep(0.02)
        # after the 2 s timeout: the same token still works (writes land, no new login)
        flip_loads(s)
        wait_for(lambda: strictly_decreasing(s.ratios()[::-1]), 10, what="ratios after the load change")
        assert s.bigip.logins == 1
        assert peak == 1
        assert d.alive()

        code, seconds = d.stop()
        assert code == 0 and seconds < 5
        assert s.bigip.live_tokens() == []
        assert_clean(d.out, d.err)
        assert d.events("stopped")
    finally:
        s.stop()


def test_sigterm_during_a_hung_tick_still_deletes_the_token_and_exits_within_5s(tmp_path, daemons):
    """A scrape that hangs for 30 s holds the tick; SIGTERM must not wait for it."""
    s = Stack(LOADS).start()
    try:
        slow = {"scheduler": {"tick_deadline": 30}, "f5": {"tick_budget": 10},  # the bound must fit the watchdog
                "pools": [{**seed_config(s)["pools"][0], "metrics": {"timeout": 30}}]}
        d = daemons(write_config(tmp_path / "d.yaml", daemon_config(s, **slow)))
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        s.servers[0].hang_seconds = 60
        s.servers[0].fault = "timeout"
        before = s.servers[0].scrapes
        wait_for(lambda: s.servers[0].scrapes > before, 10, what="a scrape that hangs")
        code, seconds = d.stop()
        assert code == 0 and seconds < 5
        assert s.bigip.live_tokens() == []
        assert d.events("stopped_during_tick")
    finally:
        s.servers[0].fault = None
        s.stop()


def test_daemon_refreshes_a_token_it_cannot_extend_without_piling_up_tokens(tmp_path, daemons):
    """BIG-IP refuses the extension (e.g. a capped timeout): the client must re-login before expiry,
    delete the old token, and never hold more than one (two only during the swap)."""
    s = Stack(LOADS, token_timeout=3).start()
    try:
        s.bigip.fail_next(10**6, kind=(400, {"code": 400, "message": "Invalid timeout value 36000", "errorStack": [],
                                             "apiError": 1}), path=r"^/mgmt/shared/authz/tokens/", method="PATCH")
        started = time.monotonic()
        d = daemons(write_config(tmp_path / "d.yaml", daemon_config(s)))
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        peak, samples = 0, []
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            n = len(s.bigip.live_tokens())
            peak, samples = max(peak, n), samples + [n]
            time.sleep(0.02)
        flip_loads(s)
        wait_for(lambda: strictly_decreasing(s.ratios()[::-1]), 10, what="ratios after the load change")
        ran = time.monotonic() - started
        assert peak <= 2
        assert samples.count(1) >= 0.9 * len(samples), "one live token almost all the time"
        # it did refresh (the 3 s token would have expired) ...
        assert s.bigip.logins >= 2
        # ... a few times, not once per request: the pool is read every ~0.3 s, so a login per call would
        # be ~3/s; refreshing no earlier than a third of the way through a 3 s token allows ~1/s
        assert s.bigip.logins <= ran / 1.0 + 2, f"{s.bigip.logins} logins in {ran:.1f}s with a 3 s token"
        assert not d.events("bigip_read_failed")

        code, _ = d.stop()
        assert code == 0
        assert s.bigip.live_tokens() == []
    finally:
        s.stop()


# --------------------------------------------------------------------------------------------------
# 7: BIG-IP restart mid-run


def test_daemon_logs_in_again_after_a_bigip_restart_and_keeps_writing(tmp_path, daemons):
    s = Stack(LOADS).start()
    try:
        d = daemons(write_config(tmp_path / "d.yaml", daemon_config(s)))
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        assert s.bigip.logins == 1

        s.bigip.restart()  # every token is gone
        restarted = time.monotonic()
        wait_for(lambda: s.bigip.logins == 2, 5, what="a second login")
        relogin_after = time.monotonic() - restarted
        flip_loads(s)
        wait_for(lambda: strictly_decreasing(s.ratios()[::-1]), 10, what="ratios after the restart")

        # membership is re-read every 0.3 s: the lost token is noticed and replaced within a tick or two
        assert relogin_after < 1.5, relogin_after
        assert s.bigip.logins == 2
        assert len(s.bigip.live_tokens()) == 1
        # the 401 was absorbed by one re-login: no tick failed
        assert not d.events("bigip_read_failed") and not d.events("write_failed")
        assert d.stop()[0] == 0
        assert s.bigip.live_tokens() == []
    finally:
        s.stop()


# --------------------------------------------------------------------------------------------------
# 8: SIGHUP reload


def test_sighup_with_a_bad_config_keeps_the_old_one_and_a_good_one_is_applied(tmp_path, daemons):
    s = Stack(LOADS).start()
    try:
        good = daemon_config(s)
        path = write_config(tmp_path / "d.yaml", good)
        d = daemons(path)
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        assert max(s.ratios()) == 100

        # a broken file: rejected, the daemon keeps ticking on the old config
        write_config(path, merge(good, {"scheduler": {"metrics_fetch_interval": "fast"}}))
        d.signal(signal.SIGHUP)
        (ev,) = d.wait_event("reload_rejected")
        assert "scheduler.metrics_fetch_interval" in str(ev)
        flip_loads(s)
        wait_for(lambda: strictly_decreasing(s.ratios()[::-1]), 10, what="ratios on the old config")
        assert max(s.ratios()) == 100 and d.alive()
        assert not d.events("config_reloaded")

        # a good, changed file: applied (scale 100 -> 60 caps the best member at 60)
        write_config(path, merge(good, {"weights": {"scale": 60, "floor": 5}}))
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded")
        wait_for(lambda: max(s.ratios()) == 60, 10, what="ratios at the new scale")
        assert strictly_decreasing(s.ratios()[::-1]) and min(s.ratios()) >= 5
        # the reload replaced the client: the old token was deleted, not leaked
        assert len(s.bigip.live_tokens()) == 1
        assert d.stop()[0] == 0
        assert s.bigip.live_tokens() == []
        assert_clean(d.out, d.err)
    finally:
        s.stop()


# --------------------------------------------------------------------------------------------------
# 9: check


def check_rows(out: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S.*?|\s{2}\S+)\s{2,}(ok|warn|FAIL)\s{2,}(.*)$", line)
        if m:
            rows[m.group(1).strip()] = (m.group(2), m.group(3))
    return rows


def test_check_prints_a_table_and_exits_0(stack, tmp_path):
    r = cli("check", "--config", str(write_config(tmp_path / "seed.yaml", seed_config(stack))))

    assert r.code == 0, r.out + r.err
    rows = check_rows(r.out)
    assert rows["config"][0] == "ok"
    assert rows["login"] == ("ok", "BIG-IP " + stack.bigip.version)
    assert rows["role"][0] == "ok" and "admin" in rows["role"][1]
    assert "config sync" in rows
    assert rows[f"pool {POOL}"][0] == "ok"
    assert "ratio-least-connections-member" in rows[f"pool {POOL}"][1]
    assert "3 member(s), 3 active" in rows[f"pool {POOL}"][1]
    for member, (w, _, _) in zip(stack.members, LOADS, strict=True):
        assert rows[member][0] == "ok" and f"waiting={w}" in rows[member][1]
    assert "ready" in r.out
    assert stack.bigip.writes == [] and stack.config_changes() == []
    assert stack.bigip.live_tokens() == []


def test_check_does_not_warn_about_the_default_sync_only_device_groups(stack, tmp_path):
    """Every BIG-IP has datasync-global-dg and device_trust_group (type sync-only, auto-sync on); they do
    not carry LTM pools, so a ratio write starts no config sync. Only a sync-failover group with auto-sync does."""
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    rows = check_rows(cli("check", "--config", str(cfg)).out)
    assert rows["config sync"][0] == "ok", rows["config sync"]

    stack.bigip.add_device_group("failover-dg", type="sync-failover", auto_sync=True)
    rows = check_rows(cli("check", "--config", str(cfg)).out)
    assert rows["config sync"][0] == "warn" and "failover-dg" in rows["config sync"][1]


def test_check_fails_on_round_robin_with_the_tmsh_fix(tmp_path):
    """Issue 11: a mode that ignores member ratios is not steerable: FAIL with the reason and the fix."""
    s = Stack(LOADS, lb_mode="round-robin").start()
    try:
        r = cli("check", "--config", str(write_config(tmp_path / "seed.yaml", seed_config(s))))
        assert r.code == 1, r.out + r.err
        status, detail = check_rows(r.out)[f"pool {POOL}"]
        assert status == "FAIL" and "round-robin" in detail and "ignores member ratios" in detail
        assert f"tmsh modify ltm pool {POOL} load-balancing-mode ratio-least-connections-member" in detail
        assert "BLOCKED" in r.out
    finally:
        s.stop()


def test_check_fails_on_a_missing_pool(stack, tmp_path):
    c = seed_config(stack)
    c = merge(c, {"pools": [c["pools"][0], {**c["pools"][0], "name": "no-such-pool"}]})
    r = cli("check", "--config", str(write_config(tmp_path / "seed.yaml", c)))

    assert r.code == 1, r.out + r.err
    rows = check_rows(r.out)
    assert rows["pool /Common/no-such-pool"] == ("FAIL", "not found on BIG-IP")
    assert rows[f"pool {POOL}"][0] == "ok"
    assert "BLOCKED" in r.out
    assert stack.bigip.live_tokens() == []


# --------------------------------------------------------------------------------------------------
# 10: secrets


@pytest.mark.parametrize("args", [("run", "--once"), ("plan",), ("check",), ("run", "--once", "--dry-run")])
def test_no_secret_or_token_in_any_output_even_at_debug(stack, tmp_path, args):
    c = merge(seed_config(stack), {"global": {"log_level": "DEBUG"}})
    r = cli(*args, "--config", str(write_config(tmp_path / "seed.yaml", c)))

    assert r.code == 0, r.err
    assert r.err.strip(), "DEBUG logging produced no output at all"
    tokens = stack.tokens_seen()
    assert tokens, "the emulator saw no token"
    assert_clean(r.out, r.err, secrets=(PASSWORD, METRIC_PASSWORD, API_KEY, *tokens))
    # the config file itself holds the API key (the seed's format): it must not be echoed either
    assert API_KEY not in r.text


@pytest.mark.parametrize("args", [("run", "--once"), ("plan",), ("check",)])
def test_wrong_password_exits_1_with_a_clear_message(stack, tmp_path, args):
    wrong = "e2e-WRONG-pw-Hh4uQ"
    cfg = write_config(tmp_path / "seed.yaml", seed_config(stack))
    r = cli(*args, "--config", str(cfg), env=cli_env(F5_PASSWORD=wrong))

    assert r.code == 1, (r.out, r.err)
    assert_clean(r.out, r.err, secrets=(wrong, PASSWORD, METRIC_PASSWORD, API_KEY))
    assert "login refused for user admin" in r.text
    assert "F5_PASSWORD" in r.text  # says where the password came from (not what it is)
    assert stack.bigip.failed_logins >= 1 and stack.bigip.logins == 0
    assert stack.bigip.writes == []


def test_a_refused_login_is_not_retried_for_every_pool_in_the_same_tick(stack, tmp_path):
    """Many BIG-IPs lock an account after a few failed logins (and the lock hits the admins sharing it):
    one tick with a wrong password must try the password once, not once per pool."""
    c = seed_config(stack)
    c = merge(c, {"pools": [{**c["pools"][0], "name": name} for name in ("llm-pool-1", "llm-pool-2", "llm-pool-3")]})
    r = cli("run", "--once", "--config", str(write_config(tmp_path / "three.yaml", c)),
            env=cli_env(F5_PASSWORD="e2e-WRONG-pw-Hh4uQ"))

    assert r.code == 1, (r.out, r.err)
    assert "login refused for user admin" in r.err
    assert stack.bigip.failed_logins == 1, f"{stack.bigip.failed_logins} failed logins in one tick"


def test_a_bigip_error_that_echoes_the_password_is_not_repeated(stack, tmp_path):
    """A proxy or a buggy BIG-IP build quoting the login body back: the CLI reports the error, not the secret."""
    echo = {"code": 500, "message": f'internal error handling {{"username":"admin","password":"{PASSWORD}"}}'}
    stack.bigip.fail_next(10, kind=(500, echo), path=r"/mgmt/shared/authn/login")
    r = cli("run", "--once", "--config", str(write_config(tmp_path / "seed.yaml", seed_config(stack))))

    assert r.code == 1, (r.out, r.err)
    assert "internal error handling" in r.err  # BIG-IP's message is passed on ...
    assert_clean(r.out, r.err)  # ... without the password
    assert stack.bigip.writes == []


# --------------------------------------------------------------------------------------------------
# 11: help and version


@pytest.mark.parametrize("command", [[], ["run"], ["plan"], ["check"], ["demo"]])
def test_help(command):
    r = cli(*command, "--help")
    assert r.code == 0, r.err
    assert r.out.startswith("usage: f5-llm-ratio")
    if command:
        assert command[0] in r.out.splitlines()[0]
    if command and command[0] != "demo":
        assert "--config" in r.out


def test_version():
    from controller import __version__

    r = cli("--version")
    assert r.code == 0
    assert r.out.strip() == f"f5-llm-ratio {__version__}"


def test_no_command_prints_help_and_exits_2():
    r = cli()
    assert r.code == 2
    assert "usage: f5-llm-ratio" in r.out


@pytest.mark.parametrize("args", [["run"], ["frobnicate"], ["run", "--config"]])
def test_usage_errors_exit_2(args):
    r = cli(*args)
    assert r.code == 2
    assert "usage:" in r.err


def test_config_file_that_does_not_exist_exits_2(tmp_path):
    r = cli("run", "--once", "--config", str(tmp_path / "nope.yaml"))
    assert r.code == 2 and "nope.yaml" in r.err and "cannot read" in r.err


# --------------------------------------------------------------------------------------------------
# 12: BIG-IP unreachable


def test_bigip_not_listening_exits_1_quickly(tmp_path):
    port = free_port()
    startup = cli("--version").seconds  # the interpreter's own start-up on this box, loaded or not
    r = cli("run", "--once", "--config", str(write_config(tmp_path / "c.yaml", seed_config(None, port=port))),
            timeout=20)

    assert r.code == 1, (r.out, r.err)
    assert r.seconds < 6 + startup, (r.seconds, startup)
    assert f"cannot connect to 127.0.0.1:{port}" in r.err, r.err
    assert "refused" in r.err.lower()


def test_bigip_answering_503_exits_1_with_the_reason(stack, tmp_path):
    stack.bigip.down = True  # restjavad restarting: HTML 503 on every call
    r = cli("run", "--once", "--config", str(write_config(tmp_path / "seed.yaml", seed_config(stack))), timeout=20)

    assert r.code == 1, (r.out, r.err)
    assert r.seconds < 8, r.seconds
    assert "503" in r.err or "restarting" in r.err, r.err
    assert stack.bigip.writes == []
