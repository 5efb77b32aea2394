"""Issue 19, item 2: the daemon's ticks are timed on the monotonic clock, so a wall-clock step in
either direction (an NTP step, a VM resumed from a snapshot) neither stops nor bunches them.

The wall clock is shifted for the whole process (`time.time`, `time.time_ns` and `datetime.now` in
every loaded controller module and in APScheduler, which timed the loop before), the monotonic clock
is left alone, as such a step does. Before issue 19 a one-hour step back gave 0 ticks for an hour.
"""

from __future__ import annotations

import datetime as _dt
import signal
import sys
import threading
import time

import pytest

from controller.loop.daemon import Daemon
from controller.loop.ticker import Ticker
from tests.e2e.test_lifecycle import _fake_cfg, _fake_rec

HOUR = 3600.0


class WallClock:
    """A process-wide wall-clock offset, applied through monkeypatch."""

    def __init__(self, monkeypatch):
        self.offset = 0.0
        real_time, real_time_ns = time.time, time.time_ns
        wall = self

        class ShiftedDatetime(_dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return _dt.datetime.fromtimestamp(real_time() + wall.offset, tz)

            @classmethod
            def utcnow(cls):
                return _dt.datetime.utcfromtimestamp(real_time() + wall.offset)

        monkeypatch.setattr(time, "time", lambda: real_time() + self.offset)
        monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(self.offset * 1e9))
        for name, module in list(sys.modules.items()):
            if (name.startswith(("controller", "apscheduler"))
                    and getattr(module, "datetime", None) is _dt.datetime):
                monkeypatch.setattr(module, "datetime", ShiftedDatetime)

    def step(self, seconds: float) -> None:
        self.offset += seconds


class TickCounter:
    def __init__(self):
        self.times: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, _report) -> None:
        with self._cond:
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.times) >= count, timeout)


@pytest.mark.parametrize("steps", [(-HOUR,), (+HOUR,), (-HOUR, +2 * HOUR)], ids=["back", "forward", "back-then-forward"])
def test_ticks_go_on_through_wall_clock_steps(monkeypatch, steps):
    wall = WallClock(monkeypatch)
    cfg = _fake_cfg(tick_ms=100)
    d = Daemon("/etc/f5-llm-ratio/config.yaml", cfg, builder=lambda c, dry_run: _fake_rec(c), dry_run=True)
    ticks = TickCounter()
    d.on_tick.append(ticks)
    seen: dict[str, object] = {}

    def drive():
        try:
            seen["before"] = ticks.wait_for(3, 10)
            for i, seconds in enumerate(steps):
                wall.step(seconds)
                stepped_at, count = time.monotonic(), len(ticks.times)
                # 5 more ticks of 0.1 s: generous on a loaded machine, and 0 when the loop waits for the wall clock
                seen[f"after{i}"] = ticks.wait_for(count + 5, 10)
                seen[f"first_gap{i}"] = ticks.times[count] - stepped_at if len(ticks.times) > count else None
        finally:
            d.stop()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert d.run_forever() == 0
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        driver.join(15)
    assert seen["before"]
    for i in range(len(steps)):
        assert seen[f"after{i}"], f"ticks stopped after a wall-clock step of {steps[i]:+.0f}s"
        # The next tick after a step is due within one interval (loose: this machine may be loaded).
        assert seen[f"first_gap{i}"] is not None and seen[f"first_gap{i}"] < 2.0


def test_ticker_runs_an_extra_tick_between_regular_ones():
    started: list[float] = []
    two = threading.Event()

    def tick():
        started.append(time.monotonic())
        if len(started) == 2:
            two.set()

    ticker = Ticker(tick, 30.0)  # the first tick runs at once, the next regular one in 30 s
    runner = threading.Thread(target=ticker.run)
    runner.start()
    try:
        ticker.also_at(time.monotonic() + 0.05)  # the settle delay's end
        assert two.wait(10), "the extra tick ran"
        assert started[1] - started[0] < 20  # long before the regular one
    finally:
        ticker.stop()
        runner.join(5)
    assert not runner.is_alive() and ticker.ticks == 2


def test_ticker_waits_for_a_hung_tick_reports_it_late_and_stops_while_it_hangs():
    release, hanging, late = threading.Event(), threading.Event(), threading.Event()

    def tick():
        hanging.set()
        release.wait(10)

    ticker = Ticker(tick, 0.05)
    ticker.late.append(lambda _seconds: late.set())
    runner = threading.Thread(target=ticker.run)
    runner.start()
    try:
        assert hanging.wait(10) and late.wait(10), "a hung tick is reported once it overruns an interval"
        ticker.stop()
        runner.join(5)
        assert not runner.is_alive(), "stop() returns while a tick hangs"
        assert ticker.ticks == 1  # no second tick was started beside the hung one
    finally:
        release.set()
        ticker.stop()
