"""The last hour of every member's ratio and load, in bounded memory, for the live page and /history.json.

Two rings per pool, sharing one layout:

* `fine`: one slot per tick, the last FINE_SLOTS ticks (2 minutes at a 1 s tick), so the page moves
  with every tick;
* `coarse`: one slot per COARSE_STEP seconds of wall time (a later tick in the same step overwrites
  the slot: the last value of each step is kept), WINDOW / COARSE_STEP slots, so the hour costs the
  same memory whatever the tick.

Each member's values are float32 in one flat `array` per ring (slot-major, FIELDS per slot), so a
member costs (FINE_SLOTS + COARSE_SLOTS) x len(FIELDS) x 4 bytes, about 17 KB, plus its key; a member
that has not been seen for a whole ring is dropped from it, and at most MAX_MEMBERS_PER_POOL are kept per pool.
`python bench/history_memory.py` measures the total at 1,000 members.
Unknown values (a member without fresh metrics, an engine without TTFT) are NaN and come out as null.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The per-member series, in slot order. speed: measured capacity when the planner has one;
#: ttft: seconds, when the engine exports it.
FIELDS = ("ratio", "connection_limit", "share", "waiting", "running", "kv", "speed", "ttft")
WINDOW = 3600.0  # seconds of history kept
COARSE_STEP = 10.0  # seconds per coarse slot
FINE_SLOTS = 120
MAX_MEMBERS_PER_POOL = 4096
MAX_CHANGES = 500  # recent ratio changes kept for the page
_DIGITS = {"ratio": 0, "connection_limit": 0, "share": 4, "waiting": 2, "running": 2, "kv": 4, "speed": 3, "ttft": 4}
_NAN = float("nan")


class Ring:
    """`capacity` time slots; per member a flat float32 array of capacity x len(FIELDS)."""

    def __init__(self, capacity: int, step: float | None = None):
        self.capacity = capacity
        self.step = step  # None: one slot per append; else one slot per `step` seconds
        self.times = array("d", [_NAN]) * capacity
        self.series: dict[str, array[float]] = {}
        self.last_seen: dict[str, int] = {}  # member -> append counter when it was last present
        self.head = -1
        self.count = 0
        self.appends = 0
        self._bucket: float | None = None

    def append(self, t: float, values: Mapping[str, Sequence[float | None]]) -> None:
        bucket = math.floor(t / self.step) if self.step else None
        if bucket is None or bucket != self._bucket or self.count == 0:
            self.head = (self.head + 1) % self.capacity
            self.count = min(self.count + 1, self.capacity)
            self.appends += 1
            self._bucket = bucket
        self.times[self.head] = t
        width = len(FIELDS)
        base = self.head * width
        for key, row in values.items():
            series = self.series.get(key)
            if series is None:
                if len(self.series) >= MAX_MEMBERS_PER_POOL:
                    continue
                series = self.series[key] = array("f", [_NAN]) * (self.capacity * width)
            for i, v in enumerate(row):
                series[base + i] = _NAN if v is None else v
            self.last_seen[key] = self.appends
        for key in list(self.series):
            if key in values:
                continue
            if self.appends - self.last_seen[key] >= self.capacity:
                del self.series[key], self.last_seen[key]  # gone for a whole ring
            else:
                self.series[key][base:base + width] = array("f", [_NAN]) * width

    def slots(self, since: float | None = None) -> list[int]:
        """Slot indexes oldest first, newer than `since` when given."""
        start = (self.head - self.count + 1) % self.capacity
        out = [(start + i) % self.capacity for i in range(self.count)]
        return out if since is None else [s for s in out if self.times[s] > since]

    def nbytes(self) -> int:
        return self.times.itemsize * len(self.times) + sum(a.itemsize * len(a) for a in self.series.values())


class History:
    """Per pool a fine and a coarse ring, and the recent ratio changes. Thread-safe."""

    def __init__(self, window: float = WINDOW, coarse_step: float = COARSE_STEP, fine_slots: int = FINE_SLOTS):
        self.window = window
        self.coarse_step = coarse_step
        self.fine_slots = fine_slots
        self.pools: dict[str, tuple[Ring, Ring]] = {}
        self.changes: deque[dict[str, Any]] = deque(maxlen=MAX_CHANGES)
        self._lock = threading.Lock()

    def record(self, pool: str, t: float, values: Mapping[str, Sequence[float | None]]) -> None:
        """One tick of one pool: {member: values in FIELDS order}."""
        with self._lock:
            rings = self.pools.get(pool)
            if rings is None:
                rings = self.pools[pool] = (Ring(self.fine_slots), Ring(int(self.window // self.coarse_step), self.coarse_step))
            for ring in rings:
                ring.append(t, values)

    def add_changes(self, changes: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self.changes.extend(changes)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the pools not in `keep` (no longer configured)."""
        keep = set(keep)
        with self._lock:
            for pool in [p for p in self.pools if p not in keep]:
                del self.pools[pool]
            kept = [c for c in self.changes if c.get("pool") in keep]
            self.changes.clear()
            self.changes.extend(kept)

    def nbytes(self) -> int:
        with self._lock:
            return sum(r.nbytes() for rings in self.pools.values() for r in rings)

    def snapshot(self, *, now: float, pool: str | None = None, since: float | None = None) -> dict[str, Any]:
        """The /history.json document: per pool one time axis and per member one list per field.

        The lock is held only to copy the raw arrays (a memcpy); the document is built outside it, so a
        page refresh never holds up the tick that records the next point.
        """
        with self._lock:
            copies = [(path, self._copy(fine, since), self._copy(coarse, None)) for path, (fine, coarse) in self.pools.items()
                      if pool in (None, path)]
            changes = [c for c in self.changes if pool in (None, c.get("pool")) and (since is None or c["at_epoch"] > since)]
        return {
            "now": round(now, 3),
            "window_seconds": self.window,
            "resolution_seconds": {"recent": "tick", "older": self.coarse_step},
            "fields": list(FIELDS),
            "pools": [self._pool_doc(path, fine, coarse, now, since) for path, fine, coarse in copies],
            "changes": changes,
        }

    @staticmethod
    def _copy(ring: Ring, since: float | None) -> tuple[list[float], list[int], dict[str, array[float]]]:
        """(times oldest first, their slots, {member: a copy of its array}): memcpys, cheap under the lock."""
        slots = ring.slots(since)
        return [ring.times[s] for s in slots], slots, {k: a[:] for k, a in ring.series.items()}

    def _pool_doc(self, path: str, fine: tuple[list[float], list[int], dict[str, array[float]]],
                  coarse: tuple[list[float], list[int], dict[str, array[float]]], now: float, since: float | None) -> dict[str, Any]:
        fine_t, fine_slots, fine_s = fine
        coarse_t, coarse_slots, coarse_s = coarse
        first_fine = fine_t[0] if fine_t else math.inf
        oldest = max(now - self.window, since if since is not None else -math.inf)
        keep = [i for i, t in enumerate(coarse_t) if oldest < t < first_fine - self.coarse_step / 2]
        keep_slots = [coarse_slots[i] for i in keep]
        width = len(FIELDS)
        out: dict[str, dict[str, list[float | int | None]]] = {}
        for key in sorted(set(fine_s) | set(coarse_s)):
            cols: dict[str, list[float | int | None]] = {}
            for i, f in enumerate(FIELDS):
                older = coarse_s[key][i::width] if key in coarse_s else None  # this field, slot by slot
                recent = fine_s[key][i::width] if key in fine_s else None
                values = [older[j] for j in keep_slots] if older is not None else [_NAN] * len(keep)
                values += [recent[j] for j in fine_slots] if recent is not None else [_NAN] * len(fine_t)
                digits = _DIGITS[f]
                cols[f] = [None if v != v else (round(v, digits) if digits else int(round(v))) for v in values]
            out[key] = cols
        times = [coarse_t[j] for j in keep] + fine_t
        return {"pool": path, "t": [round(t, 3) for t in times], "members": out}


class Ttft:
    """Mean time to first token per member between two ticks, from the engine's TTFT histogram
    (delta of `_sum` over delta of `_count`). None on the first sight, when no request got its first
    token in between, after a counter reset (engine restart), or when the engine exports no TTFT."""

    def __init__(self) -> None:
        self._prev: dict[tuple[str, str], tuple[float, float]] = {}

    def update(self, pool: str, seen: Mapping[str, tuple[float | None, float | None]]) -> dict[str, float | None]:
        """{member: (ttft_sum, ttft_count)} of one pool this tick -> {member: mean TTFT in seconds or None}."""
        out: dict[str, float | None] = {}
        for member, (total, count) in seen.items():
            key = (pool, member)
            prev = self._prev.pop(key, None)
            if total is None or count is None:
                out[member] = None
                continue
            self._prev[key] = (total, count)
            d_sum, d_count = (total - prev[0], count - prev[1]) if prev else (0.0, 0.0)
            out[member] = d_sum / d_count if d_count > 0 and d_sum >= 0 else None
        for key in [k for k in self._prev if k[0] == pool and k[1] not in seen]:
            del self._prev[key]  # left the pool
        return out
