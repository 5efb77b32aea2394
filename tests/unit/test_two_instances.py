"""Two instances started together (issue 12, item 6): a random settle delay before the first write, then a
write only against a pool read after it, so the instance that wrote first keeps the other off its members."""

import pytest

from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, ModeConfig, PoolConfig, SchedulerConfig, WeightsConfig
from controller.errors import BigIPUnreachable
from controller.loop.reconcile import Reconciler
from controller.model import Action, Member, PoolRef, PoolState, Sample
from tests.fakes import FakeBigIP, FakeScraper, fake_target_for

REF = PoolRef("llm")
KEYS = [f"10.0.0.{i}:8000" for i in (1, 2, 3)]


def _cfg():
    return AppConfig(
        f5=F5Config("bigip.example", max_writes_per_minute=600),
        pools=(PoolConfig(REF, "vllm", mode=ModeConfig("s1", 0.5, 0.5), weights=WeightsConfig()),),
        scheduler=SchedulerConfig(metrics_fetch_interval_ms=3000, pool_fetch_interval=0),
    )


def _pool(*ratios):
    members = tuple(Member(k, "Common", k.split(":")[0], 8000, r) for k, r in zip(KEYS, ratios, strict=True))
    return PoolState(REF, "ratio-least-connections-member", members)


class SlowWrites(FakeBigIP):
    """Writes land only at `land()`: ticks between two `land()` calls are concurrent, each reads the pool
    before the other's writes reach it (a write round that takes as long as one step of the test)."""

    def __init__(self, *states):
        super().__init__(*states)
        self.visible = dict(self.pools)

    def read_pool(self, ref):
        self.reads += 1
        if self.read_error:
            raise self.read_error
        return self.visible[ref.full_path]

    def land(self):
        self.visible = dict(self.pools)


class Via:
    """One instance's connection to the shared BIG-IP: records who wrote which member."""

    def __init__(self, bigip, name):
        self.bigip, self.name = bigip, name

    def read_pool(self, ref):
        return self.bigip.read_pool(ref)

    def apply(self, ref, plans):
        result = self.bigip.apply(ref, plans)
        self.bigip.by.extend((self.name, key) for key in result.applied)
        return result

    def __getattr__(self, name):  # unit(), begin_tick(), end_tick(), ...: the shared fake's
        return getattr(self.bigip, name)


def _pair(draw_a, draw_b, settle=10.0):
    """Two reconcilers with their own ids on one BIG-IP, one clock, and scripted random draws."""
    clock, bigip = FakeClock(), SlowWrites(_pool(1, 1, 1))
    bigip.by = []
    recs = []
    for name, draw in (("a", draw_a), ("b", draw_b)):
        scraper = FakeScraper(clock)
        scraper.samples = {KEYS[0]: Sample(0, kv_usage=0.1), KEYS[1]: Sample(4, kv_usage=0.4),
                           KEYS[2]: Sample(8, kv_usage=0.9)}
        recs.append(Reconciler(_cfg(), Via(bigip, name), scraper, clock=clock, target_for=fake_target_for, instance=name,
                               settle=settle, rng=lambda d=draw: d))
    return recs[0], recs[1], bigip, clock


def _written_by(bigip):
    """member -> the instances that wrote it."""
    out: dict[str, set[str]] = {}
    for name, member in bigip.by:
        out.setdefault(member, set()).add(name)
    return out


def test_without_settle_two_instances_both_write_every_member():
    """The fault being fixed: no delay, both first ticks write the same members."""
    a, b, bigip, clock = _pair(0.0, 0.0, settle=0.0)
    a.tick()
    b.tick()
    bigip.land()
    owners = _written_by(bigip)
    assert set(owners) == set(KEYS) and all(o == {"a", "b"} for o in owners.values())


def test_started_together_the_later_draw_yields_every_member_to_the_earlier():
    a, b, bigip, clock = _pair(0.1, 0.9)  # a may write from +1 s, b from +9 s
    for rec in (a, b):
        report = rec.tick()
        assert report.applied == 0 and report.ok  # settling is not a failure
        assert rec.settling
    bigip.land()
    assert a.settle_at == pytest.approx(clock.monotonic() + 1.0)
    assert b.settle_at == pytest.approx(clock.monotonic() + 9.0)
    for _ in range(12):  # both tick every second for 12 s
        clock.advance(1.0)
        a.tick()
        b.tick()
        bigip.land()
    owners = _written_by(bigip)
    assert set(owners) == set(KEYS)
    assert all(o == {"a"} for o in owners.values()), owners  # no member written by both, none by b
    last_b = b.last_report
    assert last_b is not None
    assert {p.action for p in last_b.plans[0].members} == {Action.OWNED_BY_OTHER}


def test_a_tick_that_started_before_the_delay_ended_does_not_write():
    """The write must be planned on a read made after the delay, not on one made just before it."""
    a, _, bigip, clock = _pair(0.5, 0.5, settle=4.0)
    a.tick()  # settle_at = start + 2 s
    clock.advance(1.999)
    assert a.tick().applied == 0 and bigip.writes == []
    clock.advance(0.001)
    assert a.tick().applied == 3
    assert not a.settling


def test_zero_draw_writes_in_the_first_tick_and_no_settle_never_waits():
    a, _, bigip, _ = _pair(0.0, 0.0, settle=10.0)
    assert a.tick().applied == 3
    plain = Reconciler(_cfg(), FakeBigIP(_pool(1, 1, 1)), a.scraper, clock=a.clock, target_for=fake_target_for)
    assert plain.tick().applied == 3 and not plain.settling  # run --once, plan: settle 0


def test_delay_runs_from_the_first_tick_so_a_start_into_an_outage_writes_at_once_after_it():
    a, _, bigip, clock = _pair(1.0, 1.0, settle=5.0)
    bigip.read_error = BigIPUnreachable("connection refused")
    assert not a.tick().ok
    clock.advance(30.0)
    bigip.read_error = None
    bigip.land()
    assert a.tick().applied == 3
    assert _written_by(bigip) == {k: {"a"} for k in KEYS}


def test_draw_is_clamped_to_the_bound():
    a, _, _, clock = _pair(7.5, 0.0, settle=3.0)  # a broken RNG cannot stretch the wait past `settle`
    start = clock.monotonic()
    a.tick()
    assert a.settle_at == pytest.approx(start + 3.0)


def test_arm_settle_restarts_the_wait():
    a, _, _, clock = _pair(0.5, 0.5, settle=0.0)
    a.arm_settle(6.0)
    start = clock.monotonic()
    assert a.tick().applied == 0 and a.settle_at == pytest.approx(start + 3.0)
