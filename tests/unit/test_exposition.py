"""exposition.select: same values as prometheus_client for the selected names, read far more cheaply;
exposition.scan: one pass for many names, then the same result and errors as select."""

from __future__ import annotations

import math
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from controller.engines import specs
from controller.engines.exposition import MAX_SAMPLES, scan, select
from controller.errors import MetricsError
from tests.conftest import ENGINE_PAGES, engine_page_text


def reference(text: str, names) -> dict:
    """What prometheus_client reads for `names`: every sample with that name, in page order."""
    out: dict = {n: [] for n in names}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in out:
                out[s.name].append((s.labels, float(s.value)))
    return out


def same(a: dict, b: dict) -> bool:
    """Equality where NaN equals NaN (and -0.0 equals 0.0, as floats do)."""
    if a.keys() != b.keys():
        return False
    for name in a:
        if len(a[name]) != len(b[name]):
            return False
        for (la, va), (lb, vb) in zip(a[name], b[name], strict=True):
            if la != lb or not (va == vb or (math.isnan(va) and math.isnan(vb))):
                return False
    return True


# -- examples --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ENGINE_PAGES)
def test_fixtures_match_prometheus_client_for_every_name(name):
    text = engine_page_text(name)
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    names = {n for n in names if re.search(rf"^{re.escape(n)}[ \t{{]", text, re.MULTILINE)}  # as written
    assert same(select(text, names), reference(text, names))


def test_counter_without_total_is_read_under_its_written_name():
    """prometheus_client renames `foo` to `foo_total` under `# TYPE foo counter`; select() keeps the page's name."""
    text = engine_page_text("llamacpp")
    assert select(text, ["llamacpp:n_busy_slots_per_decode"])["llamacpp:n_busy_slots_per_decode"] == [({}, 1.7)]
    assert "llamacpp:n_busy_slots_per_decode_total" in {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_prefix_names_help_lines_and_label_values_are_not_confused():
    text = (
        "# HELP q:waiting q:waiting 1 is not a sample\n"
        "# TYPE q:waiting gauge\n"
        'q:waiting_by_reason{reason="x"} 5\n'
        'other{note="q:waiting 7"} 1\n'
        "xq:waiting 9\n"
        "q:waiting 3\n"
    )
    assert select(text, ["q:waiting"]) == {"q:waiting": [({}, 3.0)]}


def test_escapes_crlf_timestamps_whitespace_and_specials():
    text = (
        "# TYPE m gauge\r\n"
        'm{a="back\\\\slash",b="quo\\"te",c="new\\nline",d="tab\\t"} 1.5e3 1700000000000\r\n'
        '  m {a = "sp" , b="x",} \t-Inf\r\n'
        "m\tNaN\r\n"
        'm{a="}{,="} +Inf\r\n'
        "\r\n"
    )
    got = select(text, ["m"])["m"]
    assert got[0] == ({"a": "back\\slash", "b": 'quo"te', "c": "new\nline", "d": "tab\\t"}, 1500.0)
    assert got[1] == ({"a": "sp", "b": "x"}, -math.inf)
    assert got[2][0] == {} and math.isnan(got[2][1])
    assert got[3] == ({"a": "}{,="}, math.inf)
    assert same(select(text, ["m"]), reference(text, ["m"]))


def test_odd_but_valid_label_sets_match_prometheus_client():
    text = 'm{} 1\nm{,} 2\nm{,a="b"} 3\nm{ a="b" , } 4\nm {a="b"}5\nm{a="b"} 6 # {trace="x"} 7\n'
    assert same(select(text, ["m"]), reference(text, ["m"]))
    assert len(select(text, ["m"])["m"]) == 6


@pytest.mark.parametrize(
    "line",
    ['m{a="x"' + " " * 20000 + " 1", "m{" + 'a="x" ' * 5000, 'm{a="' + "\\" * 10001 + "} 1", "m{" + 'a="x",' * 5000],
    ids=["blank-run", "no-commas", "backslashes", "unterminated"],
)
def test_hostile_wanted_lines_fail_fast(line):
    started = time.perf_counter()
    with pytest.raises(MetricsError):
        select(line + "\n", ["m"])
    assert time.perf_counter() - started < 2.0  # a quadratic scan takes minutes; generous for a loaded CI box


def test_a_name_repeated_inside_one_huge_line_costs_one_pass():
    text = '{"doc": "' + "vllm:num_requests_waiting " * 200_000 + '"}\nvllm:num_requests_waiting 2\n'
    started = time.perf_counter()
    assert select(text, ["vllm:num_requests_waiting"]) == {"vllm:num_requests_waiting": [({}, 2.0)]}
    assert time.perf_counter() - started < 2.0  # one pass per occurrence would take minutes


def test_duplicates_are_all_kept_in_order():
    text = 'm{e="0"} 1\nm{e="0"} 2\nm{e="1"} 3\n'
    assert [v for _, v in select(text, ["m"])["m"]] == [1.0, 2.0, 3.0]


def test_absent_name_gives_empty_list_on_a_real_page():
    text = engine_page_text("tgi")
    assert select(text, ["tgi_queue_size", "nope"]) == {"tgi_queue_size": [({}, 7.0)], "nope": []}


def test_lines_for_unwanted_names_are_not_validated():
    text = "broken{{{ line\nhisto_bucket{le=} x\nm 4\n"
    assert select(text, ["m"]) == {"m": [({}, 4.0)]}


@pytest.mark.parametrize(
    "line",
    [
        "m",
        "m{a=\"1\" 5",
        'm{a="1" b="2"} 5',
        "m{a=1} 5",
        "m 1_000",
        "m five",
        "m 1 tomorrow",
        'm{a="1",a="2"} 5',
        "m=5",
    ],
)
def test_malformed_wanted_line_is_not_prometheus(line):
    with pytest.raises(MetricsError) as err:
        select(f"# TYPE m gauge\n{line}\n", ["m"])
    assert err.value.reason == "not-prometheus" and "malformed m line" in err.value.detail


@pytest.mark.parametrize(
    "body,why",
    [
        ("<!DOCTYPE html>\n<html><body>Login</body></html>", "HTML"),
        ('{"error": "not found"}', "JSON"),
        ("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage", "binary"),
        ("", "empty"),
        ("   \n\n", "empty"),
        ("upstream connect error or disconnect/reset before headers", "no Prometheus"),
    ],
)
def test_non_prometheus_pages(body, why):
    with pytest.raises(MetricsError) as err:
        select(body, ["vllm:num_requests_waiting"])
    assert err.value.reason == "not-prometheus" and why in err.value.detail


def test_invalid_requested_name_is_a_programming_error():
    with pytest.raises(ValueError):
        select("m 1\n", ["not a name"])


# -- property: generated pages ----------------------------------------------------------------------
# Names built from a few parts so that prefixes (`q`, `q_len`), colons and `_total` collide often.
NAMES = st.builds(
    lambda p, s, x: p + s + x,
    st.sampled_from(["", "vllm:", "a:b:", "sglang:", "x_"]),
    st.sampled_from(["q", "q_len", "kv", "kv_perc", "Q"]),
    st.sampled_from(["", "_by_reason", "_x"]),
)
LABEL_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
# Label values written directly in escaped form: every backslash pair is complete.
ESCAPED_VALUES = st.lists(
    st.sampled_from(["a", "Z", " ", "\\\\", '\\"', "\\n", "\\t", "}", "{", ",", "=", "#", "é", "q:waiting 1", "0"]),
    max_size=6,
).map("".join)
NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.3e}"),
    st.floats(min_value=1e-300, max_value=1e300).map(lambda f: f"{f:E}"),
    st.sampled_from(["NaN", "nan", "+Inf", "-Inf", "Inf", "inf", "-0", "0.0", ".5", "5.", "1e-3", "+7"]),
)
BLANK = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def label_sets(draw):
    names = draw(st.lists(LABEL_NAMES, unique=True, max_size=3))
    if not names and draw(st.booleans()):
        return ""
    pairs = [f"{n}{draw(st.sampled_from(['=', ' = ']))}\"{draw(ESCAPED_VALUES)}\"" for n in names]
    sep = draw(st.sampled_from([",", ", ", " ,"]))
    trailing = draw(st.sampled_from(["", ","])) if pairs else ""
    return draw(st.sampled_from(["", " "])) + "{" + sep.join(pairs) + trailing + "}"


@st.composite
def sample_lines(draw, name):
    labels = draw(label_sets())
    gap = draw(st.sampled_from([" ", "\t", "  "]))
    stamp = draw(st.sampled_from(["", " 1700000000000", "\t-12", " 1.5e12"]))
    if stamp and gap == "\t" and stamp[0] == " ":
        stamp = "\t" + stamp[1:]  # prometheus_client splits on one kind of blank once a space is present
    return draw(BLANK) + name + labels + gap + draw(NUMBERS) + stamp + draw(BLANK)


@st.composite
def families(draw):
    name = draw(NAMES)
    kind = draw(st.sampled_from(["gauge", "untyped", "counter", "histogram", "summary", None]))
    if kind == "counter":
        name += "_total"  # a counter without _total is renamed by prometheus_client; see select()'s doc
    lines = []
    if draw(st.booleans()):
        lines.append(f"# HELP {name} {draw(st.sampled_from(['', 'help', 'mentions vllm:q 5', 'x{a=1}']))}")
    if kind:
        lines.append(f"# TYPE {name} {kind}")
    if kind == "histogram":
        for le in draw(st.lists(st.sampled_from(["0.1", "1.0", "+Inf", "2.5e-3"]), max_size=4)):
            lines.append(f'{name}_bucket{{le="{le}"}} {draw(NUMBERS)}')
        lines += [f"{name}_sum {draw(NUMBERS)}", f"{name}_count {draw(NUMBERS)}"]
    else:
        lines += [draw(sample_lines(name)) for _ in range(draw(st.integers(0, 4)))]
    return lines


@st.composite
def pages(draw):
    lines = []
    for family in draw(st.lists(families(), min_size=1, max_size=6)):
        lines += family
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# a note about vllm:q", "#", "   "])))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return eol.join(lines) + draw(st.sampled_from([eol, ""]))


@settings(max_examples=min(200, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=pages(), data=st.data())
def test_select_equals_prometheus_client(page, data):
    present = sorted({s.name for f in text_string_to_metric_families(page) for s in f.samples})
    names = data.draw(st.lists(st.sampled_from(present + ["vllm:q", "q"]), min_size=1, max_size=4, unique=True))
    expected = reference(page, names)
    try:
        got = select(page, names)
    except MetricsError as err:
        # Only a page with no samples at all may be refused, and then prometheus_client found none either.
        assert err.reason == "not-prometheus" and not any(expected.values()), (err, expected)
        return
    assert same(got, expected), (got, expected)


# --- the series cap (issue 12) ---------------------------------------------------------------------


def _many(n: int, name: str = "vllm:num_requests_waiting") -> str:
    return "".join(f'{name}{{engine="{i}",model_name="m"}} 1\n' for i in range(n))


def test_a_page_at_the_cap_is_read_whole():
    from controller.engines.exposition import MAX_SAMPLES

    assert MAX_SAMPLES == 10_000
    out = select(_many(MAX_SAMPLES), ["vllm:num_requests_waiting"])
    assert len(out["vllm:num_requests_waiting"]) == MAX_SAMPLES


def test_50000_series_are_refused_as_too_many_series_not_summed():
    page = _many(50_000)
    started = time.perf_counter()
    with pytest.raises(MetricsError) as info:
        select(page, ["vllm:num_requests_waiting"])
    assert info.value.reason == "too-many-series"
    assert "10000" in str(info.value)
    assert time.perf_counter() - started < 5  # generous: stops at the cap (about 20 ms here), never a hang


def test_the_cap_counts_every_requested_name_together():
    page = _many(6_000, "a_total") + _many(6_000, "b_total")
    assert len(select(page, ["a_total"], limit=10_000)["a_total"]) == 6_000
    with pytest.raises(MetricsError, match="too-many-series"):
        select(page, ["a_total", "b_total"], limit=10_000)


# --- scan: one pass for many names, the same answers as select ------------------------------------


def outcome(read):
    """What a read gives: ("ok", series by name) or ("error", reason, detail)."""
    try:
        return ("ok", read())
    except MetricsError as err:
        return ("error", err.reason, err.detail)


def same_outcome(a, b) -> bool:
    return a[0] == b[0] and (same(a[1], b[1]) if a[0] == "ok" else a == b)


def groups_for(text: str) -> list[list[str]]:
    """Name groups read from `text`: every name written on it, each engine's load and speed names (the
    groups extract() reads), and the names that are prefixes of others or absent."""
    written = sorted(set(re.findall(r"^[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t{]", text, re.MULTILINE)))
    out = [written, written[::-1], ["nope", "also:absent"]]
    for engine in specs.SPECS:
        plan = specs._plan(engine, None)
        out.append(plan.names)
        out.append(list(plan.lookups))
        speed = specs._speed_reads(engine)
        if speed:
            out.append(list(speed.lookups))
    return out


@pytest.mark.parametrize("name", ENGINE_PAGES)
def test_scan_gives_what_select_gives_on_the_real_pages(name):
    """One scan for every name of every group, then each group: the same series (or error) as select."""
    text = engine_page_text(name)
    groups = groups_for(text)
    found = scan(text, [n for group in groups for n in group])
    assert any(found.select(group)[n] for group in groups for n in group)  # the pages do hold wanted lines
    for group in groups:
        assert same_outcome(outcome(lambda g=group: found.select(g)), outcome(lambda g=group: select(text, g))), group


@pytest.mark.parametrize("name", ENGINE_PAGES)
def test_scan_on_crlf_indented_and_unterminated_real_pages(name):
    base = engine_page_text(name)
    for text in (base.replace("\n", "\r\n"), base.replace("\n", "\n \t"), base.rstrip("\n"), "\n\n" + base):
        for group in groups_for(base):
            assert same_outcome(outcome(lambda g=group, t=text: scan(t, g).select(g)),
                                outcome(lambda g=group, t=text: select(t, g))), (group, text[:80])


# page, names scanned for and selected, expected series (or the MetricsError reason)
SCAN_TABLE = [
    ("first line", "m 1\nx 2\n", ["m", "x"], {"m": [({}, 1.0)], "x": [({}, 2.0)]}),
    ("no final newline", "x 2\nm 1", ["m"], {"m": [({}, 1.0)]}),
    ("prefix names both wanted", "q 1\nq_len 2\nq:x 3\nq 4\n", ["q", "q_len"],
     {"q": [({}, 1.0), ({}, 4.0)], "q_len": [({}, 2.0)]}),
    ("longer name not wanted", "q_len 2\n", ["q"], {"q": []}),
    ("HELP, TYPE and label values", '# HELP m m 5\n# TYPE m gauge\nother{a="\\nm 9"} 1\nxm 3\nm 7\n', ["m"],
     {"m": [({}, 7.0)]}),
    ("leading blanks", " \t m 1\n\x0bm 2\n\u00a0m 3\n\u2028m 4\n", ["m"],
     {"m": [({}, 1.0), ({}, 2.0), ({}, 3.0), ({}, 4.0)]}),
    ("text before the name", "a m 1\n# m 2\nx 1\n", ["m"], {"m": []}),
    ("lone CR is not a line end", "a 1\rm 2\n", ["m", "a"], "not-prometheus"),
    ("CRLF", "m{a=\"b\"} 1\r\nm 2\r\n", ["m"], {"m": [({"a": "b"}, 1.0), ({}, 2.0)]}),
    ("duplicate names asked", "m 1\n", ["m", "m"], {"m": [({}, 1.0)]}),
    ("malformed wanted line", "m 1\nm{a=1} 2\n", ["m"], "not-prometheus"),
    ("malformed unwanted line", "m 1\nn{a=1} 2\n", ["m"], {"m": [({}, 1.0)]}),
    ("reserved label name", 'm{a="1",__x="2"} 5\n', ["m"], "not-prometheus"),
    ("double underscores elsewhere", 'm{a="__",b__c="1"} 5\n', ["m"], {"m": [({"a": "__", "b__c": "1"}, 5.0)]}),
    ("nothing found on HTML", "<html>m</html>", ["m"], "not-prometheus"),
    ("nothing found on a real page", "x 1\n", ["m"], {"m": []}),
    ("no names", "m 1\n", [], {}),
]


@pytest.mark.parametrize("case,text,names,expect", SCAN_TABLE, ids=[c[0] for c in SCAN_TABLE])
def test_scan_table(case, text, names, expect):
    got = outcome(lambda: scan(text, names).select(names))
    assert same_outcome(got, outcome(lambda: select(text, names))), case
    if isinstance(expect, str):
        assert got[0] == "error" and got[1] == expect, got
    else:
        assert got == ("ok", expect)


def test_scan_selects_subsets_and_falls_back_for_names_it_did_not_look_for():
    text = "a 1\nb 2\nc 3\n"
    found = scan(text, ["a", "b"])
    assert found.select(["b"]) == {"b": [({}, 2.0)]}
    assert found.select(["c", "a"]) == {"c": [({}, 3.0)], "a": [({}, 1.0)]}  # c: read with select
    with pytest.raises(ValueError):
        found.select(["not a name"])
    with pytest.raises(ValueError):
        scan(text, ["a", "not a name"])


def test_scan_keeps_each_selects_own_cap_and_order_of_errors():
    page = _many(6_000, "a_total") + _many(6_000, "b_total") + "c 1\n"
    found = scan(page, ["a_total", "b_total", "c"])  # 12,001 lines: past the scan's cap, so select decides
    assert len(found.select(["a_total"])["a_total"]) == 6_000
    assert found.select(["c"]) == {"c": [({}, 1.0)]}
    with pytest.raises(MetricsError, match="too-many-series"):
        found.select(["a_total", "b_total"])
    small = scan(page[:200] + "a_total{x=1} 1\n", ["a_total"])
    with pytest.raises(MetricsError, match="not-prometheus"):
        small.select(["a_total"])
    under = _many(3, "a_total") + "a_total{x=1} 1\n" + _many(3, "b_total")
    for names, limit in ((["a_total", "b_total"], 2), (["b_total", "a_total"], 4), (["b_total", "a_total"], 3)):
        assert outcome(lambda n=names, k=limit: scan(under, n).select(n, k)) == outcome(lambda n=names, k=limit: select(under, n, k))


def test_scan_at_and_past_the_cap():
    at = _many(MAX_SAMPLES)
    assert len(scan(at, ["vllm:num_requests_waiting"]).select(["vllm:num_requests_waiting"])["vllm:num_requests_waiting"]) == MAX_SAMPLES
    started = time.perf_counter()
    with pytest.raises(MetricsError) as info:
        scan(_many(50_000), ["vllm:num_requests_waiting"]).select(["vllm:num_requests_waiting"])
    assert info.value.reason == "too-many-series"
    assert time.perf_counter() - started < 5  # generous: stops at the cap (about 40 ms here), never a hang


@settings(max_examples=min(200, settings.default.max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=pages(), data=st.data())
def test_scan_equals_select_on_generated_pages(page, data):
    present = sorted(set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", page)))
    pool = present + ["vllm:q", "q", "q_len"]
    scanned = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    wanted = data.draw(st.lists(st.sampled_from(scanned), min_size=1, max_size=4, unique=True))
    assert same_outcome(outcome(lambda: scan(page, scanned).select(wanted)), outcome(lambda: select(page, wanted)))
