"""Plain data passed between the edges (BIG-IP, engines) and the pure core.

Nothing here does I/O. Everything is frozen so a tick's inputs cannot change under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Final, Literal, NamedTuple, NewType

from controller.errors import PageProblem

#: Sessions and states in which LTM sends a member no new traffic whatever its ratio.
INACTIVE_SESSIONS = frozenset({"user-disabled"})
INACTIVE_STATES = frozenset({"down", "user-down", "forced-down", "offline"})

_ROUTE_DOMAIN = re.compile(r"%\d+$")

#: The only load-balancing modes in which a pool member's static `ratio` takes effect. The -node modes
#: weigh by the node object's ratio (shared by every pool using the node); dynamic-ratio-* modes take
#: weights from performance monitors; the rest ignore ratios.
RATIO_MODES = frozenset({"ratio-member", "ratio-least-connections-member"})
RECOMMENDED_MODE = "ratio-least-connections-member"
#: Placeholders of a pool's `metrics.target` (where to scrape instead of the member's address:port).
TARGET_FIELDS = ("name", "node", "address", "port", "rd")
#: What an F5 admin writes into a BIG-IP `description` (member or pool) to keep the controller off it:
#: a member whose description contains `f5-llm-ratio: hold` keeps its ratio and limit; a pool whose
#: description contains `f5-llm-ratio: pause` gets no writes at all. Matched case-insensitively, with
#: any spacing after the colon, anywhere in the text ("admin: pinned for canary; f5-llm-ratio: hold").
HOLD_MARKER = "f5-llm-ratio: hold"
PAUSE_MARKER = "f5-llm-ratio: pause"
_HOLD = re.compile(r"f5-llm-ratio:\s*hold\b", re.IGNORECASE)
_PAUSE = re.compile(r"f5-llm-ratio:\s*pause\b", re.IGNORECASE)


def held_by_admin(description: str) -> bool:
    """The member's BIG-IP description asks the controller to keep its ratio and limit (HOLD_MARKER)."""
    return bool(_HOLD.search(description or ""))


def paused_by_admin(description: str) -> bool:
    """The pool's BIG-IP description asks the controller to write nothing to it (PAUSE_MARKER)."""
    return bool(_PAUSE.search(description or ""))


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


def _has_port(name: str) -> bool:
    sep = "." if name.count(":") > 1 else ":"
    return name.rpartition(sep)[2].isdigit()


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
    ephemeral: bool = False  # created by BIG-IP from an FQDN template's DNS answer: refuses changes
    fqdn_template: bool = False  # an FQDN template (address any6, state fqdn-*): no engine behind it
    priority_group: int = 0  # `priorityGroup` (0-65535, higher first); counts only with minActiveMembers > 0

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
        """False when LTM would send it no new traffic regardless of ratio (an FQDN template never does:
        its ephemeral members take the traffic)."""
        return self.session not in INACTIVE_SESSIONS and self.state not in INACTIVE_STATES and not self.fqdn_template

    def scrape_address(self, template: str) -> str:
        """`metrics.target` filled for this member: {name} gpu-node-1:8000, {node} gpu-node-1, {address} the IP,
        {port} 8000, {rd} the route domain id ("0" when the member names none).

        BIG-IP names members by IP with a route domain by default (`10.0.0.5%2:8000`); `%2` means nothing
        to the controller host's resolver or routing and is not valid in a URL, so {name}, {node} and
        {address} drop it ({rd} keeps it: "{node}-rd{rd}.metrics.example.com" tells overlapping addresses
        apart). IPv6 hosts come in brackets."""
        node = self.name.rsplit("." if self.name.count(":") > 1 else ":", 1)[0] if _has_port(self.name) else self.name
        domain = _ROUTE_DOMAIN.search(node) or _ROUTE_DOMAIN.search(self.address)
        node = _ROUTE_DOMAIN.sub("", node)
        node = f"[{node}]" if ":" in node else node
        return template.format(name=f"{node}:{self.port}", node=node, address=self.scrape_host, port=self.port,
                               rd=domain.group(0)[1:] if domain else "0")

    @property
    def writable(self) -> bool:
        """BIG-IP accepts a change to it: not an ephemeral member, not an FQDN template."""
        return not self.ephemeral and not self.fqdn_template

    @property
    def display(self) -> str:
        """The member as the BIG-IP GUI names it, with the address where the name does not say it:
        `gpu-node-1:8000 (10.0.0.7)`, `10.0.0.1:8000`."""
        node, _ = split_member_name(self.name) if _has_port(self.name) else (self.name, 0)
        node = node.removeprefix("_auto_")
        if self.fqdn_template or node == self.address or _ROUTE_DOMAIN.sub("", node) == self.address:
            return self.name
        return f"{self.name} ({self.address})"

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
    description: str = ""  # the pool's BIG-IP description (PAUSE_MARKER pauses the controller on it)
    queue_depth_limit: int = 0  # queueDepthLimit: 0 = unlimited
    queue_time_limit_ms: int = 0  # queueTimeLimit (milliseconds): 0 = unlimited

    @property
    def paused(self) -> bool:
        """An admin paused the controller on this pool (its description contains PAUSE_MARKER)."""
        return paused_by_admin(self.description)
    min_active_members: int = 0  # `minActiveMembers`: > 0 turns priority-group activation on

    @property
    def honours_ratio(self) -> bool:
        """Member ratios take effect only in ratio-member and ratio-least-connections-member."""
        return self.load_balancing_mode in RATIO_MODES

    @cached_property  # computed once per read: planning asks it per member
    def groups_in_use(self) -> frozenset[int] | None:
        """The priority groups LTM sends new connections to now; None without priority-group activation."""
        return groups_in_use(((m.priority_group, m.active) for m in self.members), self.min_active_members)

    def idle(self, member: Member) -> bool:
        """An available member of a priority group LTM is not using now: it gets no new connections."""
        used = self.groups_in_use
        return used is not None and member.active and member.priority_group not in used

    def serving(self, member: Member) -> bool:
        """LTM may send it new connections now: active, and in a priority group in use (when they count)."""
        return member.active and not self.idle(member)

    def priority_groups(self) -> tuple[tuple[int, int, int, bool], ...]:
        """(group, members, available members, in use) per priority group, highest first; () without
        priority-group activation."""
        used = self.groups_in_use
        if used is None:
            return ()
        groups = sorted({m.priority_group for m in self.members if not m.fqdn_template}, reverse=True)
        return tuple((g, sum(m.priority_group == g and not m.fqdn_template for m in self.members),
                      sum(m.priority_group == g and m.active for m in self.members), g in used) for g in groups)

    def priority_note(self) -> str:
        """`priority groups (minActiveMembers 1): 10 in use (2 of 2 available), 0 idle (1 of 1)`; "" without."""
        groups = self.priority_groups()
        if not groups:
            return ""
        parts = [f"{g} {'in use' if used else 'idle'} ({up} of {n} available)" for g, n, up, used in groups]
        return f"priority groups (minActiveMembers {self.min_active_members}): {', '.join(parts)}"


def groups_in_use(members: Iterable[tuple[int, bool]], min_active: int) -> frozenset[int] | None:
    """Priority-group activation as LTM does it: from (priorityGroup, available) per member, the groups that
    take new connections. The highest group with an available member first, then the next lower ones while
    fewer than `min_active` members of the groups taken are available; every group when no group has an
    available member. None when `min_active` is 0 (activation off: every member counts)."""
    if min_active <= 0:
        return None
    listed = list(members)
    up: dict[int, int] = {}
    for group, available in listed:
        up[group] = up.get(group, 0) + int(available)
    used: set[int] = set()
    count = 0
    for group in sorted(up, reverse=True):
        if count >= min_active:
            break
        if up[group] == 0:
            continue
        used.add(group)
        count += up[group]
    return frozenset(used) if used else frozenset(up)


def mode_problem(pool: PoolState) -> str:
    """Why member ratios written to this pool would change nothing, with the fix; "" when they take effect."""
    mode = pool.load_balancing_mode
    if mode in RATIO_MODES:
        return ""
    if mode.endswith("-node"):
        why = "weighs by the node's ratio, shared by every pool using the node (never written by f5-llm-ratio)"
    elif mode.startswith("dynamic-ratio"):
        why = "takes its weights from performance monitors, not the member ratio"
    else:
        why = "ignores member ratios"
    return (f"load-balancing mode {mode} {why}: no ratio written; fix: tmsh modify ltm pool {pool.ref.full_path} "
            f"load-balancing-mode {RECOMMENDED_MODE}")


def fqdn_problem(pool: PoolState) -> str:
    """Why no member of this pool can be written (every one is ephemeral or a template); "" otherwise."""
    real = [m for m in pool.members if not m.fqdn_template]
    if not pool.members or any(m.writable for m in pool.members):
        return ""
    if real:
        return (f"all {len(real)} member(s) are ephemeral FQDN members, which BIG-IP does not let anyone modify: "
                "per-engine ratios cannot be written; use one static member (node) per engine to steer this pool")
    return "only FQDN template member(s), no resolved member: nothing to scrape or steer"


@dataclass(frozen=True, kw_only=True)
class SpeedCounters:
    """What a member's page says about its speed: cumulative counters and histogram sums (summed over
    data-parallel ranks) and a few throughput gauges. None means the engine does not export it.

    `controller.engines.capacity` turns the differences between two ticks into a service-rate estimate.
    """

    prompt_tokens: float | None = None  # vllm:prompt_tokens_total, sglang:prompt_tokens_total, ...
    generation_tokens: float | None = None  # vllm:generation_tokens_total, llamacpp:tokens_predicted_total, ...
    requests: float | None = None  # finished requests: vllm:request_success_total (all reasons), ...
    ttft_sum: float | None = None  # time-to-first-token histogram: _sum (seconds) and _count
    ttft_count: float | None = None
    itl_sum: float | None = None  # inter-token latency (time per output token) histogram
    itl_count: float | None = None
    gen_throughput: float | None = None  # gauge, generation tokens/s of the whole engine (sglang:gen_throughput)
    #: compute time counters (llama.cpp): seconds spent processing prompts (engine-wide, batched) and
    #: generating tokens (summed over slots, so Δtokens/Δseconds is the rate one request sees)
    prompt_seconds: float | None = None  # llamacpp:prompt_seconds_total
    generation_seconds: float | None = None  # llamacpp:tokens_predicted_seconds_total
    #: gauges that llama.cpp resets at every read of /metrics (a second scraper takes them away): used
    #: only when the page has no compute time counters (servers before 2024)
    slot_prompt_rate: float | None = None  # gauge, prompt tokens/s per request (llamacpp:prompt_tokens_seconds)
    slot_gen_rate: float | None = None  # gauge, generated tokens/s per request (llamacpp:predicted_tokens_seconds)

    def values(self) -> dict[str, float]:
        """The cumulative fields that are set (the gauges are not counters and are left out)."""
        names = ("prompt_tokens", "generation_tokens", "requests", "ttft_sum", "ttft_count", "itl_sum", "itl_count",
                 "prompt_seconds", "generation_seconds")
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
    #: parallel slots (llama.cpp `-np`, read from its /props): the engine runs at most this many requests
    #: at once and defers the rest, so running/slots is how full it is where the page has no KV gauge
    slots: int | None = None


class ScrapeKey(NamedTuple):
    """Identity of one scrape across pools: the same member may sit in two pools with two metric settings."""

    pool: str  # PoolRef.full_path
    member: str  # Member.key


#: ScrapeResult.error-like slug for a member the tick did not scrape (inactive, or its pool read late).
NOT_SCRAPED: Final = "not-scraped"

#: Why a scrape failed (ScrapeResult.error): the member's own timeout, the tick's deadline, refused, TLS, a page
#: over the size cap, anything else ("error"), or a page problem; besides these, "http-<status>" (`http_error`).
ScrapeReason = Literal["timeout", "deadline", "refused", "tls", "too-large", "error"] | PageProblem
#: "http-<status>": the member answered with an HTTP error status.
HttpError = NewType("HttpError", str)
ScrapeError = ScrapeReason | HttpError


def http_error(status: int) -> HttpError:
    """The ScrapeResult.error of an HTTP error status, e.g. "http-503"."""
    return HttpError(f"http-{status}")


@dataclass(frozen=True)
class ScrapeResult:
    """The outcome of scraping one member. Exactly one of `sample` and `error` is set."""

    member: str  # Member.key
    at: float  # clock time the page was read
    sample: Sample | None = None
    error: ScrapeError | None = None  # short reason slug, e.g. "timeout", "not-prometheus", "missing-metric"
    detail: str = ""
    duration: float = 0.0
    detected: str = ""  # on a "missing-metric" failure: the engine type the page looks like (engines.detect), if any
    #: True when this tick did not reach the member (tick deadline) and this is its last good scrape, from
    #: `at`, younger than the pool's weights.stale_after (Reconciler: large fleets are scraped in turns).
    carried: bool = False
    #: False when the tick's deadline passed before this member's request was sent (error "deadline"):
    #: the fleet did not fit the tick, which says nothing about the member.
    reached: bool = True

    @property
    def ok(self) -> bool:
        return self.sample is not None


class Action(str, Enum):
    """What the planner decided for one member. A str so logs, JSON and tables show the bare value."""

    HOLD = "hold"  # fresh metrics, nothing to change
    WRITE = "write"  # fresh metrics, ratio and/or limit change
    DEAD_BAND = "dead-band"  # a change smaller than the dead band: held
    SKIP_INACTIVE = "skip-inactive"  # disabled or down on BIG-IP: left alone
    UNKNOWN_HOLD = "unknown-hold"  # no fresh metrics: ratio held
    UNKNOWN_NEUTRAL = "unknown-neutral"  # no fresh metrics for longer than stale_after: moved to the neutral ratio
    FLOOR_CAP = "floor-cap"  # would go to the floor, but too many members already would: held above it (written)
    FLOOR_HOLD = "floor-hold"  # as floor-cap, with nothing to write
    OWNED_BY_OTHER = "owned-by-other"  # another live instance wrote it last: left alone
    NOT_WRITABLE = "not-writable"  # BIG-IP would ignore or refuse the change (LB mode, ephemeral member): held
    POOL_FALLBACK = "pool-fallback"  # fallback.pool_fallback: equal ratios, BIG-IP balances on its own
    OVER_THRESHOLD = "over-threshold"  # above a fallback.member_*_threshold: floor ratio (limit 1), no new connections
    HELD = "held"  # an admin holds it: its description contains HOLD_MARKER; ratio and limit kept
    EXCLUDED = "excluded"  # listed in the pool's `exclude` config: ratio and limit kept
    PAUSED = "paused"  # its pool's description contains PAUSE_MARKER: nothing written to the pool
    IDLE_GROUP = "idle-group"  # in a priority group LTM is not using now: share 0, not scored, not written

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def unknown(self) -> bool:
        """The member's load is not known this tick (its /metrics could not be used)."""
        return self in (Action.UNKNOWN_HOLD, Action.UNKNOWN_NEUTRAL)

    @property
    def by_admin(self) -> bool:
        """Kept as it is because an admin said so (a hold, an exclude or a paused pool)."""
        return self in (Action.HELD, Action.EXCLUDED, Action.PAUSED)


@dataclass(frozen=True, kw_only=True)
class MemberPlan:
    """What the policy decided for one member this tick, with everything needed to explain it."""

    member: Member
    sample: Sample | None
    score: float | None
    ratio: int  # planned ratio (equal to member.ratio when nothing changes)
    connection_limit: int  # planned limit (equal to member.connection_limit when nothing changes)
    action: Action
    reason: str = ""  # for humans: tables, logs, GUI; never parsed
    description: str | None = None  # new GUI note when written with the ratio
    scrape_error: ScrapeError | Literal["not-scraped"] | None = None  # ScrapeResult.error (or NOT_SCRAPED) when the load is unknown
    speed: float | None = None  # relative service rate the closed loop leaks toward (controller.engines.capacity)
    speed_source: str = ""  # "measured", "imputed" (pool median), "kv-capacity" or "equal"
    ttft: float | None = None  # measured mean time to first token (s) the policy compared (controller.engines.capacity)

    @property
    def changes(self) -> dict[str, int | str]:
        """The iControl REST fields to PATCH; empty when nothing changes."""
        out: dict[str, int | str] = {}
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
    #: The pool's planned queueTimeLimit (ms) under the opt-in goodput mode (weights.queue_time_limit: slo);
    #: None: not managed this tick (the mode is off, or the pool does not queue, is paused or held)
    queue_time_limit_ms: int | None = None
    queue_note: str = ""  # what the opt-in mode does with the pool's queueTimeLimit, and why ("" when off)

    @property
    def writes(self) -> tuple[MemberPlan, ...]:
        return tuple(m for m in self.members if m.changes)

    @property
    def pool_changes(self) -> dict[str, int]:
        """The pool's own iControl REST fields to PATCH (only queueTimeLimit); empty when nothing changes."""
        wanted = self.queue_time_limit_ms
        if wanted is None or wanted == self.pool.queue_time_limit_ms:
            return {}
        return {"queueTimeLimit": wanted}

    @property
    def blind(self) -> bool:
        """Active members, but not one with fresh metrics: the controller could not see this pool."""
        return any(self.pool.serving(m.member) for m in self.members) and all(m.sample is None for m in self.members)

    @property
    def paused(self) -> bool:
        """An admin paused the controller on this pool: nothing is written to it."""
        return self.pool.paused


class Kind(str, Enum):
    """What an Outcome is about."""

    POOL = "pool"  # reading one pool from BIG-IP
    MEMBER = "member"  # writing one member to BIG-IP
    SETTING = "setting"  # writing a pool's own setting (queueTimeLimit, the opt-in goodput mode) to BIG-IP
    TICK = "tick"  # the tick as a whole


class Reason(str, Enum):
    """Why an Outcome came out as it did."""

    READ = "read"  # pool read and planned
    READ_FAILED = "read-failed"  # BIG-IP answered the read with an error, or not at all
    NOT_READ = "not-read"  # not tried: BIG-IP gave no reply, or refused the login, earlier in this tick
    APPLIED = "applied"  # member written
    WRITE_FAILED = "write-failed"  # member write refused or failed (locally or by BIG-IP)
    NOT_STEERABLE = "not-steerable"  # pool read, but its mode or members let no ratio take effect
    WRITE_DEFERRED = "write-deferred"  # not attempted: an earlier write of this tick timed out (next tick)
    BLIND = "blind"  # pool read, but not one active member had fresh metrics: the controller could not see it
    PAUSED = "paused"  # pool read, but an admin paused the controller on it (PAUSE_MARKER): nothing written
    INTERNAL_ERROR = "internal-error"  # a bug in the tick: nothing after it ran

    def __str__(self) -> str:
        return self.value


#: Failures that mean the tick itself broke (a bug), not a pool: the loop did not complete it.
INTERNAL_FAILURES = frozenset({Reason.INTERNAL_ERROR})
#: A pool's result in one tick (TickReport.pool_result), as the per-pool metrics and /readyz name it.
POOL_RESULTS = ("ok", "paused", "blind", "error")

FAILURES = frozenset({Reason.READ_FAILED, Reason.NOT_READ, Reason.WRITE_FAILED, Reason.WRITE_DEFERRED,
                      Reason.BLIND, Reason.INTERNAL_ERROR, Reason.NOT_STEERABLE})


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one pool, one member or the tick, as data: nothing downstream parses a message.

    `detail` is the human text (already free of secrets: the BIG-IP client scrubs its errors);
    `error` is the exception, where there is one, for callers that decide by type.
    """

    kind: Kind
    reason: Reason
    pool: str = ""  # PoolRef.full_path; "" for the tick
    member: str = ""  # Member.key, for member outcomes
    detail: str = ""
    error: BaseException | None = field(default=None, compare=False)

    @property
    def failed(self) -> bool:
        return self.reason in FAILURES

    @property
    def message(self) -> str:
        """One line for logs, tables and stderr, e.g. "/Common/p: HTTP 503: ..." or "/Common/p 10.0.0.1:80: ..."."""
        if self.kind is Kind.TICK:
            return self.detail
        where = f"{self.pool} {self.member}" if self.member else self.pool
        return f"{where}: {self.detail}" if self.detail else f"{where}: {self.reason.value}"


@dataclass(frozen=True, kw_only=True)
class TokenCounters:
    """How often this process logged in to BIG-IP, extended a token and deleted one."""

    logins: int = 0
    extensions: int = 0
    deletions: int = 0


@dataclass(frozen=True, kw_only=True)
class TickReport:
    """Everything one reconcile tick saw and did, for logs, dry-run tables and /status."""

    started: float
    finished: float
    plans: tuple[PoolPlan, ...] = ()
    outcomes: tuple[Outcome, ...] = ()  # per pool read, per member written, and tick-level failures
    dry_run: bool = False

    @property
    def failures(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.failed)

    @property
    def errors(self) -> tuple[str, ...]:
        """One line per failure, in the order they happened."""
        return tuple(o.message for o in self.failures)

    @property
    def applied(self) -> int:
        return sum(1 for o in self.outcomes if o.kind is Kind.MEMBER and o.reason is Reason.APPLIED)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.kind is Kind.MEMBER and o.reason is Reason.WRITE_FAILED)

    @property
    def pool_writes(self) -> tuple[tuple[str, int, int], ...]:
        """(pool full path, applied, failed) per pool with at least one write attempted, in tick order."""
        counts: dict[str, list[int]] = {}
        for o in self.outcomes:
            if o.kind is Kind.MEMBER:
                counts.setdefault(o.pool, [0, 0])[0 if o.reason is Reason.APPLIED else 1] += 1
        return tuple((path, ok, bad) for path, (ok, bad) in counts.items())

    def pool_result(self, full_path: str) -> str:
        """How one pool fared this tick, one of POOL_RESULTS: ok (read, seen and steered), paused (an admin
        paused it), blind (read, but no active member's load known), error (not read, not steerable, or
        a write failed). A configured pool the tick never reached is an error."""
        mine = [o for o in self.outcomes if o.pool == full_path and o.kind is not Kind.TICK]
        ticked = [o for o in self.outcomes if o.kind is Kind.TICK and o.failed]
        if ticked or not any(o.kind is Kind.POOL for o in mine):
            return "error"
        if any(o.failed and o.reason is not Reason.BLIND for o in mine):
            return "error"
        if any(o.reason is Reason.PAUSED for o in mine):
            return "paused"
        return "blind" if any(o.reason is Reason.BLIND for o in mine) else "ok"

    def pool_problem(self, full_path: str) -> str:
        """Why one pool was not steered this tick ("" when it was): the failed outcomes' messages."""
        mine = [o for o in self.outcomes if (o.pool == full_path or o.kind is Kind.TICK)
                and (o.failed or o.reason is Reason.PAUSED)]
        if not mine and not any(o.kind is Kind.POOL and o.pool == full_path for o in self.outcomes):
            return "not read this tick"
        return "; ".join(dict.fromkeys(o.message for o in mine))

    def pool_outcome(self, full_path: str) -> Outcome | None:
        """The read outcome of one pool this tick; None when the tick never got to it."""
        return next((o for o in self.outcomes if o.kind is Kind.POOL and o.pool == full_path), None)

    @property
    def ok(self) -> bool:
        return not self.failures
