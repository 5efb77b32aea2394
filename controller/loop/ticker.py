"""The daemon's tick loop, timed on the monotonic clock only.

APScheduler, which ran the loop before issue 19, schedules on wall-clock time: after the wall clock
stepped back an hour (an NTP step, a VM resumed from a snapshot) its next tick was an hour away, so
there were no ticks and no watchdog pings until systemd killed the daemon. Here every wait is a
`threading.Event.wait`, which CPython times with the monotonic clock, and every due time is a
`time.monotonic()` value: a wall-clock step in either direction moves no tick at all.

One tick at a time, each in a worker thread, so the thread that called `run()` (the main thread:
signals) stays free; a hung tick is waited for (no second tick starts), and every interval it has
overrun is reported to the `late` hooks. Ticks are due every `interval` seconds from the first; a tick
that overruns its interval is followed at once by the next (ticks are not dropped to a grid, nor run
in a burst to catch up). `also_at` adds one extra tick at a given monotonic time (the end of the
settle delay), without moving the regular ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Ticker:
    def __init__(self, tick: Callable[[], object], interval: float, *, monotonic: Callable[[], float] = time.monotonic,
                 name: str = "tick"):
        self.interval = interval  # seconds; a change (reload) applies from the next tick
        self.late: list[Callable[[float], None]] = []  # called with the seconds a running tick has taken so far
        self.ticks = 0  # ticks started
        self._tick = tick
        self._monotonic = monotonic
        self._name = name
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._extra: float | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """End `run()` (a running tick is not waited for: the caller decides how long to give it)."""
        self._stop.set()
        self._wake.set()

    def also_at(self, when: float) -> None:
        """One extra tick at monotonic time `when` (or now, if that has passed)."""
        self._extra = when if self._extra is None else min(self._extra, when)
        self._wake.set()

    def run(self) -> None:
        """Tick until `stop()`. Returns at once after stop(), even while a tick still runs."""
        due = self._monotonic()
        while not self._stop.is_set():
            now = self._monotonic()
            extra = self._extra
            at = due if extra is None else min(due, extra)
            if at > now:
                self._wake.clear()
                if self._extra != extra:  # also_at() came in since we looked
                    continue
                self._wake.wait(at - now)
                continue  # time reached, an extra tick, or stop(): look again
            regular = due <= now
            if extra is not None and extra <= now:
                self._extra = None
            if not self._run_one():
                return
            if regular:
                due = max(due + self.interval, self._monotonic())

    def _run_one(self) -> bool:
        """Run one tick in a worker thread and wait for it; False when stopped meanwhile."""
        done = threading.Event()

        def work() -> None:
            try:
                self._tick()
            finally:
                done.set()
                self._wake.set()

        self.ticks += 1
        started = self._monotonic()
        threading.Thread(target=work, name=self._name, daemon=True).start()
        while not done.is_set():
            self._wake.clear()
            if done.is_set() or self._stop.is_set():
                break
            if not self._wake.wait(max(self.interval, 0.001)):
                for hook in self.late:
                    try:
                        hook(self._monotonic() - started)
                    except Exception:  # noqa: BLE001 - an observer must not stop the loop
                        pass
        return not self._stop.is_set()
