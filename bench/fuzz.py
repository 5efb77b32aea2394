"""Fuzz the untrusted-input parsers for a fixed time: nothing may crash, hang or leak a secret.

    python bench/fuzz.py                 # 300 s (5 minutes), split across the targets round-robin
    python bench/fuzz.py --seconds 30    # a quick run
    python bench/fuzz.py --target select --seconds 60

Targets (hypothesis-driven, no atheris needed):

* `select`   exposition.select(text, names): page text from a line grammar (valid, near-valid and
             broken sample lines, comments, NaN/Inf, odd whitespace, escapes) mixed with raw noise.
             Allowed outcome: a result keyed by exactly `names` holding (dict, float) pairs, or
             MetricsError("not-prometheus"). Anything else is a crash.
* `extract`  specs.extract(text, engine_type): the same pages, plus pages built around the real
             metric names of every engine. Allowed: a Sample whose figures are finite and >= 0 with
             kv_usage in [0, 1], or MetricsError with reason not-prometheus / missing-metric / bad-value.
* `config`   yamlfile.parse(data) on a valid base config mutated at random (keys removed, values
             replaced by any YAML value, unknown keys added) and on arbitrary YAML documents, and
             yamlfile.load(path) on random text written to a file. Allowed: an AppConfig, or a
             ConfigError whose message does not contain the password or API key.

Each example also has a wall-time ceiling (a parser that backtracks badly on a hostile line shows
up as a hang, not a crash): an example slower than --slow seconds is reported as a failure.

Exit status 0 when nothing failed. The summary (examples per target, failures with the shrunk
input) is printed as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/fuzz.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from controller.config import yamlfile
from controller.engines import exposition, specs
from controller.config.schema import AppConfig
from controller.errors import ConfigError, MetricsError
from controller.model import Sample

PASSWORD = "fuzz-Secret-Pw-4f9Qz"
API_KEY = "fuzz-ApiKey-Zx81"
ENVIRON = {"F5_PASSWORD": PASSWORD, "API_KEY_ENV": API_KEY}

# -- page grammar -----------------------------------------------------------------------------

NAMES = sorted({
    *(s.waiting.split("{")[0] for s in specs.SPECS.values()),
    *((s.running or "x").split("{")[0] for s in specs.SPECS.values()),
    *(k.split("{")[0] for s in specs.SPECS.values() for k in s.kv),
    specs.VLLM_CACHE_INFO, "process_cpu_seconds_total", "vllm:num_requests_waiting_by_reason",
})
LABEL_NAMES = ["model_name", "engine", "request_type", "kv_cache_block_type", "le", "kv_cache_max_concurrency",
               "__name__", "a", "_"]
VALUES = ["0", "1", "1.5", "-1", "NaN", "nan", "+Inf", "-Inf", "Inf", "1e309", "1e-320", "0x10", "1_000", "",
          "abc", "0.0", "17", "3.4e38", " 2", "1 1700000000000", "1 ts", "\t4"]

label_value = st.one_of(st.sampled_from(["", "x", "0.93", "1024", "a\\\"b", "line\\nbreak", "\\\\", "{", "}"]),
                        st.text(max_size=12))
label = st.builds(lambda k, v, q: f'{k}={q}{v}{q}', st.one_of(st.sampled_from(LABEL_NAMES), st.text(max_size=5)),
                  label_value, st.sampled_from(['"', '"', "'", ""]))
labels = st.one_of(
    st.just(""),
    st.lists(label, max_size=4).map(lambda ls: "{" + ",".join(ls) + "}"),
    st.lists(label, max_size=3).map(lambda ls: "{" + ", ".join(ls) + ",}"),
    st.sampled_from(["{", "}", "{}", "{,}", '{a="1"', '{a="1"}}', "{ }"]),
)
name = st.one_of(st.sampled_from(NAMES), st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True))
sample_line = st.builds(
    lambda ind, n, lb, sep, v, tail: f"{ind}{n}{lb}{sep}{v}{tail}",
    st.sampled_from(["", "", " ", "\t"]), name, labels, st.sampled_from([" ", " ", "\t", "  ", ""]),
    st.one_of(st.sampled_from(VALUES), st.floats(allow_nan=True, allow_infinity=True).map(repr)),
    st.sampled_from(["", "", " 1700000000", " # {trace_id=\"x\"} 1", "\r", " extra"]),
)
comment_line = st.builds(lambda kind, n, rest: f"# {kind} {n} {rest}", st.sampled_from(["HELP", "TYPE", "EOF", "x"]),
                         name, st.sampled_from(["gauge", "counter", "histogram", "help text", ""]))
line = st.one_of(sample_line, sample_line, comment_line, st.text(max_size=40), st.just(""))
page = st.one_of(
    st.lists(line, max_size=30).map("\n".join),
    st.text(max_size=400),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")),
    st.sampled_from(["<html><title>x</title></html>", "{\"a\": 1}", "[]", "", "\x00" * 10, "# HELP\n"]),
)


def fixture_pages() -> list[str]:
    """The shared real-engine pages, when present: mutations of real pages find more than noise."""
    root = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "engines"
    return [p.read_text() for p in sorted(root.glob("*.txt"))] if root.is_dir() else []


REAL = fixture_pages()


@st.composite
def mutated_real(draw) -> str:
    if not REAL:
        return draw(page)
    lines = draw(st.sampled_from(REAL)).splitlines()
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["drop", "replace", "insert", "dup"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "drop" and lines:
            del lines[i]
        elif op == "replace" and lines:
            lines[i] = draw(line)
        elif op == "insert":
            lines.insert(i, draw(line))
        elif lines:
            lines.insert(i, lines[i])
    return "\n".join(lines)


any_page = st.one_of(page, page, mutated_real())

# -- config grammar ---------------------------------------------------------------------------

yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=12), st.sampled_from(["", "0", "-1", "null", "1e400", "ratio", "vllm"]))
yaml_value = st.recursive(yaml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)),
    max_leaves=12)


def base_config() -> dict:
    return {
        "global": {"interval": 5, "log_level": "INFO"},
        "f5": {"host": "bigip.example", "port": 443, "username": "admin", "password_env": "F5_PASSWORD",
               "verify_tls": True, "timeout": 5, "write_mode": "patch"},
        "scheduler": {"pool_fetch_interval": 10, "metrics_fetch_interval": 1000, "tick_deadline": None},
        "modes": [{"name": "s1", "w_a": 0.8, "w_b": 0.2}],
        "weights": {"scale": 100, "floor": 10, "max_floor_share": 0.5},
        "engines_metrics_keys": {"vllm_ascend": {"waiting_queue": "vllm:num_requests_waiting"}},
        "pools": [{"name": "llm", "partition": "Common", "engine_type": "vllm",
                   "metrics": {"schema": "http", "port": None, "path": "/metrics", "timeout": 1,
                               "APIkey": API_KEY, "metric_user": "u", "metric_pwd_env": "F5_PASSWORD"},
                   "weights": {"drive": "both", "max_connections": 8}}],
        "telemetry": {"enabled": False},
    }


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_config(draw) -> dict:
    cfg = base_config()
    for _ in range(draw(st.integers(1, 5))):
        paths = [p for p in _paths(cfg) if p]
        path = draw(st.sampled_from(paths))
        parent = cfg
        try:
            for key in path[:-1]:
                parent = parent[key]
            op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if op == "delete":
                del parent[path[-1]]
            elif op == "add" and isinstance(parent, dict):
                parent[draw(st.one_of(st.text(max_size=8), st.sampled_from(["APIkey", "fallback", "sub_path"])))] = draw(yaml_value)
            else:
                parent[path[-1]] = draw(yaml_value)
        except (KeyError, IndexError, TypeError):
            continue
    return cfg


# -- the properties ---------------------------------------------------------------------------


class Slow(AssertionError):
    pass


def _timed(limit: float):
    def wrap(fn):
        def run(*args, **kwargs):
            started = time.perf_counter()
            out = fn(*args, **kwargs)
            took = time.perf_counter() - started
            if took > limit:
                raise Slow(f"one example took {took:.2f}s (> {limit}s)")
            return out
        return run
    return wrap


def prop_select(text: str, names: list[str]) -> None:
    try:
        out = exposition.select(text, names)
    except MetricsError as exc:
        assert exc.reason == "not-prometheus", exc.reason
        return
    assert set(out) == set(names)
    for series in out.values():
        for lbls, value in series:
            assert isinstance(lbls, dict) and isinstance(value, float)


def prop_extract(text: str, engine_type: str) -> None:
    try:
        s = specs.extract(text, engine_type)
    except MetricsError as exc:
        assert exc.reason in ("not-prometheus", "missing-metric", "bad-value"), exc.reason
        return
    assert isinstance(s, Sample)
    for v in (s.waiting, s.running, s.kv_max_concurrency):
        assert v is None or (math.isfinite(v) and v >= 0), s
    assert s.kv_usage is None or 0.0 <= s.kv_usage <= 1.0, s
    specs.detect(text)  # never raises, by contract


def _check_config_error(exc: ConfigError) -> None:
    text = str(exc) + " ".join(exc.problems)
    assert PASSWORD not in text and API_KEY not in text, "a secret appeared in a config error"


def prop_config(data) -> None:
    try:
        cfg = yamlfile.parse(data, ENVIRON, source="fuzz.yaml")
    except ConfigError as exc:
        _check_config_error(exc)
        return
    assert isinstance(cfg, AppConfig)
    assert PASSWORD not in repr(cfg) and API_KEY not in repr(cfg)


def prop_load(text: str, tmpdir: str) -> None:
    path = os.path.join(tmpdir, "fuzz.yaml")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    try:
        yamlfile.load(path, ENVIRON)
    except ConfigError as exc:
        _check_config_error(exc)


yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.builds(lambda ind, k, v: f"{ind}{k}: {v}", st.sampled_from(["", "  ", "    ", "- "]),
                       st.sampled_from(["f5", "host", "pools", "name", "metrics", "weights", "scale", "- name", "&a", "*a", "!!python/object"]),
                       st.one_of(st.text(max_size=10), st.sampled_from(["{", "[", "|", ">", "!!binary x", "*a", "&a 1", "1e9999", "0o17"]))),
             max_size=15).map("\n".join),
)


def targets(slow: float, opts: settings) -> tuple[dict, dict]:
    tmpdir = tempfile.mkdtemp(prefix="f5lr-fuzz-")
    counts = {"select": 0, "extract": 0, "config": 0}

    def counted(name, fn):
        def run(*a):
            counts[name] += 1
            return _timed(slow)(fn)(*a)
        return run

    sel = counted("select", prop_select)
    ext = counted("extract", prop_extract)
    conf = counted("config", prop_config)
    ld = counted("config", lambda t: prop_load(t, tmpdir))

    @opts
    @given(any_page, st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    def t_select(text, names):
        sel(text, names)

    @opts
    @given(any_page, st.sampled_from(sorted(specs.SPECS) + ["vllm_ascend"]))
    def t_extract(text, engine_type):
        ext(text, engine_type)

    @opts
    @given(st.one_of(mutated_config(), mutated_config(), yaml_value))
    def t_config(data):
        conf(data)

    @opts
    @given(yaml_text)
    def t_load(text):
        ld(text)

    return {"select": [t_select], "extract": [t_extract], "config": [t_config, t_load]}, counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="total fuzzing time (default 300)")
    ap.add_argument("--target", choices=("all", "select", "extract", "config"), default="all")
    ap.add_argument("--batch", type=int, default=300, help="examples per hypothesis run (default 300)")
    ap.add_argument("--slow", type=float, default=2.0, help="seconds one example may take (default 2)")
    args = ap.parse_args(argv)

    cfg = settings(max_examples=args.batch, deadline=None, database=None, derandomize=False,
                   suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
                   print_blob=False)
    tests, counts = targets(args.slow, cfg)
    chosen = [t for name, ts in tests.items() if args.target in ("all", name) for t in ts]
    failures: list[dict] = []
    started = time.monotonic()
    rounds = 0
    while chosen and time.monotonic() - started < args.seconds:
        rounds += 1
        for test in list(chosen):
            if time.monotonic() - started >= args.seconds:
                break
            try:
                test()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append({"target": test.__name__, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                chosen.remove(test)  # one shrunk finding per target is enough; fix it and run again
                print(f"FAIL {test.__name__}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if rounds % 10 == 0:
            print(f"{time.monotonic() - started:6.0f}s examples {counts} failures {len(failures)}",
                  file=sys.stderr, flush=True)
    summary = {"seconds": round(time.monotonic() - started, 1), "examples": counts, "rounds": rounds,
               "failures": failures, "ok": not failures}
    print(json.dumps(summary))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
