"""The configuration schema: frozen dataclasses, built once by `controller.config.yamlfile.load`.

No module other than `configfile` reads YAML. Secrets are resolved at load time and
kept out of `repr` so they cannot reach a log line by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from controller.model import PoolRef

#: What weights.drive writes. "auto" (the default): ratios, and connection limits too where the pool queues at
#: its limits (queueOnConnectionLimit enabled); the others drive what they say, whatever the pool's queue setting.
Drive = Literal["auto", "ratio", "connection_limit", "both"]
#: f5.write_mode: "patch", one PATCH per member; "transaction", one commit per pool.
WriteMode = Literal["patch", "transaction"]
#: f5.auth: "token", one X-F5-Auth-Token; "basic", HTTP basic auth on every call.
AuthMode = Literal["token", "basic"]
#: metrics.schema
Scheme = Literal["http", "https"]
DRIVES: tuple[Drive, ...] = get_args(Drive)
WRITE_MODES: tuple[WriteMode, ...] = get_args(WriteMode)
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)
SCHEMES: tuple[Scheme, ...] = get_args(Scheme)
#: weights.queue_time_limit: "off" (the default: the pool's queueTimeLimit is never touched) or "slo" (opt-in:
#: keep it at queue_time_share x slo_s, so LTM resets a request that waited in its queue past that)
QueueTimeLimit = Literal["off", "slo"]
QUEUE_TIME_LIMITS: tuple[QueueTimeLimit, ...] = get_args(QueueTimeLimit)
QUEUE_TIME_LIMIT_MAX_MS = 2**32 - 1  # BIG-IP's queueTimeLimit is an unsigned 32-bit count of milliseconds
TOKEN_TIMEOUT_MAX = 36000  # seconds: the longest lifetime BIG-IP gives a token (PATCH authz/tokens)
ENGINE_TYPES = ("vllm", "sglang", "trtllm", "triton", "llamacpp", "tgi")


@dataclass(frozen=True)
class F5Config:
    host: str  # the first (or only) management address
    port: int = 443
    username: str = "admin"
    password: str = field(default="", repr=False)
    password_source: str = ""  # "env F5_PASSWORD" or "file /run/credentials/..", for messages
    verify_tls: bool | str = True  # True, False, or a CA bundle path
    timeout: float = 10.0  # seconds per iControl REST call: connect, send, headers and the whole body
    tick_budget: float = 30.0  # seconds for all of one tick's BIG-IP calls (reads, writes, logins, retries)
    state_dir: str = ""  # where the token state file lives: f5.state_dir, else $STATE_DIRECTORY; "" = none
    login_provider: str = "tmos"
    write_mode: WriteMode = "patch"  # "patch": one PATCH per member; "transaction": one commit per pool
    write_concurrency: int = 4
    max_writes_per_minute: int = 600  # a cap across all pools; excess changes wait for the next tick
    hosts: tuple[str, ...] = ()  # every unit of the device group when f5.host is a list (HA pairs)
    #: "token": one X-F5-Auth-Token kept for `token_timeout` s; "basic": HTTP basic auth on every call, no
    #: token at all (local accounts only: remote LDAP/RADIUS/TACACS users need a token and their provider)
    auth: AuthMode = "token"
    token_timeout: int = TOKEN_TIMEOUT_MAX  # seconds each token lives; re-login shortly before it ends
    #: a unit with no peer: cm/* (failover state, device groups) is never asked and the unit is written
    standalone: bool = False
    #: Largest BIG-IP reply read, in MiB (a pool of 10,000 members with expandSubcollections is ~10 MiB);
    #: a larger one is refused with ReplyTooLargeError instead of filling memory.
    max_reply_mb: float = 32.0

    @property
    def max_reply_bytes(self) -> int:
        return int(self.max_reply_mb * 1024 * 1024)

    @property
    def units(self) -> tuple[str, ...]:
        """The management addresses to consider: `hosts`, or just `host`."""
        return self.hosts or (self.host,)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"https://{host}:{self.port}"


#: The default scrape deadline, as a share of the tick (scheduler.tick_deadline unset).
DEADLINE_SHARE = 0.8


@dataclass(frozen=True)
class SchedulerConfig:
    metrics_fetch_interval_ms: int = 1000  # the tick period, as in the seed
    pool_fetch_interval: float = 10.0  # seconds between re-reads of pool membership
    scrape_concurrency: int = 32
    #: Members (endpoints) that keep a keep-alive connection between ticks; the others are fetched on a
    #: connection of their own, closed after the page. Open sockets <= scrape_keepalive + scrape_concurrency.
    scrape_keepalive: int = 128
    tick_deadline: float | None = None  # seconds for all scrapes of a tick; None = 0.8 x the tick (at least 1 s)

    @property
    def tick_seconds(self) -> float:
        return self.metrics_fetch_interval_ms / 1000.0

    @property
    def scrape_deadline(self) -> float:
        # 80 % of the tick: the rest is for planning and writing, so a fleet that takes longer than a tick
        # to scrape is scraped in turns (Reconciler._scrape) and the ticks keep their pace.
        return self.tick_deadline if self.tick_deadline is not None else DEADLINE_SHARE * max(self.tick_seconds, 1.0)


@dataclass(frozen=True)
class ModeConfig:
    """A scoring policy. `s1` is the seed's: w_a·(1 − norm_waiting) + w_b·(1 − cache_usage).

    The default without a `modes:` section is `balance`, chosen by the traffic benchmark (docs/policy.md).
    """

    name: str = "balance"
    w_a: float = 0.5
    w_b: float = 0.5
    w_g: float = 0.0  # running-request weight of the sideband's s2 modes
    # the sideband's s1_dynamic_waiting / s2_dynamic_waiting (its config_loader.py ModeConfig, same defaults)
    transition_point: float = 30.0
    steepness: float = 1.0


@dataclass(frozen=True)
class EngineKeys:
    """Metric names for one engine type (the upstream `engines_metrics_keys`)."""

    waiting_queue: str
    cache_usage: str | None = None
    running_req: str | None = None


@dataclass(frozen=True)
class MetricsConfig:
    schema: Scheme = "http"
    port: int | None = None  # None: the member's own port
    path: str | None = None  # None: the engine type's default (engines.default_path: /metrics, trtllm /prometheus/metrics)
    timeout: float = 3.0
    api_key: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Where to scrape instead of the member's address:port: a template over {name}, {node}, {address},
    #: {port} (e.g. "{address}:9400" for a sidecar, "{node}.metrics.example.com:{port}" for route domains).
    target: str | None = None


@dataclass(frozen=True)
class WeightsConfig:
    """How scores become BIG-IP member settings, and how hard the controller damps changes."""

    drive: Drive = "auto"  # "auto", "ratio", "connection_limit" or "both" (DRIVES)
    scale: int = 100  # the best member's ratio; at most 65535
    floor: int = 10  # the lowest ratio ever written; at least 1
    dead_band: float = 0.1  # no write when |new − current| ≤ dead_band × current
    max_step: float = 0.5  # largest change per tick, as a share of scale
    smoothing: float = 0.0  # EWMA weight kept from the previous score; 0 = off
    stale_after: float = 30.0  # seconds without fresh metrics before a member returns to neutral
    max_floor_share: float = 0.5  # at most this share of a pool's members may be pushed to floor
    max_connections: int | None = None  # connection-limit mode: a fixed per-member ceiling
    limit_headroom: float = 1.0  # unused since connection limits follow each engine's queue (limit_queue)
    limit_queue: int = 8  # connection limits: requests an engine keeps waiting beyond what it runs
    describe: bool = True  # write a GUI note into the member description with each ratio change
    #: The opt-in goodput mode: "slo" keeps the pool's queueTimeLimit at queue_time_share x slo_s (only where
    #: the pool queues at its connection limits), so LTM *resets* a request that waited longer in its queue;
    #: "off" (the default) never touches queueTimeLimit.
    queue_time_limit: str = "off"
    slo_s: float = 2.0  # the time-to-first-token objective, seconds
    #: queueTimeLimit as a share of slo_s: a request that leaves LTM's queue still needs its first token
    #: (docs/policy.md: 0.5 gave 92.5% goodput against 87.0% at 1.0 on three8's bursts)
    queue_time_share: float = 0.5

    @property
    def queue_time_limit_ms(self) -> int | None:
        """The queueTimeLimit (milliseconds) the opt-in mode keeps on the pool; None when it is off."""
        if self.queue_time_limit != "slo":
            return None
        return round(self.queue_time_share * self.slo_s * 1000)

    @property
    def drives_ratio(self) -> bool:
        return self.drive in ("auto", "ratio", "both")

    def limits_on(self, queue_on_connection_limit: bool) -> bool:
        """Whether connection limits are planned for a pool with this queueOnConnectionLimit setting:
        always with connection_limit/both; with auto only where LTM queues the excess (elsewhere a limit
        would reject requests)."""
        return self.drives_limit or (self.drive == "auto" and queue_on_connection_limit)

    @property
    def drives_limit(self) -> bool:
        return self.drive in ("connection_limit", "both")


@dataclass(frozen=True)
class FallbackConfig:
    """The sideband scheduler's per-pool `fallback` (its config_loader.py FallbackConfig, same defaults).

    `pool_fallback`: the pool is left to BIG-IP's own balancing (equal ratios). A member whose running
    requests or waiting queue is above its threshold (strictly, as the sideband compares) takes no new
    connections: floor ratio, and a connection limit of 1 where the limit is driven.
    """

    pool_fallback: bool = False
    member_running_req_threshold: float | None = None
    member_waiting_queue_threshold: float | None = None

    @property
    def thresholds(self) -> bool:
        return self.member_running_req_threshold is not None or self.member_waiting_queue_threshold is not None


@dataclass(frozen=True)
class PoolConfig:
    ref: PoolRef
    engine_type: str
    metrics: MetricsConfig = MetricsConfig()
    mode: ModeConfig = ModeConfig()
    weights: WeightsConfig = WeightsConfig()
    fallback: FallbackConfig = FallbackConfig()
    #: Members the controller keeps off, by name as BIG-IP shows it (`10.0.0.1:8000`, `gpu-node-1:8000`) or
    #: full path (`/Common/10.0.0.1:8000`): scraped and counted like the others, never written. The config
    #: twin of the `f5-llm-ratio: hold` description marker.
    exclude: tuple[str, ...] = ()

    def excludes(self, name: str, full_path: str = "") -> bool:
        return name in self.exclude or (bool(full_path) and full_path in self.exclude)


@dataclass(frozen=True)
class TelemetryConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9109
    blind_ticks: int = 2  # /healthz answers 503 after this many ticks in a row in which some pool was blind


@dataclass(frozen=True)
class AppConfig:
    f5: F5Config
    pools: tuple[PoolConfig, ...]
    scheduler: SchedulerConfig = SchedulerConfig()
    modes: tuple[ModeConfig, ...] = (ModeConfig(),)
    engine_keys: tuple[tuple[str, EngineKeys], ...] = ()  # engine type -> custom metric names
    telemetry: TelemetryConfig = TelemetryConfig()
    log_level: str = "INFO"
    #: global.instance: this controller's id in GUI notes (who wrote a member last); "" = the host name.
    #: Not the config file's path: a copy or a move of the file is the same owner.
    instance: str = ""
    source: str = ""  # the file it came from
    notes: tuple[str, ...] = ()  # INFO lines for accepted-but-unused keys
    warnings: tuple[str, ...] = ()  # WARN lines: accepted, but not as written (e.g. an unknown mode became s1)
    #: seconds between checks of the config file for changes (global.interval); 0 = only SIGHUP reloads
    reload_interval: float = 5.0
    #: pools of the file this controller cannot steer, with why (e.g. XInference): not planned, FAIL in `check`
    unsupported: tuple[tuple[str, str], ...] = ()

    def keys_for(self, engine_type: str) -> EngineKeys | None:
        return dict(self.engine_keys).get(engine_type)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so output filters can redact them."""
        out = [self.f5.password]
        for p in self.pools:
            out += [p.metrics.api_key or "", p.metrics.password or ""]
        return tuple(s for s in out if s)
