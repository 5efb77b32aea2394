"""Log a fault once when it starts and once when it clears, not once per tick; rate-limit flapping.

Each fault has a key (e.g. "pool:/Common/p", "scrape:/Common/p|10.0.0.1:80") and a signature (by
default its event, reason and error; callers pass a stable one when the error text varies, e.g. a
deadline's seconds). The rules:

* the first report of a fault is logged; repeats with the same signature are counted, not logged;
  a changed signature (timeout -> refused) is logged again;
* the clear is logged once, with `count` (reports while it lasted) and `duration_seconds`;
* flapping: a fault that starts again within `quiet` seconds of the key's last logged line is not
  logged, and neither is its clear; the transitions are counted and the next logged line for the
  key carries `flaps` (suppressed starts). A suppressed fault that is still there once `quiet` has
  passed is logged then, so the log never ends on "recovered" for a fault that is back for good.

So a member failing every other tick writes about two lines per `quiet` window, not two per tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog
from structlog.typing import FilteringBoundLogger

from controller.clock import Clock, SystemClock

QUIET = 300.0  # seconds: at most one start and one clear line per key in this window while flapping


@dataclass
class _Active:
    signature: str
    started: float
    count: int = 0
    logged: bool = False


class FaultLog:
    def __init__(self, log: FilteringBoundLogger | None = None, clock: Clock | None = None, quiet: float = QUIET):
        self.log: FilteringBoundLogger = log or structlog.get_logger("f5-llm-ratio")
        self.clock = clock or SystemClock()
        self.quiet = quiet
        self.active: dict[str, _Active] = {}
        self._last_logged: dict[str, float] = {}
        self._flaps: dict[str, int] = {}

    def fault(self, key: str, event: str, *, signature: str | None = None, count: int = 1, **fields: Any) -> bool:
        """Report a fault (`count` occurrences of it); True if a line was logged."""
        now = self.clock.monotonic()
        sig = signature if signature is not None else f"{event}|{fields.get('reason', '')}|{fields.get('error', '')}"
        current = self.active.get(key)
        if current is None:
            current = self.active[key] = _Active(sig, now)
            current.count = count
            if self._recent(key, now):  # flapping: count it, say nothing yet
                self._flaps[key] = self._flaps.get(key, 0) + 1
                return False
            return self._emit(key, current, now, "warning", event, fields)
        current.count += count
        if current.signature != sig:
            current.signature = sig
            return self._emit(key, current, now, "warning", event, fields)
        if not current.logged and not self._recent(key, now):  # a suppressed fault that stayed
            return self._emit(key, current, now, "warning", event, fields)
        return False

    def clear(self, key: str, event: str, **fields: Any) -> bool:
        current = self.active.pop(key, None)
        if current is None or not current.logged:
            return False
        now = self.clock.monotonic()
        fields = {**fields, "count": current.count, "duration_seconds": round(now - current.started, 1)}
        self._last_logged[key] = now
        self.log.info(event, **fields)
        return True

    def _recent(self, key: str, now: float) -> bool:
        last = self._last_logged.get(key)
        return last is not None and now - last < self.quiet

    def _emit(self, key: str, current: _Active, now: float, level: Literal["warning", "info"], event: str,
              fields: dict[str, Any]) -> bool:
        flaps = self._flaps.pop(key, 0)
        if flaps:
            fields = {**fields, "flaps": flaps}
        current.logged = True
        self._last_logged[key] = now
        (self.log.warning if level == "warning" else self.log.info)(event, **fields)
        return True
