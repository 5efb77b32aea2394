"""Plain data passed between the edges (BIG-IP, engines) and the pure core.

Nothing here does I/O. Everything is frozen so a tick's inputs cannot change under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Sessions and states in which LTM sends a member no new traffic whatever its ratio.
INACTIVE_SESSIONS = frozenset({"user-disabled"})
INACTIVE_STATES = frozenset({"down", "user-down", "forced-down", "offline"})

_ROUTE_DOMAIN = re.compile(r"%\d+$")


@dataclass(frozen=True)
class PoolRef:
    """Where a pool lives on BIG-IP. `sub_path` is the folder below the partition, if any."""

    name: str
    partition: str = "Common"
    sub_path: str = ""

    @property
    def full_path(self) -> str:
        parts = [self.partition] + ([self.sub_path] if self.sub_path else []) + [self.name]
        return "/" + "/".join(parts)

    @property
    def uri_name(self) -> str:
        """The `~Partition~sub~name` form used in iControl REST paths."""
        return self.full_path.replace("/", "~")

    def __str__(self) -> str:
        return self.full_path


def split_member_name(name: str) -> tuple[str, int]:
    """Split a member name into (node, port): `10.0.0.1:80`, `10.0.0.1%2:80`, `2001:db8::1.80`, `web1:80`."""
    if name.count(":") > 1:  # IPv6 joins address and port with "."
        node, _, port = name.rpartition(".")
    else:
        node, _, port = name.rpartition(":")
    return node, int(port)


@dataclass(frozen=True)
class Member:
    """A pool member as BIG-IP reports it."""

    name: str  # "10.0.0.1:8000", "10.0.0.1%2:8000", "2001:db8::1.8000" or "node1:8000"
    partition: str
    address: str  # the IP, possibly with a route domain suffix "%2"
    port: int
    ratio: int = 1
    connection_limit: int = 0  # 0 means unlimited on BIG-IP
    session: str = "monitor-enabled"
    state: str = "up"
    description: str = ""
    full_path: str = ""

    @property
    def key(self) -> str:
        """Stable identity within a pool, used for every per-member mapping."""
        return self.name

    @property
    def scrape_host(self) -> str:
        """The address to reach the engine at: route domain stripped, IPv6 bracketed."""
        host = _ROUTE_DOMAIN.sub("", self.address)
        return f"[{host}]" if ":" in host else host

    @property
    def active(self) -> bool:
        """False when LTM would send it no new traffic regardless of ratio."""
        return self.session not in INACTIVE_SESSIONS and self.state not in INACTIVE_STATES

    @property
    def endpoint(self) -> str:
        """`address:port` for humans, route domain kept."""
        return f"{self.address}:{self.port}" if ":" not in self.address else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class PoolState:
    """One pool as read from BIG-IP in one call."""

    ref: PoolRef
    load_balancing_mode: str
    members: tuple[Member, ...]
    queue_on_connection_limit: bool = False
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def honours_ratio(self) -> bool:
        return self.load_balancing_mode.startswith(("ratio-", "dynamic-ratio-"))


@dataclass(frozen=True, kw_only=True)
class SpeedCounters:
    """What a member's page says about its speed: cumulative counters and histogram sums (summed over
    data-parallel ranks) and a few throughput gauges. None means the engine does not export it.

    `controller.capacity` turns the differences between two ticks into a service-rate estimate.
    """

    prompt_tokens: float | None = None  # vllm:prompt_tokens_total, sglang:prompt_tokens_total, ...
    generation_tokens: float | None = None  # vllm:generation_tokens_total, llamacpp:tokens_predicted_total, ...
    requests: float | None = None  # finished requests: vllm:request_success_total (all reasons), ...
    ttft_sum: float | None = None  # time-to-first-token histogram: _sum (seconds) and _count
    ttft_count: float | None = None
    itl_sum: float | None = None  # inter-token latency (time per output token) histogram
    itl_count: float | None = None
    gen_throughput: float | None = None  # gauge, generation tokens/s of the whole engine (sglang:gen_throughput)
    slot_prompt_rate: float | None = None  # gauge, prompt tokens/s per request (llamacpp:prompt_tokens_seconds)
    slot_gen_rate: float | None = None  # gauge, generated tokens/s per request (llamacpp:predicted_tokens_seconds)

    def values(self) -> dict[str, float]:
        """The cumulative fields that are set (the gauges are not counters and are left out)."""
        names = ("prompt_tokens", "generation_tokens", "requests", "ttft_sum", "ttft_count", "itl_sum", "itl_count")
        return {n: v for n in names if (v := getattr(self, n)) is not None}


@dataclass(frozen=True)
class Sample:
    """The load figures read from one member's /metrics page. None means the engine does not export it."""

    waiting: float
    running: float | None = None
    kv_usage: float | None = None  # 0..1
    kv_max_concurrency: float | None = None  # from vllm:cache_config_info, summed over ranks
    engine: str = ""  # detected flavour, e.g. "vllm", "vllm-legacy", "sglang"
    ranks: int = 1
    counters: SpeedCounters | None = None  # speed signals, when the page has any


@dataclass(frozen=True)
class ScrapeResult:
    """The outcome of scraping one member. Exactly one of `sample` and `error` is set."""

    member: str  # Member.key
    at: float  # clock time the page was read
    sample: Sample | None = None
    error: str | None = None  # short reason slug, e.g. "timeout", "not-prometheus", "missing-metric"
    detail: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.sample is not None


@dataclass(frozen=True)
class MemberPlan:
    """What the policy decided for one member this tick, with everything needed to explain it."""

    member: Member
    sample: Sample | None
    score: float | None
    ratio: int  # planned ratio (equal to member.ratio when nothing changes)
    connection_limit: int  # planned limit (equal to member.connection_limit when nothing changes)
    action: str  # "hold", "write", "skip-inactive", "unknown-hold", "unknown-neutral", "dead-band"
    reason: str = ""
    description: str | None = None  # new GUI note when written with the ratio
    speed: float | None = None  # relative service rate the closed loop leaks toward (controller.capacity)
    speed_source: str = ""  # "measured", "imputed" (pool median), "kv-capacity" or "equal"

    @property
    def changes(self) -> dict:
        """The iControl REST fields to PATCH; empty when nothing changes."""
        out: dict = {}
        if self.ratio != self.member.ratio:
            out["ratio"] = self.ratio
        if self.connection_limit != self.member.connection_limit:
            out["connectionLimit"] = self.connection_limit
        if out and self.description is not None and self.description != self.member.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class PoolPlan:
    pool: PoolState
    members: tuple[MemberPlan, ...]
    note: str = ""  # pool-level reason, e.g. "no member has fresh metrics: nothing written"
    neutral: str = ""  # what the neutral ratios come from: "measured", "kv-capacity" or "equal"

    @property
    def writes(self) -> tuple[MemberPlan, ...]:
        return tuple(m for m in self.members if m.changes)

    @property
    def blind(self) -> bool:
        """Active members, but not one with fresh metrics: the controller could not see this pool."""
        return any(m.member.active for m in self.members) and all(m.sample is None for m in self.members)


@dataclass(frozen=True)
class TickReport:
    """Everything one reconcile tick saw and did, for logs, dry-run tables and /status."""

    started: float
    finished: float
    plans: tuple[PoolPlan, ...] = ()
    applied: int = 0
    failed: int = 0
    dry_run: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)
    pool_writes: tuple[tuple[str, int, int], ...] = ()  # (pool full path, applied, failed) per written pool

    @property
    def ok(self) -> bool:
        return not self.errors
