"""The hour of history: ring buffer bounds, /history.json, the page's files, and the new metrics."""

from __future__ import annotations

import pytest

from controller.model import PoolRef
from controller.telemetry.history import FIELDS, History, Ring, Ttft

REF = PoolRef("llm-pool-1")








# -- the ring --------------------------------------------------------------------------------------

def test_ring_keeps_the_last_slots_in_order_and_drops_members_gone_for_a_whole_ring():
    ring = Ring(4)
    for t in range(6):
        ring.append(float(t), {"a": [t] * len(FIELDS)} | ({"b": [10 * t] * len(FIELDS)} if t == 0 else {}))
    assert [ring.times[s] for s in ring.slots()] == [2.0, 3.0, 4.0, 5.0]
    assert [ring.series["a"][s * len(FIELDS)] for s in ring.slots()] == [2.0, 3.0, 4.0, 5.0]
    assert "b" not in ring.series  # absent for 4 appends: gone, so memory stays bounded by who is present


def test_coarse_ring_keeps_one_slot_per_step_with_the_last_value():
    ring = Ring(10, step=10.0)
    for t in (0.0, 3.0, 9.0, 12.0):
        ring.append(t, {"a": [t] * len(FIELDS)})
    assert [ring.times[s] for s in ring.slots()] == [9.0, 12.0]
    assert ring.series["a"][ring.slots()[0] * len(FIELDS)] == 9.0


def test_ttft_is_the_mean_between_ticks_and_none_across_a_restart():
    t = Ttft()
    assert t.update("/p", {"a": (10.0, 100.0), "b": (None, None)}) == {"a": None, "b": None}  # first sight
    assert t.update("/p", {"a": (12.0, 110.0)}) == {"a": pytest.approx(0.2)}
    assert t.update("/p", {"a": (12.0, 110.0)}) == {"a": None}  # no new first token
    assert t.update("/p", {"a": (1.0, 5.0)}) == {"a": None}  # counters went down: the engine restarted
    assert t.update("/p", {"a": (1.5, 10.0)}) == {"a": pytest.approx(0.1)}


def test_history_memory_does_not_grow_with_ticks():
    h = History()
    row = {f"m{i}": [1.0] * len(FIELDS) for i in range(10)}
    for t in range(400):
        h.record("/Common/p", float(t), row)
    size = h.nbytes()
    for t in range(400, 8000, 3):
        h.record("/Common/p", float(t), row)
    assert h.nbytes() == size


def test_history_spans_the_hour_recent_at_tick_resolution(clock):
    h = History()
    for t in range(0, 4000):
        h.record("/Common/p", float(t), {"m": [float(t)] + [None] * (len(FIELDS) - 1)})
    doc = h.snapshot(now=3999.0)
    t = doc["pools"][0]["t"]
    assert t[0] >= 3999 - 3600 and t[-1] == 3999.0 and t == sorted(t)
    assert t[-120:] == [float(x) for x in range(3880, 4000)]  # the last 120 ticks one by one
    assert doc["pools"][0]["members"]["m"]["ratio"][-1] == 3999
    assert doc["pools"][0]["members"]["m"]["kv"][-1] is None  # unknown is null, not 0


# -- /history.json and the page ------------------------------------------------------------------







# -- metrics added for SREs ------------------------------------------------------------------------









