"""The config reader's mini-language: value converters and a typed reader over one YAML mapping.

`controller.config.yamlfile` declares the schema with these (each section a table of (key, converter));
this module knows nothing of f5-llm-ratio's keys. A converter takes a YAML value and returns the typed
value or raises `Invalid` with a message that never quotes a secret; a `Reader` records every problem
with its key path so that all of them are reported at once.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import string as _string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config import hostnames
from controller.engines import specs
from controller.model import TARGET_FIELDS

ENGINE_ALIASES = {
    "trt-llm": "trtllm",
    "tensorrt-llm": "trtllm",
    "trtllm-serve": "trtllm",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
}


# ---------------------------------------------------------------------------------------------
# value converters: each takes a YAML value and returns the typed value or raises Invalid


class Invalid(ValueError):
    """What is wrong with one value; the reader prefixes the key path."""


Conv = Callable[[Any], Any]
MISSING = object()


def kind_of(value: Any) -> str:
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
    return kind_of(value)


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None and not (lo_open or hi_open):
        return f"between {lo} and {hi}"
    parts = [f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []
    parts += [f"{'<' if hi_open else '<='} {hi}"] if hi is not None else []
    return " and ".join(parts)


def _check_range(v: float, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False) -> None:
    low = lo is not None and (v <= lo if lo_open else v < lo)
    high = hi is not None and (v >= hi if hi_open else v > hi)
    if low or high:
        got = f"{v:g}" if isinstance(v, float) else _clip(str(v))
        raise Invalid(f"must be {_bounds(lo, hi, lo_open, hi_open)}, got {got}")


def integer(lo: int | None = None, hi: int | None = None, unit: str = "", null: bool = False) -> Conv:
    """Whole numbers; 3000.0 is accepted as 3000, true is not."""

    def conv(v: Any) -> int | None:
        if v is None and null:
            return None
        integral = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not integral:
            raise Invalid(f"expected an integer{unit}, got {_show(v)}")
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
            raise Invalid(f"expected a number{unit}, got {_show(v)}")
        _check_range(f, lo, hi, lo_open, hi_open)
        return f

    return conv


def boolean() -> Conv:
    def conv(v: Any) -> bool:
        if not isinstance(v, bool):
            raise Invalid(f"expected true or false, got {_show(v)}")
        return v

    return conv


def text(v: Any, secret: bool = False) -> str:
    """`v` as a non-empty string, else Invalid. Numbers are refused (YAML mangles e.g. 0123), so the user
    quotes them."""
    if not isinstance(v, str):
        hint = " (put it in quotes)" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        raise Invalid(f"expected a string{hint}, got {kind_of(v) if secret else _show(v)}")
    if not v.strip():
        raise Invalid("must not be empty")
    return v


def string(null: bool = False, secret: bool = False) -> Conv:
    """A non-empty string (see `text`); None too when `null`."""

    def conv(v: Any) -> str | None:
        if v is None and null:
            return None
        return text(v, secret)

    return conv


def member_names() -> Conv:
    """A list of pool member names (`10.0.0.1:8000`, `gpu-node-1:8000`, `2001:db8::1.8000`) or full paths
    (`/Common/10.0.0.1:8000`), each with a port; a single name is taken as a list of one."""

    def conv(v: Any) -> tuple[str, ...]:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            raise Invalid(f"expected a list of member names, got {kind_of(v)}")
        out = []
        for i, item in enumerate(items):
            try:
                name = text(item).strip()
            except Invalid as exc:
                raise Invalid(f"item {i}: {exc}") from None
            tail = name.rsplit("/", 1)[-1]
            sep = "." if tail.count(":") > 1 else ":"
            if not tail.rpartition(sep)[2].isdigit():
                raise Invalid(f"item {i}: {_clip(name)!r} is not a member name with a port, like 10.0.0.1:8000")
            out.append(name)
        return tuple(dict.fromkeys(out))

    return conv


def choice(options: Sequence[str], normalize: Callable[[str], str] = str.lower) -> Conv:
    def conv(v: Any) -> str:
        s = text(v)
        if normalize(s.strip()) not in options:
            raise Invalid(f"{s!r} is not one of {', '.join(options)}")
        return normalize(s.strip())

    return conv


def url_path() -> Conv:
    def conv(v: Any) -> str:
        s = text(v)
        if not s.startswith("/"):
            raise Invalid(f"must start with '/', got {s!r}")
        return s

    return conv


def instance_name() -> Conv:
    """global.instance: this controller's id in GUI notes (`f5-llm-ratio[<id>]:`), so letters, digits,
    '.', '_' and '-' only, at most 40 characters."""

    def conv(v: Any) -> str:
        s = text(v).strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", s):
            raise Invalid(f"expected 1-40 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {s!r}")
        return s

    return conv


def host_name() -> Conv:
    def conv(v: Any) -> str:
        s = text(v).strip()
        if "://" in s or "/" in s:
            raise Invalid(f"expected a host name or address, not a URL, got {s!r}")
        return s

    return conv


def management_hosts() -> Conv:
    """f5.host: one management address, or a list of the device group's units (HA pairs)."""

    def conv(v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise Invalid("an empty list; give the management address of each unit")
        out: list[str] = []
        for i, item in enumerate(items):
            where = f"[{i}] " if isinstance(v, list) else ""
            if not isinstance(item, str):
                raise Invalid(f"{where}expected a host name or IP address as a string, got {_show(item)}")
            why = hostnames.problem(item.strip())
            if why:
                raise Invalid(f"{where}{why}")
            if hostnames.bare(item.strip()).lower() in (h.lower() for h in out):
                raise Invalid(f"{where}{item!r} is listed twice")
            out.append(hostnames.bare(item.strip()))
        return tuple(out)

    return conv


_FORMATTER = _string.Formatter()


def scrape_target() -> Conv:
    """metrics.target: `host:port` with {name}, {node}, {address}, {port}, {rd} placeholders; no scheme, no path."""

    def conv(v: Any) -> str | None:
        if v is None:
            return None
        s = text(v).strip()
        try:
            names = {f for _, f, _, _ in _FORMATTER.parse(s) if f is not None}
        except ValueError as exc:
            raise Invalid(f"{s!r}: {exc}") from None
        unknown = sorted(names - set(TARGET_FIELDS))
        if unknown:
            raise Invalid(f"{s!r}: unknown placeholder(s) {', '.join(unknown)}; use {{{'}, {'.join(TARGET_FIELDS)}}}")
        sample = s.format(name="gpu-node-1:8000", node="gpu-node-1", address="10.0.0.1", port=8000, rd="2")
        host, _, port = sample.rpartition(":")
        if "/" in sample or not port.isdigit() or not 0 < int(port) < 65536 or hostnames.problem(host):
            raise Invalid(f"{s!r} must give host:port (e.g. \"{{address}}:9400\"); the scheme and path are "
                       "metrics.schema and metrics.path")
        return s

    return conv


def folder(allow_nested: bool) -> Conv:
    """A partition (one name) or a sub_path (names joined by '/')."""

    def conv(v: Any) -> str:
        s = text(v).strip().strip("/")
        if "" in s.split("/") or (not allow_nested and "/" in s):
            raise Invalid(f"{v!r} is not a valid {'folder path' if allow_nested else 'partition name'}")
        return s

    return conv


def metric_key() -> Conv:
    """`name` or `name{label="value",...}`, as controller.engines.specs reads them."""

    def conv(v: Any) -> str:
        s = text(v).strip()
        try:
            specs.parse_key(s)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return s

    return conv


def verify_tls(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if not isinstance(v, str) or not v.strip():
        raise Invalid(f"expected true, false or a CA bundle path, got {_show(v)}")
    if v.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        raise Invalid(f"expected true or false without quotes, got the string {v!r}")
    path = os.path.expanduser(v)
    if not os.path.exists(path):
        raise Invalid(f"CA bundle {path} does not exist")
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
class Context:
    environ: Mapping[str, str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # accepted, but not as written: WARN in `check`
    hidden: tuple[str, ...] = ()  # values under secret-looking keys: never repeated in a problem

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top level)'}: {scrub(message, self.hidden)}")


Spec = Sequence[tuple[str, Conv] | tuple[str, Conv, str]]  # (yaml key, converter[, dataclass attribute])


def spec_keys(spec: Spec) -> tuple[str, ...]:
    return tuple(entry[0] for entry in spec)


class Reader:
    """One YAML mapping at key path `path`. A missing or null mapping reads as empty."""

    def __init__(self, ctx: Context, data: Any, path: str):
        self.ctx = ctx
        self.path = path
        if data is not None and not isinstance(data, dict):
            ctx.problem(path, f"expected a mapping, got {kind_of(data)}")
        self.data: dict[object, Any] = data if isinstance(data, dict) else {}  # a YAML mapping, as loaded

    def at(self, key: Any) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def problem(self, key: str, message: str) -> None:
        self.ctx.problem(self.at(key) if key else self.path, message)

    def note(self, key: str, message: str) -> None:
        self.ctx.notes.append(f"{self.at(key)} {message}")

    def warn(self, key: str, message: str) -> None:
        self.ctx.warnings.append(f"{self.at(key)}: {scrub(message, self.ctx.hidden)}")

    def get(self, key: str, conv: Conv, default: Any = None, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                self.problem(key, "required")
            return default
        try:
            return conv(self.data[key])
        except Invalid as bad:
            self.problem(key, str(bad))
            return default

    def pick(self, spec: Spec) -> dict[str, Any]:
        """{attribute: value} for every key of `spec` present and valid, for dataclass(**...)."""
        out: dict[str, Any] = {}
        for key, conv, *attr in spec:
            if key in self.data:
                value = self.get(key, conv, MISSING)
                if value is not MISSING:
                    out[attr[0] if attr else key] = value
        return out

    def section(self, key: str) -> Reader:
        return Reader(self.ctx, self.data.get(key), self.at(key))

    def items(self, key: str) -> list[Reader]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {kind_of(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            path = f"{self.at(key)}[{i}]"
            if isinstance(item, dict):
                out.append(Reader(self.ctx, item, path))
            else:
                self.ctx.problem(path, f"expected a mapping, got {kind_of(item)}")
        return out

    def check_keys(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            self.problem(str(key), f"unknown key ({hint})")
