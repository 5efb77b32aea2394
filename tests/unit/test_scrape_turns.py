"""Issue 19, item 1: a fleet too large to scrape within one tick is scraped in turns.

The scrape deadline cuts a tick short; the members it did not reach are the most recently scraped
ones, and they keep their last good sample (`carried`) while it is younger than weights.stale_after,
so every member is planned on its latest figures, no pool goes blind, and no scrape failure is logged
for a member that was only waiting for its turn.
"""

from __future__ import annotations

from controller.clock import FakeClock
from controller.config.schema import AppConfig, F5Config, PoolConfig, SchedulerConfig, WeightsConfig
from controller.loop.reconcile import Reconciler
from controller.model import Member, PoolRef, PoolState, Sample, ScrapeResult
from tests.fakes import FakeBigIP, fake_target_for
from tests.fault_rig import CapLog

REF = PoolRef("big")
MEMBERS = tuple(Member(f"10.0.0.{i}:8000", "Common", f"10.0.0.{i}", 8000, 50) for i in range(1, 7))


class TurnScraper:
    """Reaches only the first `reach` targets of each call (in the order given); the rest: deadline."""

    def __init__(self, clock, reach: int):
        self.clock, self.reach = clock, reach
        self.orders: list[list[str]] = []

    def scrape(self, targets, deadline):
        self.orders.append([t.member for t in targets])
        out = {}
        for i, t in enumerate(targets):
            if i < self.reach:
                n = int(t.member.split(".")[3].split(":")[0])
                out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), sample=Sample(n, kv_usage=n / 10, running=n))
            else:
                out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), error="deadline", detail="cut off",
                                          reached=False)
        return out

    def close(self):
        pass


def rig(reach: int, stale_after: float = 30.0):
    clock = FakeClock()
    cfg = AppConfig(F5Config("bigip.example"),
                    (PoolConfig(REF, "vllm", weights=WeightsConfig(stale_after=stale_after)),),
                    SchedulerConfig(metrics_fetch_interval_ms=1000))
    scraper = TurnScraper(clock, reach)
    log = CapLog()
    rec = Reconciler(cfg, FakeBigIP(PoolState(REF, "ratio-least-connections-member", MEMBERS)), scraper,
                     clock=clock, target_for=fake_target_for, log=log)
    return rec, scraper, clock, log


def tick(rec, clock):
    report = rec.tick()
    clock.advance(1.0)
    return report


def test_members_are_scraped_in_turns_oldest_first_and_carried_meanwhile():
    rec, scraper, clock, log = rig(reach=2)
    reports = [tick(rec, clock) for _ in range(6)]
    names = [m.key for m in MEMBERS]
    # Never-scraped members first, then the oldest: 1,2 | 3,4 | 5,6 | 1,2 | ...
    assert [order[:2] for order in scraper.orders] == [names[0:2], names[2:4], names[4:6]] * 2
    for report in reports:
        assert not any(p.blind for p in report.plans)
    # From the third tick on every member has a sample: two fresh, four carried from the last two ticks.
    for report in reports[2:]:
        assert all(mp.sample is not None for mp in report.plans[0].members), report.plans[0].members
    carried = rec.last_scrapes[REF.full_path]
    assert sum(r.carried for r in carried.values()) == 4 and all(r.ok for r in carried.values())
    assert log.named("scrape_failed") == []  # waiting for a turn is not a failure
    assert len(log.named("scrape_in_turns")) == 1  # one line for the whole fleet, when it starts


def test_a_carried_sample_ages_out_after_stale_after():
    rec, scraper, clock, log = rig(reach=6, stale_after=5.0)
    tick(rec, clock)  # everyone fresh
    scraper.reach = 0  # then the deadline reaches nobody
    ages = []
    for _ in range(8):
        report = tick(rec, clock)
        ages.append(sum(mp.sample is not None for mp in report.plans[0].members))
    assert ages[:4] == [6, 6, 6, 6]  # carried while younger than 5 s
    assert ages[-1] == 0 and report.plans[0].blind  # then unknown: the usual stale handling
    assert log.named("scrape_failed") == [] and len(log.named("scrape_in_turns")) == 1


def test_a_member_that_fails_is_not_carried():
    rec, scraper, clock, log = rig(reach=6)
    tick(rec, clock)

    class Refusing(TurnScraper):
        def scrape(self, targets, deadline):
            out = super().scrape(targets, deadline)
            first = targets[0]
            out[first.key] = ScrapeResult(first.member, self.clock.monotonic(), error="refused")
            return out

    rec.scraper = Refusing(clock, 6)
    report = tick(rec, clock)
    refused = [mp for mp in report.plans[0].members if mp.scrape_error == "refused"]
    assert len(refused) == 1 and refused[0].sample is None
