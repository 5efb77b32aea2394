"""Read the YAML config file into the frozen dataclasses of `controller.config`.

This is the only module that reads YAML. It accepts the sideband scheduler's config file
unchanged (its request-path-only keys become `AppConfig.notes`), adds this project's keys,
resolves secrets (environment variables, files, systemd credentials) and collects every
problem, each prefixed with its key path, into one `ConfigError`. Secret values never
appear in a message.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import string as _string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from controller import bounds, engines, hostnames, policy, tokenstore
from controller.config import (
    DRIVES,
    ENGINE_TYPES,
    WRITE_MODES,
    AppConfig,
    EngineKeys,
    F5Config,
    MetricsConfig,
    ModeConfig,
    PoolConfig,
    SchedulerConfig,
    TelemetryConfig,
    WeightsConfig,
)
from controller.errors import ConfigError
from controller.model import TARGET_FIELDS, PoolRef

__all__ = ["load", "parse", "normalize_engine_type", "LOG_LEVELS", "ENGINE_ALIASES"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENGINE_ALIASES = {
    "trt-llm": "trtllm",
    "tensorrt-llm": "trtllm",
    "trtllm-serve": "trtllm",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
}
DEFAULT_PASSWORD_ENV = "F5_PASSWORD"
CREDENTIAL_NAME = "f5-password"  # systemd: LoadCredential=f5-password:/etc/...

_UNUSED = "is not used by f5-llm-ratio"
_GLOBAL_NOTES = {
    "interval": f"{_UNUSED} (no config file polling: reload by signal); ignored",
    "api_port": f"{_UNUSED} (no request path); ignored",
    "api_host": f"{_UNUSED} (no request path); ignored",
}


# ---------------------------------------------------------------------------------------------
# value converters: each takes a YAML value and returns the typed value or raises _Bad


class _Bad(ValueError):
    """What is wrong with one value; the reader prefixes the key path."""


Conv = Callable[[Any], Any]
_MISSING = object()


def _kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (str, int, float)):
        return _clip(repr(value))
    return _kind(value)


def _bounds(lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None and not (lo_open or hi_open):
        return f"between {lo} and {hi}"
    parts = [f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []
    parts += [f"{'<' if hi_open else '<='} {hi}"] if hi is not None else []
    return " and ".join(parts)


def _check_range(v: float, lo: Any = None, hi: Any = None, lo_open: bool = False, hi_open: bool = False) -> None:
    low = lo is not None and (v <= lo if lo_open else v < lo)
    high = hi is not None and (v >= hi if hi_open else v > hi)
    if low or high:
        got = f"{v:g}" if isinstance(v, float) else _clip(str(v))
        raise _Bad(f"must be {_bounds(lo, hi, lo_open, hi_open)}, got {got}")


def integer(lo: int | None = None, hi: int | None = None, unit: str = "", null: bool = False) -> Conv:
    """Whole numbers; 3000.0 is accepted as 3000, true is not."""

    def conv(v: Any) -> int | None:
        if v is None and null:
            return None
        integral = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not integral:
            raise _Bad(f"expected an integer{unit}, got {_show(v)}")
        _check_range(int(v), lo, hi)
        return int(v)

    return conv


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    unit: str = "",
    null: bool = False,
) -> Conv:
    def conv(v: Any) -> float | None:
        if v is None and null:
            return None
        try:
            f = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        except OverflowError:
            f = math.nan
        if not math.isfinite(f):
            raise _Bad(f"expected a number{unit}, got {_show(v)}")
        _check_range(f, lo, hi, lo_open, hi_open)
        return f

    return conv


def boolean() -> Conv:
    def conv(v: Any) -> bool:
        if not isinstance(v, bool):
            raise _Bad(f"expected true or false, got {_show(v)}")
        return v

    return conv


def string(null: bool = False, secret: bool = False) -> Conv:
    """A non-empty string. Numbers are refused (YAML mangles e.g. 0123), so the user quotes them."""

    def conv(v: Any) -> str | None:
        if v is None and null:
            return None
        if not isinstance(v, str):
            hint = " (put it in quotes)" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            raise _Bad(f"expected a string{hint}, got {_kind(v) if secret else _show(v)}")
        if not v.strip():
            raise _Bad("must not be empty")
        return v

    return conv


def choice(options: Sequence[str], normalize: Callable[[str], str] = str.lower) -> Conv:
    def conv(v: Any) -> str:
        s = string()(v)
        if normalize(s.strip()) not in options:
            raise _Bad(f"{s!r} is not one of {', '.join(options)}")
        return normalize(s.strip())

    return conv


def url_path() -> Conv:
    def conv(v: Any) -> str:
        s = string()(v)
        if not s.startswith("/"):
            raise _Bad(f"must start with '/', got {s!r}")
        return s

    return conv


def host_name() -> Conv:
    def conv(v: Any) -> str:
        s = string()(v).strip()
        if "://" in s or "/" in s:
            raise _Bad(f"expected a host name or address, not a URL, got {s!r}")
        return s

    return conv


def management_hosts() -> Conv:
    """f5.host: one management address, or a list of the device group's units (HA pairs)."""

    def conv(v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise _Bad("an empty list; give the management address of each unit")
        out: list[str] = []
        for i, item in enumerate(items):
            where = f"[{i}] " if isinstance(v, list) else ""
            if not isinstance(item, str):
                raise _Bad(f"{where}expected a host name or IP address as a string, got {_show(item)}")
            why = hostnames.problem(item.strip())
            if why:
                raise _Bad(f"{where}{why}")
            if hostnames.bare(item.strip()).lower() in (h.lower() for h in out):
                raise _Bad(f"{where}{item!r} is listed twice")
            out.append(hostnames.bare(item.strip()))
        return tuple(out)

    return conv


_FORMATTER = _string.Formatter()


def scrape_target() -> Conv:
    """metrics.target: `host:port` with {name}, {node}, {address}, {port} placeholders; no scheme, no path."""

    def conv(v: Any) -> str | None:
        s = string(null=True)(v)
        if s is None:
            return None
        s = s.strip()
        try:
            names = {f for _, f, _, _ in _FORMATTER.parse(s) if f is not None}
        except ValueError as exc:
            raise _Bad(f"{s!r}: {exc}") from None
        unknown = sorted(names - set(TARGET_FIELDS))
        if unknown:
            raise _Bad(f"{s!r}: unknown placeholder(s) {', '.join(unknown)}; use {{{'}, {'.join(TARGET_FIELDS)}}}")
        sample = s.format(name="gpu-node-1:8000", node="gpu-node-1", address="10.0.0.1", port=8000)
        host, _, port = sample.rpartition(":")
        if "/" in sample or not port.isdigit() or not 0 < int(port) < 65536 or hostnames.problem(host):
            raise _Bad(f"{s!r} must give host:port (e.g. \"{{address}}:9400\"); the scheme and path are "
                       "metrics.schema and metrics.path")
        return s

    return conv


def folder(allow_nested: bool) -> Conv:
    """A partition (one name) or a sub_path (names joined by '/')."""

    def conv(v: Any) -> str:
        s = string()(v).strip().strip("/")
        if "" in s.split("/") or (not allow_nested and "/" in s):
            raise _Bad(f"{v!r} is not a valid {'folder path' if allow_nested else 'partition name'}")
        return s

    return conv


def metric_key() -> Conv:
    """`name` or `name{label="value",...}`, as controller.engines reads them."""

    def conv(v: Any) -> str:
        s = string()(v).strip()
        try:
            engines.parse_key(s)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
        return s

    return conv


def verify_tls(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"expected true, false or a CA bundle path, got {_show(v)}")
    if v.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        raise _Bad(f"expected true or false without quotes, got the string {v!r}")
    path = os.path.expanduser(v)
    if not os.path.exists(path):
        raise _Bad(f"CA bundle {path} does not exist")
    return path


def normalize_engine_type(name: str) -> str:
    """'vLLM' -> 'vllm', 'TensorRT-LLM' -> 'trtllm', 'llama.cpp' -> 'llamacpp'."""
    low = name.strip().lower()
    return ENGINE_ALIASES.get(low, low)


# ---------------------------------------------------------------------------------------------
# the reader: typed access to one mapping, problems recorded with key paths


#: A key whose value may be a secret (case-insensitive; "passwrd" and other typos of password included).
#: A config error never repeats the value given under such a key, whatever the key's spelling.
SECRET_KEY = re.compile(r"pass|pwd|token|key(?!s)|secret|credential", re.IGNORECASE)  # not "keys": engines_metrics_keys
#: Hidden values shorter than this are not scrubbed from messages (they would mangle unrelated text).
_MIN_HIDDEN = 4
HIDDEN = "(value not shown)"


def secret_values(data: Any, inherited: bool = False) -> tuple[str, ...]:
    """Every scalar given under a secret-looking key (SECRET_KEY), at any depth of the raw YAML."""
    out: list[str] = []

    def walk(value: Any, hidden: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, hidden or bool(SECRET_KEY.search(str(k))))
        elif isinstance(value, list):
            for v in value:
                walk(v, hidden)
        elif hidden and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out.append(str(value))

    walk(data, inherited)
    return tuple(out)


def scrub(message: str, hidden: Sequence[str]) -> str:
    """`message` without any of the `hidden` values (nor the clipped form _show gives a long one)."""
    forms = set()
    for h in hidden:
        if len(h) >= _MIN_HIDDEN:
            forms.update({h, repr(h), _clip(repr(h))[:-3] if len(repr(h)) > 40 else repr(h)})
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form, HIDDEN)
    return message


@dataclass
class _Ctx:
    environ: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hidden: tuple[str, ...] = ()  # values under secret-looking keys: never repeated in a problem

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {scrub(message, self.hidden)}")


Spec = Sequence[tuple]  # (yaml key, converter) or (yaml key, converter, dataclass attribute)


def _keys(spec: Spec) -> tuple[str, ...]:
    return tuple(entry[0] for entry in spec)


class _Reader:
    """One YAML mapping at key path `path`. A missing or null mapping reads as empty."""

    def __init__(self, ctx: _Ctx, data: Any, path: str):
        self.ctx = ctx
        self.path = path
        if data is not None and not isinstance(data, dict):
            ctx.problem(path, f"expected a mapping, got {_kind(data)}")
        self.data: dict = data if isinstance(data, dict) else {}

    def at(self, key: Any) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def problem(self, key: str, message: str) -> None:
        self.ctx.problem(self.at(key) if key else self.path, message)

    def note(self, key: str, message: str) -> None:
        self.ctx.notes.append(f"{self.at(key)} {message}")

    def get(self, key: str, conv: Conv, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                self.problem(key, "required")
            return default
        try:
            return conv(self.data[key])
        except _Bad as bad:
            self.problem(key, str(bad))
            return default

    def pick(self, spec: Spec) -> dict:
        """{attribute: value} for every key of `spec` present and valid, for dataclass(**...)."""
        out = {}
        for key, conv, *attr in spec:
            if key in self.data:
                value = self.get(key, conv, _MISSING)
                if value is not _MISSING:
                    out[attr[0] if attr else key] = value
        return out

    def section(self, key: str) -> _Reader:
        return _Reader(self.ctx, self.data.get(key), self.at(key))

    def items(self, key: str) -> list[_Reader]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            path = f"{self.at(key)}[{i}]"
            if isinstance(item, dict):
                out.append(_Reader(self.ctx, item, path))
            else:
                self.ctx.problem(path, f"expected a mapping, got {_kind(item)}")
        return out

    def check_keys(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            self.problem(str(key), f"unknown key ({hint})")


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
    ("write_mode", choice(WRITE_MODES)),
    ("write_concurrency", integer(1)),
    ("max_writes_per_minute", integer(1)),
    ("verify_tls", verify_tls),
)
_F5_EXTRA = ("password_env", "password_file", "password")

_SCHEDULER = (
    ("pool_fetch_interval", number(0, lo_open=True, unit=" (seconds)")),
    ("metrics_fetch_interval", integer(100, unit=" (milliseconds)"), "metrics_fetch_interval_ms"),
    ("scrape_concurrency", integer(1)),
    ("tick_deadline", number(0, lo_open=True, unit=" (seconds)", null=True)),
)

_MODE = (
    ("name", string()),
    ("w_a", number(0)),
    ("w_b", number(0)),
    ("w_g", number()),
)

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
    ("describe", boolean()),
)

_METRICS = (
    ("schema", choice(("http", "https"))),
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

_GLOBAL = ("log_level", "log_debug", *_GLOBAL_NOTES)
_POOL = ("name", "partition", "sub_path", "engine_type", "metrics", "mode", "weights", "fallback")
_TOP = ("global", "f5", "scheduler", "modes", "pools", "engines_metrics_keys", "weights", "telemetry")


def _section(parent: _Reader, key: str, spec: Spec, extra: Sequence[str] = ()) -> tuple[_Reader, dict]:
    r = parent.section(key)
    r.check_keys(_keys(spec) + tuple(extra))
    return r, r.pick(spec)


def _read_global(root: _Reader) -> str:
    r = root.section("global")
    r.check_keys(_GLOBAL)
    for key, message in _GLOBAL_NOTES.items():
        if r.has(key):
            r.note(key, message)
    debug = r.get("log_debug", boolean(), False)
    if r.has("log_level"):
        return r.get("log_level", choice(LOG_LEVELS, normalize=str.upper), "INFO")
    return "DEBUG" if debug else "INFO"


# secrets -------------------------------------------------------------------------------------


def _strip_newline(text: str) -> str:
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            return text[: -len(end)]
    return text


#: In place of a file name or variable name the user gave under a secret key: it may be the secret itself.
_NAMED = "the {} named here (the name is not shown: a value under this key may be the secret itself)"


def _secret_file(ctx: _Ctx, path_key: str, path: str, given: bool = True) -> tuple[str, str]:
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


def _secret_env(ctx: _Ctx, path_key: str, name: str, why: str = "", given: bool = True) -> tuple[str, str]:
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


def _f5_password(r: _Reader) -> tuple[str, str]:
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


def _read_f5(root: _Reader) -> F5Config:
    r, kw = _section(root, "f5", _F5, _F5_EXTRA)
    if not r.has("host"):
        r.problem("host", "required (the BIG-IP management address)")
    password, source = _f5_password(r)
    kw["state_dir"] = tokenstore.state_dir(kw.get("state_dir", ""), r.ctx.environ)
    units: tuple[str, ...] = kw.pop("host", ()) or ("",)
    return F5Config(host=units[0], hosts=units if len(units) > 1 else (), **kw, password=password,
                    password_source=source)


# modes, weights, engines ---------------------------------------------------------------------


def _read_mode(r: _Reader) -> ModeConfig:
    r.check_keys(_keys(_MODE))
    fields = r.pick(_MODE)
    fields.setdefault("name", "s1")  # the seed's default for a listed mode without a name
    if fields["name"] not in policy.POLICIES:
        r.problem("name", f"{fields['name']!r} is not one of {', '.join(policy.POLICIES)}")
    mode = ModeConfig(**fields)
    if mode.w_a == 0 and mode.w_b == 0:
        r.problem("", "w_a and w_b are both 0; at least one must be > 0")
    if mode.w_g:
        r.note("w_g", f"{_UNUSED} (reserved in the sideband scheduler too); ignored")
    return mode


def _read_modes(root: _Reader) -> tuple[ModeConfig, ...]:
    if not root.has("modes"):
        return (ModeConfig(),)
    readers = root.items("modes")
    modes = tuple(_read_mode(r) for r in readers)
    if root.data["modes"] == []:
        root.problem("modes", "must list at least one mode")
    seen: set[str] = set()
    for r, mode in zip(readers, modes, strict=True):
        if mode.name in seen:
            r.problem("name", f"duplicate mode name {mode.name!r}")
        seen.add(mode.name)
    return modes or (ModeConfig(),)


def _read_weights(r: _Reader, base: WeightsConfig) -> WeightsConfig:
    r.check_keys(_keys(_WEIGHTS))
    picked = r.pick(_WEIGHTS)
    weights = replace(base, **picked)
    if ("floor" in picked or "scale" in picked) and weights.floor > weights.scale:
        r.problem("floor", f"must be between 1 and scale ({weights.scale}), got {weights.floor}")
    return weights


def _read_engine_keys(root: _Reader) -> tuple[tuple[str, EngineKeys], ...]:
    section = root.section("engines_metrics_keys")
    out: dict[str, EngineKeys] = {}
    for raw_name, value in section.data.items():
        r = _Reader(root.ctx, value, section.at(raw_name))
        name = normalize_engine_type(str(raw_name))
        keys = _read_one_engine(r, name)
        if name in out:
            r.problem("", f"defined twice (as {name!r})")
        elif keys is not None:
            out[name] = keys
    return tuple(out.items())


def _read_one_engine(r: _Reader, name: str) -> EngineKeys | None:
    """Upstream's variant entry. Metrics it does not name keep its base engine's defaults."""
    r.check_keys(_keys(_ENGINE_KEYS))
    kw = r.pick(_ENGINE_KEYS)
    base = engines.base_engine_type(name)
    if not r.data:
        r.problem("", "no metric names given (waiting_queue, cache_usage, running_req)")
    elif not base:
        r.problem(
            "",
            f"{name!r} must start with a built-in engine type ({', '.join(ENGINE_TYPES)}), "
            f"e.g. vllm_{name}: metrics it does not name keep that engine's defaults",
        )
    else:
        kw.setdefault("waiting_queue", engines.SPECS[base].waiting)
        return EngineKeys(**kw)
    return None


# pools ---------------------------------------------------------------------------------------


def _split_full_path(r: _Reader, name: str) -> PoolRef | None:
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


def _pool_ref(r: _Reader) -> PoolRef | None:
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


def _read_metrics(pool: _Reader) -> MetricsConfig:
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
        if var:
            kw["password"], _ = _secret_env(r.ctx, r.at("metric_pwd_env"), var)
        if var and r.data.get("metric_user") is None:
            r.problem("metric_pwd_env", "set, but metric_user is not (basic auth needs both)")
    return MetricsConfig(**kw)


@dataclass(frozen=True)
class _PoolDefaults:
    modes: tuple[ModeConfig, ...]
    weights: WeightsConfig
    engines: tuple[str, ...]


def _read_pool(r: _Reader, d: _PoolDefaults) -> PoolConfig | None:
    r.check_keys(_POOL)
    ref = _pool_ref(r)
    engine = r.get("engine_type", choice(d.engines, normalize=normalize_engine_type), required=True)
    metrics = _read_metrics(r)
    by_name = {m.name: m for m in d.modes}
    mode = by_name.get(r.get("mode", choice(tuple(by_name), normalize=str.strip), ""), d.modes[0])
    weights = _read_weights(r.section("weights"), d.weights)
    if r.has("fallback"):
        r.note("fallback", f"{_UNUSED} (no request path: BIG-IP keeps balancing on its own); ignored")
    if ref is None or engine is None:
        return None
    return PoolConfig(ref=ref, engine_type=engine, metrics=metrics, mode=mode, weights=weights)


def _read_pools(root: _Reader, d: _PoolDefaults) -> tuple[PoolConfig, ...]:
    if not root.has("pools"):
        root.problem("pools", "required (at least one pool)")
        return ()
    readers = root.items("pools")
    if root.data["pools"] is None or root.data["pools"] == []:
        root.problem("pools", "must list at least one pool")
    pools: list[PoolConfig] = []
    first: dict[str, str] = {}  # pool full path -> key path that named it first
    for r in readers:
        pool = _read_pool(r, d)
        if pool is None:
            continue
        path = pool.ref.full_path
        if path in first:
            r.problem("name", f"duplicate of {first[path]} ({path})")
            continue
        first[path] = r.path
        pools.append(pool)
    return tuple(pools)


# ---------------------------------------------------------------------------------------------
# entry points


def parse(data: Any, environ: Mapping[str, str] = os.environ, source: str = "") -> AppConfig:
    """Build an AppConfig from already-parsed YAML. Raises ConfigError listing every problem."""
    where = source or "config"
    if data is None:
        raise ConfigError(f"{where}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {_kind(data)}")
    ctx = _Ctx(environ, hidden=secret_values(data))
    root = _Reader(ctx, data, "")
    root.check_keys(_TOP)
    log_level = _read_global(root)
    f5 = _read_f5(root)
    scheduler = SchedulerConfig(**_section(root, "scheduler", _SCHEDULER)[1])
    modes = _read_modes(root)
    engine_keys = _read_engine_keys(root)
    weights = _read_weights(root.section("weights"), WeightsConfig())
    telemetry = TelemetryConfig(**_section(root, "telemetry", _TELEMETRY)[1])
    engines = ENGINE_TYPES + tuple(name for name, _ in engine_keys if name not in ENGINE_TYPES)
    pools = _read_pools(root, _PoolDefaults(modes, weights, engines))
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
        source=source,
        notes=tuple(ctx.notes),
    )
    misfit = bounds.fit_problem(cfg, environ)
    if misfit:
        raise ConfigError(f"{', '.join(bounds.BOUND_KEYS)}: {misfit}")
    return cfg


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first}); a second one would replace it")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
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
    except _DuplicateKey as exc:
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
