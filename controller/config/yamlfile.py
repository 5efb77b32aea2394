"""Read the YAML config file into the frozen dataclasses of `controller.config.schema`.

This is the only module that reads YAML. It accepts the sideband scheduler's config file
unchanged (its request-path-only keys become `AppConfig.notes`), adds this project's keys,
resolves secrets (environment variables, files, systemd credentials) and collects every
problem, each prefixed with its key path, into one `ConfigError`. Secret values never
appear in a message.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

import yaml

from controller.config import bounds
from controller.config.converters import (
    ENGINE_ALIASES,
    Context,
    Invalid,
    Reader,
    Spec,
    boolean,
    choice,
    folder,
    host_name,
    instance_name,
    integer,
    kind_of,
    management_hosts,
    member_names,
    metric_key,
    normalize_engine_type,
    number,
    scrape_target,
    secret_values,
    spec_keys,
    string,
    url_path,
    verify_tls,
)
from controller.config.schema import (
    AUTH_MODES,
    DRIVES,
    ENGINE_TYPES,
    QUEUE_TIME_LIMIT_MAX_MS,
    QUEUE_TIME_LIMITS,
    SCHEMES,
    TOKEN_TIMEOUT_MAX,
    WRITE_MODES,
    AppConfig,
    EngineKeys,
    F5Config,
    FallbackConfig,
    MetricsConfig,
    ModeConfig,
    PoolConfig,
    SchedulerConfig,
    TelemetryConfig,
    WeightsConfig,
)
from controller.engines import specs
from controller.errors import ConfigError
from controller.ltm import tokenstore
from controller.model import PoolRef
from controller.policy import scoring, sideband_modes

__all__ = ["load", "parse", "normalize_engine_type", "LOG_LEVELS", "ENGINE_ALIASES"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_PASSWORD_ENV = "F5_PASSWORD"
CREDENTIAL_NAME = "f5-password"  # systemd: LoadCredential=f5-password:/etc/...

_UNUSED = "is not used by f5-llm-ratio"
_GLOBAL_NOTES = {
    "api_port": f"{_UNUSED} (no request path); ignored",
    "api_host": f"{_UNUSED} (no request path); ignored",
}


# ---------------------------------------------------------------------------------------------
# sections

_F5 = (
    ("host", management_hosts()),
    ("port", integer(1, 65535)),
    ("username", string()),
    ("timeout", number(0, lo_open=True, unit=" (seconds)")),
    ("tick_budget", number(0, lo_open=True, unit=" (seconds)")),
    ("state_dir", string()),
    ("login_provider", string()),
    ("auth", choice(AUTH_MODES)),
    ("token_timeout", integer(1, TOKEN_TIMEOUT_MAX, unit=" (seconds)")),
    ("standalone", boolean()),
    ("write_mode", choice(WRITE_MODES)),
    ("write_concurrency", integer(1)),
    ("max_writes_per_minute", integer(1)),
    ("max_reply_mb", number(0, lo_open=True, unit=" (MiB)")),
    ("verify_tls", verify_tls),
)
_F5_EXTRA = ("password_env", "password_file", "password")

_SCHEDULER = (
    ("pool_fetch_interval", number(0, lo_open=True, unit=" (seconds)")),
    ("metrics_fetch_interval", integer(100, unit=" (milliseconds)"), "metrics_fetch_interval_ms"),
    ("scrape_concurrency", integer(1)),
    ("scrape_keepalive", integer(0)),
    ("tick_deadline", number(0, lo_open=True, unit=" (seconds)", null=True)),
)

_MODE = (
    ("name", string()),
    ("w_a", number(0)),
    ("w_b", number(0)),
    ("w_g", number(0)),
    ("transition_point", number(0, lo_open=True)),
    ("steepness", number(0)),
)
_MODE_EXTRA = ("power",)

_FALLBACK = (
    ("pool_fallback", boolean()),
    ("member_running_req_threshold", number(0, null=True)),
    ("member_waiting_queue_threshold", number(0, null=True)),
)

#: engine types the sideband scheduler supports and this controller cannot steer, with what to do instead
UNSUPPORTED_ENGINES = {
    "xinference": (
        "XInference is not supported: the sideband scores each *model* of a member from XInference's "
        "/v1/cluster/load-statistics and picks per request by model name, which a member ratio cannot express, "
        "and f5-llm-ratio has not been tested against XInference. This pool is not planned or written; "
        "keep the sideband scheduler (or its iRule) for it, or point a pool at the vLLM/SGLang workers behind "
        "XInference with engine_type: vllm or sglang and their own /metrics"
    ),
}
#: environment variables that give telemetry.host / telemetry.port when the config file does not (containers)
TELEMETRY_HOST_ENV, TELEMETRY_PORT_ENV = "F5LR_TELEMETRY_HOST", "F5LR_TELEMETRY_PORT"

def queue_time_limit() -> Any:
    """weights.queue_time_limit: slo or off. YAML 1.1 reads a bare `off` as false: taken as "off"."""
    named = choice(QUEUE_TIME_LIMITS)

    def conv(v: Any) -> str:
        if v is False:
            return "off"
        if isinstance(v, bool):
            raise Invalid("expected slo or off, got true")
        return str(named(v))

    return conv


_WEIGHTS = (
    ("drive", choice(DRIVES)),
    ("scale", integer(1, 65535)),
    ("floor", integer(1, 65535)),
    ("dead_band", number(0, 1)),
    ("max_step", number(0, 1, lo_open=True)),
    ("smoothing", number(0, 1, hi_open=True)),
    ("stale_after", number(0, lo_open=True, unit=" (seconds)")),
    ("max_floor_share", number(0, 1, lo_open=True)),
    ("max_connections", integer(1, null=True)),
    ("limit_headroom", number(0, lo_open=True)),
    ("limit_queue", integer(1, 100_000)),
    ("describe", boolean()),
    ("queue_time_limit", queue_time_limit()),
    ("slo_s", number(0, 3600, lo_open=True, unit=" (seconds)")),
    ("queue_time_share", number(0, 1, lo_open=True)),
)

_METRICS = (
    ("schema", choice(SCHEMES)),
    ("port", integer(1, 65535, null=True)),
    ("path", url_path()),
    ("timeout", number(0, lo_open=True, unit=" (seconds)")),
    ("APIkey", string(null=True, secret=True), "api_key"),
    ("metric_user", string(null=True), "user"),
    ("target", scrape_target()),
)

_TELEMETRY = (
    ("enabled", boolean()),
    ("host", host_name()),
    ("port", integer(1, 65535)),
    ("blind_ticks", integer(1, 1000)),
)

_ENGINE_KEYS = (("waiting_queue", metric_key()), ("cache_usage", metric_key()), ("running_req", metric_key()))

_GLOBAL = ("log_level", "log_debug", "interval", "instance", *_GLOBAL_NOTES)
_POOL = ("name", "partition", "sub_path", "engine_type", "metrics", "mode", "weights", "fallback", "model_APIkey",
         "exclude")
_TOP = ("global", "f5", "scheduler", "modes", "pools", "engines_metrics_keys", "weights", "telemetry")


def _section(parent: Reader, key: str, spec: Spec, extra: Sequence[str] = ()) -> tuple[Reader, dict[str, Any]]:
    r = parent.section(key)
    r.check_keys(spec_keys(spec) + tuple(extra))
    return r, r.pick(spec)


def _read_global(root: Reader) -> tuple[str, float, str]:
    """(log level, seconds between checks of the config file for changes, instance id: "" = the host name)."""
    r = root.section("global")
    r.check_keys(_GLOBAL)
    for key, message in _GLOBAL_NOTES.items():
        if r.has(key):
            r.note(key, message)
    # The sideband's hot-reload check interval: here too the file is polled (mtime and content), besides SIGHUP.
    interval = r.get("interval", number(0, unit=" (seconds; 0 = reload only on SIGHUP)"), AppConfig.reload_interval)
    debug = r.get("log_debug", boolean(), False)
    instance = r.get("instance", instance_name(), "")
    if r.has("log_level"):
        return r.get("log_level", choice(LOG_LEVELS, normalize=str.upper), "INFO"), interval, instance
    return ("DEBUG" if debug else "INFO"), interval, instance


# secrets -------------------------------------------------------------------------------------


def _strip_newline(text: str) -> str:
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            return text[: -len(end)]
    return text


#: In place of a file name or variable name the user gave under a secret key: it may be the secret itself.
_NAMED = "the {} named here (the name is not shown: a value under this key may be the secret itself)"


def _secret_file(ctx: Context, path_key: str, path: str, given: bool = True) -> tuple[str, str]:
    """The secret in file `path`. `given`: the path came from the config (never repeated in a problem)."""
    shown = _NAMED.format("file") if given else path
    try:
        with open(path, encoding="utf-8") as f:
            secret = _strip_newline(f.read())
    except OSError as exc:
        ctx.problem(path_key, f"cannot read {shown}: {exc.strerror or type(exc).__name__}")
        return "", ""
    except UnicodeDecodeError:
        ctx.problem(path_key, f"{shown} is not UTF-8 text")
        return "", ""
    if not secret:
        ctx.problem(path_key, f"{shown} is empty")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & 0o077:  # logged at start as a config_note: the secret is readable by more than its owner
        who = "everyone" if mode & 0o004 else "its group"
        ctx.notes.append(f"{path_key} WARNING: {path} is readable by {who} (mode {mode & 0o777:04o}); "
                         f"chmod 0600 it (systemd's LoadCredential= reads a root-only file)")
    return secret, f"file {path}"


def _secret_env(ctx: Context, path_key: str, name: str, why: str = "", given: bool = True) -> tuple[str, str]:
    """The secret in environment variable `name`. `given`: the name came from the config (not repeated)."""
    secret = ctx.environ.get(name, "")
    if not secret:
        shown = _NAMED.format("environment variable") if given else f"environment variable {name}"
        ctx.problem(path_key, f"{why}{shown} is not set (or empty)")
    return secret, f"env {name}"


def _credential_path(name: str, environ: Mapping[str, str]) -> str:
    """A relative name is looked up under $CREDENTIALS_DIRECTORY (systemd LoadCredential=)."""
    path = os.path.expanduser(name)
    creds = environ.get("CREDENTIALS_DIRECTORY", "")
    return os.path.join(creds, path) if creds and not os.path.isabs(path) else path


def _f5_password(r: Reader) -> tuple[str, str]:
    """password_file, else password_env, else $CREDENTIALS_DIRECTORY/f5-password, else $F5_PASSWORD."""
    environ = r.ctx.environ  # a key given as null counts as not given (the seed's default is null)
    if r.data.get("password") is not None:
        r.problem("password", "a password in the config file is not accepted; use password_env or password_file")
    if r.data.get("password_file") is not None:
        name = r.get("password_file", string())
        return _secret_file(r.ctx, r.at("password_file"), _credential_path(name, environ)) if name else ("", "")
    if r.data.get("password_env") is not None:
        name = r.get("password_env", string())
        return _secret_env(r.ctx, r.at("password_env"), name) if name else ("", "")
    implicit = os.path.join(environ.get("CREDENTIALS_DIRECTORY", ""), CREDENTIAL_NAME)
    if environ.get("CREDENTIALS_DIRECTORY") and os.path.isfile(implicit):
        return _secret_file(r.ctx, r.at("password_file"), implicit, given=False)
    why = "not configured (nor password_file), and the default "
    return _secret_env(r.ctx, r.at("password_env"), DEFAULT_PASSWORD_ENV, why, given=False)


def _read_f5(root: Reader) -> F5Config:
    r, kw = _section(root, "f5", _F5, _F5_EXTRA)
    if not r.has("host"):
        r.problem("host", "required (the BIG-IP management address)")
    password, source = _f5_password(r)
    kw["state_dir"] = tokenstore.state_dir(kw.get("state_dir", ""), r.ctx.environ)
    units: tuple[str, ...] = kw.pop("host", ()) or ("",)
    if kw.get("standalone") and len(units) > 1:
        r.problem("standalone", "true means a unit with no peer, but f5.host lists several units; list one unit, "
                                "or drop standalone to follow the device group's active unit")
    if kw.get("auth") == "basic" and kw.get("login_provider", "tmos") != "tmos":
        r.problem("auth", "basic works for local accounts only; a remote user (login_provider "
                          f"{kw['login_provider']!r}) needs auth: token")
    if kw.get("auth") == "basic" and r.has("token_timeout"):
        r.note("token_timeout", "is not used with auth: basic (no token); ignored")
    return F5Config(host=units[0], hosts=units if len(units) > 1 else (), **kw, password=password,
                    password_source=source)


# modes, weights, engines ---------------------------------------------------------------------


def supported_modes() -> str:
    ours = [name for name in scoring.POLICIES if name not in sideband_modes.SIDEBAND_MODES]
    return f"{', '.join(sideband_modes.SIDEBAND_MODES)} (the sideband scheduler's) and {', '.join(ours)}"


def _read_mode(r: Reader) -> ModeConfig:
    r.check_keys(spec_keys(_MODE) + _MODE_EXTRA)
    fields = r.pick(_MODE)
    fields.setdefault("name", "s1")  # the seed's default for a listed mode without a name
    name = fields["name"] = fields["name"].strip()
    if name not in scoring.POLICIES:
        # As the sideband scheduler does (config/config_loader.py at f254c3e, line 240): warn, then s1.
        r.warn("name", f"unsupported mode {name!r}, using s1 (as the sideband scheduler does); supported modes: "
                       f"{supported_modes()}")
        fields["name"] = "s1"
    mode = ModeConfig(**fields)
    if mode.w_a == 0 and mode.w_b == 0 and mode.w_g == 0:
        r.problem("", "w_a, w_b and w_g are all 0; at least one must be > 0")
    if mode.w_g and mode.name not in sideband_modes.THREE_METRIC:
        r.note("w_g", f"is used only by the s2 modes (running requests), not by {mode.name}; ignored")
    if r.has("power"):
        r.note("power", f"is not read by the sideband scheduler either: s1_nonlinear's exponent is "
                        f"{sideband_modes.NONLINEAR_POWER:g} there and here; ignored")
    return mode


def _read_modes(root: Reader) -> tuple[ModeConfig, ...]:
    if not root.has("modes"):
        return (ModeConfig(),)
    readers = root.items("modes")
    given = [str(r.data.get("name", "s1")).strip() for r in readers]  # before an unknown name becomes s1
    modes = tuple(_read_mode(r) for r in readers)
    if root.data["modes"] == []:
        root.problem("modes", "must list at least one mode")
    seen: set[str] = set()
    for r, name in zip(readers, given, strict=True):
        if name in seen:
            r.problem("name", f"duplicate mode name {name!r}")
        seen.add(name)
    return modes or (ModeConfig(),)


def _read_weights(r: Reader, base: WeightsConfig) -> WeightsConfig:
    r.check_keys(spec_keys(_WEIGHTS))
    picked = r.pick(_WEIGHTS)
    weights = replace(base, **picked)
    queue_keys = {"queue_time_limit", "slo_s", "queue_time_share"} & set(picked)
    wait = weights.queue_time_limit_ms
    if queue_keys and wait is not None and not 1 <= wait <= QUEUE_TIME_LIMIT_MAX_MS:
        key = "slo_s" if "slo_s" in picked else sorted(queue_keys)[0]
        r.problem(key, f"queue_time_share x slo_s is {weights.queue_time_share:g} x {weights.slo_s:g} s = {wait} ms; "
                       f"queueTimeLimit must be between 1 and {QUEUE_TIME_LIMIT_MAX_MS} ms")
    if "queue_time_limit" in picked and wait is not None and weights.drive == "ratio":
        r.note("queue_time_limit", "slo with drive: ratio: LTM queues only at connection limits, which this "
                                   "controller then does not set (only an engine's slots); queueTimeLimit is still kept")
    if "limit_headroom" in picked:
        r.note("limit_headroom", "no longer used: connection limits follow each engine's own queue "
               "(weights.limit_queue); ignored")
    if ("floor" in picked or "scale" in picked) and weights.floor > weights.scale:
        r.problem("floor", f"must be between 1 and scale ({weights.scale}), got {weights.floor}")
    return weights


def _read_engine_keys(root: Reader) -> tuple[tuple[str, EngineKeys], ...]:
    section = root.section("engines_metrics_keys")
    out: dict[str, EngineKeys] = {}
    for raw_name, value in section.data.items():
        r = Reader(root.ctx, value, section.at(raw_name))
        name = normalize_engine_type(str(raw_name))
        keys = _read_one_engine(r, name)
        if name in out:
            r.problem("", f"defined twice (as {name!r})")
        elif keys is not None:
            out[name] = keys
    return tuple(out.items())


def _read_one_engine(r: Reader, name: str) -> EngineKeys | None:
    """Upstream's variant entry. Metrics it does not name keep its base engine's defaults."""
    r.check_keys(spec_keys(_ENGINE_KEYS))
    kw = r.pick(_ENGINE_KEYS)
    base = specs.base_engine_type(name)
    if not r.data:
        r.problem("", "no metric names given (waiting_queue, cache_usage, running_req)")
    elif not base:
        r.problem(
            "",
            f"{name!r} must start with a built-in engine type ({', '.join(ENGINE_TYPES)}), "
            f"e.g. vllm_{name}: metrics it does not name keep that engine's defaults",
        )
    else:
        kw.setdefault("waiting_queue", specs.SPECS[base].waiting)
        return EngineKeys(**kw)
    return None


# pools ---------------------------------------------------------------------------------------


def _split_full_path(r: Reader, name: str) -> PoolRef | None:
    parts = name.strip("/").split("/")
    if len(parts) < 2 or "" in parts:
        r.problem("name", f"{name!r} is not a full path like /Partition/pool or /Partition/folder/pool")
        return None
    ref = PoolRef(name=parts[-1], partition=parts[0], sub_path="/".join(parts[1:-1]))
    for key, given in (("partition", ref.partition), ("sub_path", ref.sub_path)):
        explicit = r.get(key, folder(key == "sub_path"))
        if explicit is not None and explicit != given:
            r.problem(key, f"{explicit!r} conflicts with the full path {name!r}")
    return ref


def _pool_ref(r: Reader) -> PoolRef | None:
    name = r.get("name", string(), required=True)
    if name is None:
        return None
    name = name.strip()
    if name.startswith("/"):
        return _split_full_path(r, name)
    partition = r.get("partition", folder(False), "Common")
    sub_path = r.get("sub_path", folder(True), "")
    if "/" in name:
        r.problem("name", f"{name!r} contains '/': give a full path starting with '/' (e.g. /Common/{name})")
        return None
    return PoolRef(name=name, partition=partition, sub_path=sub_path)


def _read_metrics(pool: Reader) -> MetricsConfig:
    r, kw = _section(pool, "metrics", _METRICS, ("metric_pwd_env", "metric_pwd_file", "APIkey_file"))
    environ = r.ctx.environ
    if r.data.get("APIkey_file") is not None:  # a file, or a name under $CREDENTIALS_DIRECTORY (LoadCredential=)
        name = r.get("APIkey_file", string())
        if r.data.get("APIkey") is not None:
            r.problem("APIkey_file", "give APIkey or APIkey_file, not both")
        elif name:
            kw["api_key"], _ = _secret_file(r.ctx, r.at("APIkey_file"), _credential_path(name, environ))
    if r.data.get("metric_pwd_file") is not None:
        name = r.get("metric_pwd_file", string())
        if name:
            kw["password"], _ = _secret_file(r.ctx, r.at("metric_pwd_file"), _credential_path(name, environ))
        if name and r.data.get("metric_user") is None:
            r.problem("metric_pwd_file", "set, but metric_user is not (basic auth needs both)")
    if r.has("metric_pwd_env"):
        var = r.get("metric_pwd_env", string(null=True))
        if var and kw.get("api_key") and not environ.get(var):
            # The sideband sends Bearer when APIkey is set (core/metrics_collector.py at f254c3e, line 104): the
            # password is never sent, so its variable need not be set (the sideband only warns too).
            r.note("metric_pwd_env", "names a variable that is not set; not needed: APIkey is sent (Bearer)")
        elif var:
            kw["password"], _ = _secret_env(r.ctx, r.at("metric_pwd_env"), var)
        if var and r.data.get("metric_user") is None:
            r.problem("metric_pwd_env", "set, but metric_user is not (basic auth needs both)")
    if kw.get("api_key") and kw.get("user"):
        r.note("metric_user", "and APIkey are both set: the APIkey is sent as Bearer and basic auth is not, as the "
                              "sideband scheduler does")
    return MetricsConfig(**kw)


@dataclass(frozen=True)
class _PoolDefaults:
    modes: tuple[ModeConfig, ...]
    weights: WeightsConfig
    engines: tuple[str, ...]


def _read_fallback(pool: Reader) -> FallbackConfig:
    r, kw = _section(pool, "fallback", _FALLBACK)
    return FallbackConfig(**kw)


def _unsupported(r: Reader, ref: PoolRef | None) -> str | None:
    """Why this pool's engine type cannot be steered (XInference), else None."""
    raw = r.data.get("engine_type")
    why = UNSUPPORTED_ENGINES.get(normalize_engine_type(raw)) if isinstance(raw, str) else None
    if why is not None:
        r.warn("engine_type", f"{raw!r} (pool {ref.full_path if ref else '?'}): {why}")
    return why


def _read_pool(r: Reader, d: _PoolDefaults) -> PoolConfig | tuple[PoolRef, str] | None:
    r.check_keys(_POOL)
    ref = _pool_ref(r)
    why = _unsupported(r, ref)
    if why is not None:
        return (ref, why) if ref is not None else None
    if r.has("model_APIkey"):
        r.note("model_APIkey", "is used by the sideband scheduler for XInference pools only; ignored")
    engine = r.get("engine_type", choice(d.engines, normalize=normalize_engine_type), required=True)
    metrics = _read_metrics(r)
    by_name: dict[str, ModeConfig] = {}
    for m in d.modes:
        by_name.setdefault(m.name, m)
    mode = by_name.get(r.get("mode", choice(tuple(by_name), normalize=str.strip), ""), d.modes[0])
    weights = _read_weights(r.section("weights"), d.weights)
    fallback = _read_fallback(r)
    exclude = r.get("exclude", member_names(), ()) or ()
    if ref is None or engine is None:
        return None
    return PoolConfig(ref=ref, engine_type=engine, metrics=metrics, mode=mode, weights=weights, fallback=fallback,
                      exclude=exclude)


def _read_pools(root: Reader, d: _PoolDefaults) -> tuple[tuple[PoolConfig, ...], tuple[tuple[str, str], ...]]:
    """(the pools to steer, (full path, why not) of the pools of an unsupported engine type)."""
    if not root.has("pools"):
        root.problem("pools", "required (at least one pool)")
        return (), ()
    readers = root.items("pools")
    if root.data["pools"] is None or root.data["pools"] == []:
        root.problem("pools", "must list at least one pool")
    pools: list[PoolConfig] = []
    skipped: list[tuple[str, str]] = []
    first: dict[str, str] = {}  # pool full path -> key path that named it first
    for r in readers:
        pool = _read_pool(r, d)
        if pool is None:
            continue
        ref = pool[0] if isinstance(pool, tuple) else pool.ref
        path = ref.full_path
        if path in first:
            r.problem("name", f"duplicate of {first[path]} ({path})")
            continue
        first[path] = r.path
        if isinstance(pool, tuple):
            skipped.append((path, pool[1]))
        else:
            pools.append(pool)
    if skipped and not pools and readers:
        root.problem("pools", "no pool this controller can steer: " + "; ".join(f"{p}: {why}" for p, why in skipped))
    return tuple(pools), tuple(skipped)


def _read_telemetry(root: Reader) -> TelemetryConfig:
    """The `telemetry` section; host and port not given there come from F5LR_TELEMETRY_HOST / _PORT (a
    container listens on 0.0.0.0 for its probes without editing a sideband config file)."""
    r, kw = _section(root, "telemetry", _TELEMETRY)
    env = root.ctx.environ
    for key, var, conv in (("host", TELEMETRY_HOST_ENV, host_name()), ("port", TELEMETRY_PORT_ENV, integer(1, 65535))):
        if key in kw or key in r.data or not env.get(var):
            continue
        value: Any = env[var]
        try:
            kw[key] = conv(int(value) if key == "port" and value.isdigit() else value)
        except Invalid as bad:
            r.ctx.problem(f"environment variable {var}", str(bad))
    return TelemetryConfig(**kw)


# ---------------------------------------------------------------------------------------------
# entry points


def parse(data: Any, environ: Mapping[str, str] = os.environ, source: str = "") -> AppConfig:
    """Build an AppConfig from already-parsed YAML. Raises ConfigError listing every problem."""
    where = source or "config"
    if data is None:
        raise ConfigError(f"{where}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {kind_of(data)}")
    ctx = Context(environ, hidden=secret_values(data))
    root = Reader(ctx, data, "")
    root.check_keys(_TOP)
    log_level, reload_interval, instance = _read_global(root)
    f5 = _read_f5(root)
    scheduler = SchedulerConfig(**_section(root, "scheduler", _SCHEDULER)[1])
    modes = _read_modes(root)
    engine_keys = _read_engine_keys(root)
    weights = _read_weights(root.section("weights"), WeightsConfig())
    telemetry = _read_telemetry(root)
    engines = ENGINE_TYPES + tuple(name for name, _ in engine_keys if name not in ENGINE_TYPES)
    pools, unsupported = _read_pools(root, _PoolDefaults(modes, weights, engines))
    if ctx.problems:
        raise ConfigError(ctx.problems)
    cfg = AppConfig(
        f5=f5,
        pools=pools,
        scheduler=scheduler,
        modes=modes,
        engine_keys=engine_keys,
        telemetry=telemetry,
        log_level=log_level,
        instance=instance,
        source=source,
        notes=tuple(ctx.notes),
        warnings=tuple(ctx.warnings),
        reload_interval=reload_interval,
        unsupported=unsupported,
    )
    misfit = bounds.fit_problem(cfg, environ)
    if misfit:
        raise ConfigError(f"{', '.join(bounds.BOUND_KEYS)}: {misfit}")
    return cfg


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first}); a second one would replace it")


#: YAML aliases (`*name`) a config may use: enough to share a metrics or weights block between pools.
MAX_ALIASES = 100
#: Nodes the document may stand for once every alias is expanded (a real config has a few hundred):
#: an "alias bomb" (aliases of aliases, a billion nodes from a few lines) is refused before it is built.
MAX_EXPANDED_NODES = 100_000


class _TooLarge(yaml.YAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last), more
    than MAX_ALIASES aliases, and a document that expands to more than MAX_EXPANDED_NODES nodes."""

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise _TooLarge(f"line {line}: more than {MAX_ALIASES} YAML aliases (*name); write the values out")
        return super().compose_node(parent, index)

    def construct_document(self, node: yaml.Node) -> Any:  # the loaded document: any YAML value
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise _TooLarge(f"YAML aliases expand the document to more than {MAX_EXPANDED_NODES:,} nodes "
                            f"(an alias bomb?); write the values out")
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let the base class report it
                continue
            if first != key_node.start_mark.line + 1:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1, first)
        return super().construct_mapping(node, deep=deep)


_IN_PROGRESS = -1


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for with every alias expanded (each shared node counted once per use,
    computed once: linear in the composed graph however large the expansion)."""
    known = memo.get(id(node))
    if known == _IN_PROGRESS:
        raise _TooLarge(f"line {node.start_mark.line + 1}: a YAML alias refers to a node that contains it")
    if known is not None:
        return known
    memo[id(node)] = _IN_PROGRESS
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    total = min(total, MAX_EXPANDED_NODES + 1)  # stop growing the integer once over the cap
    memo[id(node)] = total
    return total


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except (_DuplicateKey, _TooLarge) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        # Only the problem text, never the snippet: the offending line may hold an APIkey.
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        what = "; ".join(s for s in (exc.context, exc.problem) if s)
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # e.g. a 5000-digit integer
        raise ConfigError(f"{path}: YAML could not be read ({type(exc).__name__})") from None


def load(path: str, environ: Mapping[str, str] = os.environ) -> AppConfig:
    """Read and validate the config file at `path`, resolving secrets from `environ` and files."""
    return parse(_read_yaml(path), environ, source=path)
