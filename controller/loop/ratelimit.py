"""A cap on BIG-IP writes per minute: every write is a config change, an audit entry and maybe a sync."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TypeVar

from controller.clock import Clock

T = TypeVar("T")


class WriteBudget:
    """Sliding 60 s window. `take` returns the prefix of `items` that fits; the rest waits a tick."""

    def __init__(self, per_minute: int, clock: Clock):
        self.per_minute = per_minute
        self.clock = clock
        self.stamps: deque[float] = deque()

    def available(self) -> int:
        now = self.clock.monotonic()
        while self.stamps and now - self.stamps[0] >= 60.0:
            self.stamps.popleft()
        return max(0, self.per_minute - len(self.stamps))

    def take(self, items: Sequence[T]) -> list[T]:
        granted = list(items[: self.available()])
        now = self.clock.monotonic()
        self.stamps.extend(now for _ in granted)
        return granted
