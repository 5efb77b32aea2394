"""Helpers shared by test_e2e_cli, test_e2e_cli_daemon and test_e2e_production (their fixtures `stack` and
`daemons` are in tests/e2e/conftest.py)."""

from __future__ import annotations

from tests.e2e_env import (
    Stack,
    merge,
    seed_config,
)

# idle, medium, busy: (waiting, running, KV usage)
LOADS = [(0, 1, 0.05), (6, 8, 0.40), (24, 16, 0.90)]


def daemon_config(stack: Stack, **changes) -> dict:
    """The seed config tuned for a long-running test: membership re-read often (so the token is used
    every few ticks), telemetry off (no fixed port to collide on)."""
    return merge(seed_config(stack), merge({"scheduler": {"pool_fetch_interval": 0.3}, "telemetry": {"enabled": False}}, changes))


def strictly_decreasing(xs) -> bool:
    return all(xs[i] > xs[i + 1] for i in range(len(xs) - 1))


def flip_loads(stack: Stack) -> None:
    """The idle member becomes the busy one and vice versa."""
    for load, (w, run, kv) in zip(stack.loads, reversed(LOADS), strict=True):
        load.set(w, run, kv)


def member_ratio_events(events, member: str) -> list[dict]:
    return [e for e in events if e.get("event") == "ratio_changed" and e.get("member") == member]
