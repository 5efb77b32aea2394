"""Whole-call deadlines for BIG-IP calls, and one budget for all of a tick's BIG-IP work.

`requests`' `timeout` bounds the connect and *each socket read*, not the call: a reply that
trickles one byte per second never times out (one tick ran 220 s that way). So every BIG-IP
call runs inside a `CallScope`: the connections it uses register their sockets with the scope,
and a timer shuts those sockets down when the deadline passes. A read blocked in the kernel
(headers, TLS handshake or body, trickling or silent) then returns at once, the call fails and
`expired` tells the caller that the deadline, not the peer, ended it.

The sockets are found by swapping the connection classes of the `requests` adapter's pools for
subclasses that register themselves (`DeadlineAdapter`); nothing else about the session changes,
so a test may still mount a mock adapter instead.

`TickBudget` is the other half: one monotonic end time for everything a tick asks of BIG-IP
(reads, re-reads, writes, logins, retries and their backoff). Each call's deadline is the smaller
of `f5.timeout` and what is left of the budget; when nothing is left, no call is made.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: Timer slack: a call ends at most this long after its deadline (thread wake-up, socket teardown).
SLACK = 0.25

_local = threading.local()


class CallScope:
    """One call's deadline: sockets used inside are shut down when it passes."""

    def __init__(self, seconds: float):
        self.seconds = max(0.0, seconds)
        self.ends = time.monotonic() + self.seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self.expired:
                _shut(sock)
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def start(self) -> None:
        self._timer.start()

    def finish(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing to wake


@contextmanager
def scope(seconds: float) -> Iterator[CallScope]:
    """Run one call with a deadline `seconds` from now (connect, send, headers and the whole body)."""
    s = CallScope(seconds)
    previous = getattr(_local, "scope", None)
    _local.scope = s
    s.start()
    try:
        yield s
    finally:
        s.finish()
        _local.scope = previous


def current() -> CallScope | None:
    return getattr(_local, "scope", None)


class _Registering:
    """Mixin for urllib3 connections: hand the socket to the thread's current scope."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:  # the raw socket, before TLS: a stalled handshake is cut too
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]  # a mixin: the connection class after it has it
        s = current()
        if s is not None:
            s.register(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:  # a kept-alive connection already has its socket
        s = current()
        if s is not None and self.sock is not None:
            s.register(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc, unused-ignore]


class _HTTPConnection(_Registering, HTTPConnection):
    pass


class _HTTPSConnection(_Registering, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """A `requests` adapter whose connections obey `scope()` deadlines."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)


class BudgetSpent(Exception):
    """Raised inside the client when a tick's BIG-IP budget has nothing left for another call."""


class TickBudget:
    """A monotonic end time shared by every BIG-IP call of one tick. `None` ends: no budget (check, plan)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._ends: float | None = None
        self.seconds = 0.0

    def begin(self, seconds: float | None) -> None:
        self.seconds = seconds or 0.0
        self._ends = None if seconds is None else self._clock() + seconds

    def end(self) -> None:
        self._ends = None

    def remaining(self) -> float | None:
        return None if self._ends is None else max(0.0, self._ends - self._clock())

    def deadline(self, per_call: float) -> float:
        """This call's deadline in seconds: `per_call`, cut to what is left. BudgetSpent when nothing is."""
        left = self.remaining()
        if left is None:
            return per_call
        if left <= 0.05:
            raise BudgetSpent(f"the tick's BIG-IP budget of {self.seconds:g}s is spent")
        return min(per_call, left)
