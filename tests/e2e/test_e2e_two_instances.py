"""Two instances (issue 12, item 6) as two real `run` processes against one BIG-IP emulator, started together.

Each has its own config file and its own `global.instance` (the id no longer comes from the file's
path: issue 19). The random settle draw is fixed through
F5LR_SETTLE_DRAW (the only thing replaced): instance a may write at once, instance b only after the
whole settle delay (2 ticks). Each logs in as its own BIG-IP user, so the emulator's write log says who
wrote what (a write whose GUI note is unchanged carries no description). The test asserts what an F5
admin would see: every member written, and by one instance only; the other logs that it keeps off
members another live instance owns.
"""

from __future__ import annotations

from tests.e2e_env import PASSWORD, POOL, Daemon, Stack, cli, cli_env, merge, seed_config, wait_for, write_config

LOADS = [(0, 1, 0.05), (6, 8, 0.40), (24, 16, 0.90)]


def test_two_instances_started_together_never_write_the_same_member(tmp_path):
    stack = Stack(LOADS).start()
    daemons: list[Daemon] = []
    try:
        data = merge(seed_config(stack), {"scheduler": {"metrics_fetch_interval": 1000}, "telemetry": {"enabled": False}})
        configs = []
        for name in ("a", "b"):
            stack.bigip.users[f"ctl-{name}"] = PASSWORD
            (tmp_path / name).mkdir()
            configs.append(write_config(tmp_path / name / "config.yaml", merge(data, {"f5": {"username": f"ctl-{name}"},
                                                                                      "global": {"instance": f"ctl-{name}"}})))
        for config, draw in zip(configs, ("0", "1"), strict=True):
            daemons.append(Daemon(config, env=cli_env(F5LR_SETTLE_DRAW=draw)))
        first, second = daemons
        wait_for(lambda: len({w.member for w in stack.member_writes()}) == 3, 30, what="every member written")
        second.wait_event("owned_by_other_instance", timeout=30, count=3)  # b's delay is over: it read and yielded
        settling = [d.events("first_write_settling")[0] for d in daemons]
        assert [e["delay_seconds"] for e in settling] == [0.0, 2.0]
        owners: dict[str, set[str]] = {}
        for w in stack.member_writes():
            owners.setdefault(w.member, set()).add(w.user)
        assert len(owners) == 3 and all(len(o) == 1 for o in owners.values()), owners
        assert {o for s in owners.values() for o in s} == {"ctl-a"}  # a wrote, b yielded
        notes = {m["name"]: m.get("description", "") for m in stack.bigip.members(POOL)}
        assert len(notes) == 3 and all(n.startswith(f"f5-llm-ratio[{settling[0]['instance']}]") for n in notes.values()), notes
        assert first.alive() and second.alive()
    finally:
        for d in daemons:
            d.stop()
            d.close()
        stack.stop()


def test_run_once_and_plan_with_a_copied_config_never_lock_the_daemon_out(tmp_path):
    """Issue 19: the owner id is `global.instance` or the host name, not the config file's path. A
    `run --once` and a `plan` with a copy of the daemon's config (another path) are the daemon's own
    writes: the daemon keeps steering its members (it used to hold them as another live instance's for
    600 s: 0 writes)."""
    stack = Stack(LOADS).start()
    daemon = None
    try:
        data = merge(seed_config(stack), {"scheduler": {"metrics_fetch_interval": 500}, "telemetry": {"enabled": False}})
        (tmp_path / "etc").mkdir()
        (tmp_path / "elsewhere").mkdir()
        config = write_config(tmp_path / "etc" / "config.yaml", data)
        copy = write_config(tmp_path / "elsewhere" / "copy.yaml", data)
        once = cli("run", "--config", str(copy), "--once", "--log-level", "INFO")  # writes every member first
        assert once.code == 0, once.text
        assert len({w.member for w in stack.member_writes()}) == 3
        assert cli("plan", "--config", str(copy)).code == 0
        daemon = Daemon(config, env=cli_env(F5LR_SETTLE_DRAW="0"))
        daemon.wait_event("started", timeout=15)

        before = len(stack.member_writes())
        # A ratio reset by hand on a member the copy's run just wrote (its note is still there, seconds
        # old): the daemon must step it back, which it would refuse if the copy were another instance.
        stack.bigip.set_member(POOL, stack.members[0], ratio=1)
        wait_for(lambda: len(stack.member_writes()) > before, 40, what="the daemon writing after the copy's run")
        assert daemon.events("owned_by_other_instance") == []
        notes = {m.get("description", "").split("]")[0] for m in stack.bigip.members(POOL)}
        assert len(notes) == 1, notes  # one owner id on every member
        assert daemon.alive()
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.close()
        stack.stop()
