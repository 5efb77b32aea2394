"""No stranded tokens (issue 12, part 2): the token state file, and SIGKILL-restart cycles through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest

from controller.config.schema import F5Config
from controller.ltm.client import BigIPClient
from controller.ltm.token import TOKEN_LIFETIME
from controller.ltm.tokenstore import TokenStore, key_for, state_dir
from controller.model import PoolRef
from controller.sim.bigip import BigIPEmulator
from tests.e2e_env import USER, Daemon, Stack, cli_env, seed_config, wait_for, write_config

PASSWORD = "state-Pa55w0rd-Zq81"


@pytest.fixture
def emu():
    e = BigIPEmulator(users={"admin": PASSWORD})
    e.start()
    e.add_pool("/Common/p", members=["127.0.0.1:8000"])
    yield e
    e.stop()


def client(emu: BigIPEmulator, store: TokenStore | None) -> BigIPClient:
    cfg = F5Config(host="127.0.0.1", port=emu.port, username="admin", password=PASSWORD,
                   verify_tls=emu.cert_path, timeout=2.0)
    return BigIPClient(cfg, token_store=store)


def test_state_dir_prefers_the_config_then_systemd():
    assert state_dir("/srv/f5", {"STATE_DIRECTORY": "/var/lib/f5-llm-ratio"}) == "/srv/f5"
    assert state_dir("", {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}) == "/var/lib/a"
    assert state_dir("", {}) == ""


def test_the_file_is_private_holds_the_token_per_host_and_never_the_password(emu, tmp_path):
    store = TokenStore(str(tmp_path / "state"), "host-abc123")
    c = client(emu, store)
    c.read_pool(PoolRef("p"))
    text = open(store.path).read()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert PASSWORD not in text
    data = json.loads(text)
    key = key_for("admin", "127.0.0.1", emu.port)
    assert data["version"] == 1 and list(data["tokens"]) == [key]
    assert data["tokens"][key]["token"] in emu.live_tokens()
    c.close()  # a clean exit deletes the token and forgets it
    assert json.loads(open(store.path).read())["tokens"] == {} and emu.live_tokens() == []


def test_a_killed_predecessors_token_is_reused_not_stranded(emu, tmp_path):
    store = TokenStore(str(tmp_path), "i")
    first = client(emu, store)
    first.read_pool(PoolRef("p"))  # then "killed": no close()
    left = emu.live_tokens()
    second = client(emu, TokenStore(str(tmp_path), "i"))
    second.read_pool(PoolRef("p"))
    assert emu.live_tokens() == left and emu.logins == 1  # reused: no second login
    second.close()
    assert emu.live_tokens() == []


def test_a_dead_token_in_the_file_is_forgotten_and_a_fresh_login_follows(emu, tmp_path):
    store = TokenStore(str(tmp_path), "i")
    store.put(key_for("admin", "127.0.0.1", emu.port), "NOSUCHTOKEN", TOKEN_LIFETIME)
    c = client(emu, store)
    c.read_pool(PoolRef("p"))
    assert emu.logins == 1 and len(emu.live_tokens()) == 1
    assert store.get(key_for("admin", "127.0.0.1", emu.port)) == emu.live_tokens()[0]


def test_the_token_lifetime_is_set_to_36000s(emu):
    c = client(emu, None)
    c.read_pool(PoolRef("p"))
    assert c.tokens.expires_in() == pytest.approx(TOKEN_LIFETIME, abs=5) and TOKEN_LIFETIME == 36000
    assert [t.timeout for t in emu._tokens.values()] == [36000]


def test_an_unwritable_state_dir_is_logged_and_the_controller_carries_on(emu, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    c = client(emu, TokenStore(str(blocker / "sub"), "i"))
    assert c.read_pool(PoolRef("p")).members
    assert "token_state_unusable" in caplog.text


def test_ten_sigkill_restart_cycles_leave_at_most_one_live_token(tmp_path):
    """Through the real CLI with $STATE_DIRECTORY, as systemd's StateDirectory= sets it."""
    s = Stack([(0, 0, 0.1), (8, 4, 0.9)]).start()
    try:
        config = write_config(tmp_path / "c.yaml", {**seed_config(s), "telemetry": {"enabled": False}})
        env = cli_env(STATE_DIRECTORY=str(tmp_path / "state"))
        peak = 0
        for cycle in range(10):
            logins = s.bigip.logins
            s.bigip.request_log.clear()
            d = Daemon(config, env=env)
            try:
                # the first tick has used BIG-IP once this daemon read the pool (after its login or reclaim)
                wait_for(lambda d=d: d.events("started") and
                         any(r.path.startswith("/mgmt/tm/ltm/pool") for r in list(s.bigip.request_log)),
                         30, what=f"cycle {cycle}: a tick")
                peak = max(peak, len(s.bigip.live_tokens(USER)))
            finally:
                d.proc.send_signal(signal.SIGKILL)
                d.proc.wait(timeout=5)
                err = d.err
                d.close()
            if cycle:
                assert s.bigip.logins == logins, f"cycle {cycle} logged in again instead of reusing the token:\n{err}"
        assert peak == 1
        assert len(s.bigip.live_tokens(USER)) <= 1
        final = Daemon(config, env=env)  # a clean start and stop leaves none
        try:
            s.bigip.request_log.clear()
            wait_for(lambda: final.events("started") and
                     any(r.path.startswith("/mgmt/tm/ltm/pool") for r in list(s.bigip.request_log)), 30, what="a tick")
            code, _ = final.stop()
            assert code == 0 and s.bigip.live_tokens(USER) == []
        finally:
            final.close()
    finally:
        s.stop()
