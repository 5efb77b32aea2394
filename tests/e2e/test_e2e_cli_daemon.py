"""End to end, the real CLI against the emulator (2 of 2): the daemon's token lifecycle, BIG-IP restart,
SIGHUP reload, check, secrets, help and version, BIG-IP unreachable."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.conftest import free_port
from tests.e2e_cli_support import (
    LOADS,
    daemon_config,
    flip_loads,
    strictly_decreasing,
)
from tests.e2e_env import (
    API_KEY,
    METRIC_PASSWORD,
    PASSWORD,
    POOL,
    Stack,
    assert_clean,
    cli,
    cli_env,
    merge,
    seed_config,
    wait_for,
    write_config,
)

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
        good = daemon_config(s, **{"global": {"interval": 0}})  # no file polling: this test is about SIGHUP
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


def test_a_changed_file_is_reloaded_without_a_signal_and_a_bad_one_keeps_the_old(tmp_path, daemons):
    # A ConfigMap update reaches the pod's file and sends no signal: the file is polled every global.interval
    # seconds (mtime, then content), as the sideband scheduler polls its file (main.py ConfigHotReloader).
    s = Stack(LOADS).start()
    try:
        good = daemon_config(s, **{"global": {"interval": 0.3}})
        path = write_config(tmp_path / "d.yaml", good)
        d = daemons(path)
        wait_for(lambda: strictly_decreasing(s.ratios()), 10, what="first ratios")
        assert max(s.ratios()) == 100

        # the same bytes rewritten (a new mtime): no reload
        path.write_bytes(path.read_bytes())
        time.sleep(1.0)
        assert not d.events("config_changed") and not d.events("config_reloaded")

        # a broken file: rejected once, the old config kept
        write_config(path, merge(good, {"scheduler": {"metrics_fetch_interval": "fast"}}))
        (ev,) = d.wait_event("reload_rejected")
        assert "scheduler.metrics_fetch_interval" in str(ev)
        time.sleep(1.0)
        assert len(d.events("reload_rejected")) == 1 and d.alive()

        # a good, changed file: applied with no signal
        write_config(path, merge(good, {"weights": {"scale": 60, "floor": 5}}))
        d.wait_event("config_reloaded")
        wait_for(lambda: max(s.ratios()) == 60, 10, what="ratios at the new scale")
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
