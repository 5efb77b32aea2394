"""A fast filter over the Prometheus text exposition format (0.0.4): read only the named series.

An engine's /metrics page is 5-100 KB, almost all of it histogram buckets the score never reads.
`prometheus_client.parser` tokenises every line (about 8 ms for a 44 KB vLLM page); this module
finds the few wanted names with `str.find` (C speed) and only parses the lines that start with one,
so the cost is a few string searches plus a handful of small regex matches.

`select` searches the page once per name. A reader that wants many names (the load figures and the
speed counters, about 15 for vLLM) calls `scan` instead: one pass with one compiled pattern finds the
lines of every name at once, and `Scan.select` parses them with the same result and errors as `select`.

For the lines it reads it gives the same labels and values as
`prometheus_client.parser.text_string_to_metric_families`:

* lines are stripped of surrounding whitespace (so CRLF endings and indentation are fine);
* `# HELP`, `# TYPE` and other comments may appear anywhere and are never mistaken for samples;
* label values unescape `\\\\`, `\\"` and `\\n` (any other backslash pair stays as written);
* values go through `float()` (exponents, `NaN`, `+Inf`, `-Inf`), `_` digit separators are refused;
* an optional timestamp after the value is checked and ignored;
* every occurrence is kept, in page order, duplicates included: the caller decides what they mean.

Two deliberate differences: a name is matched as written on the line (prometheus_client renames the
samples of a `counter` family whose name lacks `_total`), and lines for names nobody asked for are
never validated, so a malformed histogram line cannot make the queue length unreadable.
The UTF-8 quoted-name form (`{"my.metric"} 1`) is not read: it is only served on request with
`escaping=allow-utf-8`, which the scraper never sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from controller.errors import MetricsError

Series = list[tuple[dict[str, str], float]]

#: At most this many sample lines of the requested names are read from one page (per `select` call). A
#: real engine exports a few per name (one per data-parallel rank or label set); a page over the cap is
#: refused as "too-many-series" as soon as the cap is passed, so its cost stays bounded and it is never
#: summed into a load figure.
MAX_SAMPLES = 10_000

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:")

# The general label scanner, one token at a time. Each pattern can match in only one way, so a hostile
# line costs linear time (a single regex for the whole block backtracks badly on long blank runs).
_LABEL_START = re.compile(r'\s*,?\s*')  # prometheus_client tolerates one leading comma
_LABEL_NAME = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"')
_LABEL_VALUE = re.compile(r'((?:[^"\\]|\\.)*)"')  # after the opening quote, up to the closing one
_LABEL_SEP = re.compile(r"\s*([,}])\s*")
# The shape nearly every engine writes: `{a="x",b="y"} 12.0`, no blanks, escapes or timestamp. Lines in
# this shape take one regex; anything else goes the general way, which agrees on this shape.
_SIMPLE_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
_SIMPLE_LINE = re.compile(r"\{((?:" + _SIMPLE_PAIR + r"(?:," + _SIMPLE_PAIR + r")*,?)?)\} ([^ \t]+)\Z")
_SIMPLE_PAIRS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_ESCAPE = re.compile(r'\\[\\n"]')
_UNESCAPED = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}

# Something on the page that a Prometheus exposition would contain: a HELP/TYPE comment or a
# `name{...} number` line. Used only to tell "not a metrics page at all" from "metric absent".
_LOOKS_PROMETHEUS = re.compile(
    r"^[ \t]*(?:#[ \t]*(?:HELP|TYPE)[ \t]"
    r"|[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^\n]*\})?[ \t]+[-+]?(?:\d|\.\d|nan|inf))",
    re.MULTILINE | re.IGNORECASE,
)


def select(text: str, names: Iterable[str], limit: int = MAX_SAMPLES) -> dict[str, Series]:
    """Every sample line of `text` whose metric name is one of `names`, as (labels, value), in page order.

    Each requested name is a key of the result, with an empty list when the page has no such line.
    Raises MetricsError("not-prometheus") when a wanted line is malformed, or when nothing was found
    and the page does not look like a Prometheus exposition at all (HTML, JSON, binary, empty), and
    MetricsError("too-many-series") past `limit` sample lines of the wanted names in all.
    """
    wanted = list(dict.fromkeys(names))
    _check_names(wanted)
    out: dict[str, Series] = {}
    budget = limit
    for name in wanted:
        out[name] = _occurrences(text, name, budget)
        budget -= len(out[name])
    if not any(out.values()):
        _require_prometheus(text)
    return out


def scan(text: str, names: Iterable[str]) -> Scan:
    """Find the sample lines of all `names` on `text` in one pass; parse them with `Scan.select`.

    A line is a sample of a name when, after leading blanks, it starts with that name followed by a
    character that cannot continue a name: the rule `select` applies. At most MAX_SAMPLES lines are
    kept in all; past that the scan stops and `Scan.select` falls back to `select`, which stops at the cap.
    """
    wanted = tuple(dict.fromkeys(names))
    lines: dict[str, list[str]] = {name: [] for name in wanted}
    if not wanted:
        return Scan(text, lines)
    first, rest = _scanner(wanted)  # also checks the names, once per set of names
    head = first.match(text)
    kept = 0
    for match in _matches(head, rest, text):
        kept += 1
        if kept > MAX_SAMPLES:
            return Scan(text, None)
        line, name = match.group(1, 2)
        lines[name].append(line)
    return Scan(text, lines)


class Scan:
    """The sample lines of some metric names on one page, found by `scan` and not yet parsed."""

    def __init__(self, text: str, lines: dict[str, list[str]] | None):
        self.text = text
        self._lines = lines  # None: the scan passed MAX_SAMPLES lines and stopped

    def select(self, names: Iterable[str], limit: int = MAX_SAMPLES) -> dict[str, Series]:
        """`select(text, names, limit)`: the same series, and the same MetricsError and ValueError, for
        the same page. Names the scan did not look for, or a scan that stopped at the cap, are read
        with `select` itself."""
        wanted = list(dict.fromkeys(names))
        _check_names(wanted)
        lines = self._lines
        if lines is None or any(name not in lines for name in wanted):
            return select(self.text, wanted, limit)
        out: dict[str, Series] = {}
        budget = limit
        for name in wanted:
            out[name] = _parse_lines(lines[name], name, budget)
            budget -= len(out[name])
        if not any(out.values()):
            _require_prometheus(self.text)
        return out


def _matches(head: re.Match[str] | None, rest: re.Pattern[str], text: str) -> Iterable[re.Match[str]]:
    if head is not None:
        yield head
    yield from rest.finditer(text)


@lru_cache(maxsize=64)
def _scanner(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns for the first line and for every later line; group 1 is the line, group 2 the name.

    The later-line pattern starts with a literal newline, so the regex engine skips from line to line
    at C speed and tries the names only at line starts (the alternatives' common prefix, such as
    `vllm:`, is factored out by the compiler). `[^\\S\\n]` is what `str.isspace` accepts, newline aside.
    """
    _check_names(names)
    line = r"([^\S\n]*(" + "|".join(map(re.escape, names)) + r")(?![a-zA-Z0-9_:])[^\n]*)"
    return re.compile(line), re.compile("\n" + line)


def _check_names(names: Iterable[str]) -> None:
    for name in names:
        if not METRIC_NAME.match(name):
            raise ValueError(f"not a Prometheus metric name: {name!r}")


def _parse_lines(lines: list[str], name: str, limit: int) -> Series:
    """Parse the sample lines of one name, refusing more than `limit` of them as `_occurrences` does."""
    found: Series = []
    size = len(name)
    for line in lines:
        if len(found) >= limit:
            raise _too_many(name)
        found.append(_parse_line(line.strip(), size, name))
    return found


def _too_many(name: str) -> MetricsError:
    return MetricsError("too-many-series", f"more than {MAX_SAMPLES} samples of {name} and the other metrics read on one page")


def _occurrences(text: str, name: str, limit: int = MAX_SAMPLES) -> Series:
    """The parsed sample lines for one name, found by substring search rather than per-line work.

    Only the first occurrence in a line can start it, so after each hit the search resumes on the next
    line: every character is looked at a bounded number of times, however often the name repeats.
    """
    found: Series = []
    size = len(name)
    line_from = 0  # always the start of a line
    pos = text.find(name)
    while pos != -1:
        newline = text.rfind("\n", line_from, pos)
        start = line_from if newline == -1 else newline + 1
        end = text.find("\n", pos + size)
        # A sample only if the name opens the line (after blanks) and is not the prefix of a longer name
        # (`..._waiting_by_reason`); elsewhere it sits in a `# HELP` comment or a label value.
        if (start == pos or text[start:pos].isspace()) and text[pos + size : pos + size + 1] not in _NAME_CHARS:
            if len(found) >= limit:
                raise _too_many(name)
            line = text[start:] if end == -1 else text[start:end]
            found.append(_parse_line(line.strip(), size, name))
        if end == -1:
            break
        line_from = end + 1
        pos = text.find(name, line_from)
    return found


def _parse_line(line: str, size: int, name: str) -> tuple[dict[str, str], float]:
    """Parse `name[{labels}] value [timestamp]`; `line` is stripped and starts with the name."""
    rest = line[size:]
    simple = _SIMPLE_LINE.match(rest)
    if simple is not None:
        block = simple.group(1)
        pairs = _SIMPLE_PAIRS.findall(block)
        labels = dict(pairs)
        # No "__" in the block (the usual case) means no reserved label name, without a look at each.
        if len(labels) == len(pairs) and ("__" not in block or not any(k.startswith("__") for k in labels)):
            return labels, _number(simple.group(2), name)
    if not rest or rest[0] not in " \t{":
        raise _malformed(name, "no value after the name")
    body = rest.lstrip()
    if body.startswith("{"):
        labels, consumed = _parse_labels(body, name)
        remainder = body[consumed:]
    else:
        brace = body.find("{")
        # prometheus_client treats a later `{` as the start of labels, which makes the name invalid,
        # unless it follows an exemplar separator ` # `.
        if brace != -1 and " # " not in body[:brace]:
            raise _malformed(name, "text between name and labels")
        labels, remainder = {}, body
    return labels, _parse_value(remainder, name)


def _parse_labels(body: str, name: str) -> tuple[dict[str, str], int]:
    """Parse a `{...}` block at the start of `body`; return the labels and the characters consumed."""
    labels: dict[str, str] = {}
    start = _LABEL_START.match(body, 1)
    pos = start.end() if start else 1  # the pattern matches the empty string: never None
    while True:
        if body.startswith("}", pos):
            return labels, pos + 1
        key = _LABEL_NAME.match(body, pos)
        value = key and _LABEL_VALUE.match(body, key.end())
        sep = value and _LABEL_SEP.match(body, value.end())
        if not (key and value and sep):
            raise _malformed(name, "bad label set")
        label, raw = key.group(1), value.group(1)
        if label in labels or label.startswith("__"):
            raise _malformed(name, f"duplicate or reserved label {label!r}")
        labels[label] = unescape(raw)
        if sep.group(1) == "}":
            return labels, sep.end()
        pos = sep.end()


def unescape(value: str) -> str:
    """A label value as written between quotes -> its text (only \\\\, \\" and \\n are escapes)."""
    return _ESCAPE.sub(_unescape, value) if "\\" in value else value


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPED[match.group(0)]


def _parse_value(text: str, name: str) -> float:
    """The value, then an optional timestamp, split the way prometheus_client splits them."""
    text = text.lstrip()
    separator = " " if " " in text else "\t"
    parts = [p.strip() for p in text.split(separator) if p.strip()]
    if not parts:
        raise _malformed(name, "no value")
    value = _number(parts[0], name)
    if len(parts) > 1:
        _number(parts[-1], name)  # the timestamp must be a number too; its value is not needed
    return value


def _number(token: str, name: str) -> float:
    if "_" in token or token != token.strip():
        raise _malformed(name, f"bad number {token[:20]!r}")
    try:
        return float(token)
    except ValueError:
        raise _malformed(name, f"bad number {token[:20]!r}") from None


def _malformed(name: str, why: str) -> MetricsError:
    return MetricsError("not-prometheus", f"malformed {name} line: {why}")


def _require_prometheus(text: str) -> None:
    """Raise not-prometheus unless some line looks like a sample or a HELP/TYPE comment."""
    head = text[:4096]
    if "\x00" in head or head.count("\ufffd") > 8:
        raise MetricsError("not-prometheus", "binary data, not a text exposition")
    if _LOOKS_PROMETHEUS.search(text):
        return
    stripped = text.lstrip()
    if not stripped:
        raise MetricsError("not-prometheus", "empty page")
    if stripped[0] == "<":
        raise MetricsError("not-prometheus", "HTML/XML page, not a text exposition")
    if stripped[0] in "{[":
        raise MetricsError("not-prometheus", "JSON document, not a text exposition")
    raise MetricsError("not-prometheus", "no Prometheus sample or comment line")
