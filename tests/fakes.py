"""In-memory stand-ins for the edges, so the reconciler is tested without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from controller.errors import NotFoundError
from controller.model import ScrapeKey, ScrapeResult, TokenCounters


@dataclass
class Applied:
    applied: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    deferred: list = field(default_factory=list)
    calls: int = 0


class FakeBigIP:
    def __init__(self, *states):
        self.pools = {s.ref.full_path: s for s in states}
        self.reads = 0
        self.writes: list[tuple[str, str, dict]] = []
        self.read_error = None
        self.vanished: set[str] = set()  # members that 404 on write
        self.closed = False
        self.ticks_begun = self.ticks_ended = 0

    def read_pool(self, ref):
        self.reads += 1
        if self.read_error:
            raise self.read_error
        if ref.full_path not in self.pools:
            raise NotFoundError("pool not found", status=404)
        return self.pools[ref.full_path]

    def apply(self, ref, plans):
        result = Applied()
        state = self.pools[ref.full_path]
        members = {m.key: m for m in state.members}
        for p in plans:
            result.calls += 1
            if p.member.key in self.vanished:
                result.failed.append((p.member.key, NotFoundError("member not found", status=404)))
                continue
            self.writes.append((ref.full_path, p.member.key, p.changes))
            old = members[p.member.key]
            note = p.changes.get("description", old.description)
            members[p.member.key] = replace(old, ratio=p.ratio, connection_limit=p.connection_limit, description=note)
            result.applied.append(p.member.key)
        self.pools[ref.full_path] = replace(state, members=tuple(members[m.key] for m in state.members))
        return result

    def patch_pool(self, ref, fields):
        """The pool's own setting (queueTimeLimit); `pool_error` makes it fail."""
        if getattr(self, "pool_error", None):
            raise self.pool_error
        self.pool_writes = [*getattr(self, "pool_writes", []), (ref.full_path, dict(fields))]
        state = self.pools[ref.full_path]
        self.pools[ref.full_path] = replace(state, queue_time_limit_ms=fields.get("queueTimeLimit", state.queue_time_limit_ms))

    def begin_tick(self, seconds=None):
        self.ticks_begun += 1

    def end_tick(self):
        self.ticks_ended += 1

    def token_counters(self):
        return TokenCounters()

    def unit(self):
        return "fake-bigip"

    def observe_requests(self, hook):
        self.request_hooks = [*getattr(self, "request_hooks", []), hook]

    def close(self):
        self.closed = True


@dataclass(frozen=True)
class FakeTarget:
    member: str
    url: str = ""
    pool: str = ""

    @property
    def key(self):
        return ScrapeKey(self.pool, self.member)


def fake_target_for(member, pool_cfg, keys):
    return FakeTarget(member.key, f"http://{member.scrape_host}:{member.port}/metrics", pool_cfg.ref.full_path)


class FakeScraper:
    """Returns whatever `pages` holds per endpoint: a Sample, or an error slug."""

    def __init__(self, clock):
        self.clock = clock
        self.samples = {}
        self.calls = 0
        self.closed = False

    def scrape(self, targets, deadline):
        self.calls += 1
        out = {}
        for t in targets:
            value = self.samples.get(t.member, "refused")
            if isinstance(value, str):
                out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), error=value)
            else:
                out[t.key] = ScrapeResult(t.member, self.clock.monotonic(), sample=value)
        return out

    def close(self):
        self.closed = True
