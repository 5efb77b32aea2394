"""Fetch the engines' /metrics pages concurrently, each within its own timeout and the tick's deadline.

One `Scraper` lives as long as the daemon: a fixed thread pool bounds the concurrency, and the open
sockets are bounded too, by `keepalive + max_workers` whatever the member count: the first `keepalive`
endpoints seen keep one keep-alive connection each (urllib3 pools); every other endpoint is fetched
on a connection of its own, `Connection: close`, closed as soon as the page is read. (A socket per
member ran a 1,200-member fleet out of file descriptors under systemd's default limit of 1,024.) It talks to urllib3
directly rather than through requests, whose per-request work (preparing, merging and wrapping) cost
more CPU than the page itself at 1,000 members (docs/performance.md). `scrape()` never raises and
always returns by the deadline; every member gets a `ScrapeResult` with either a Sample or a short
error slug:

    refused, timeout, deadline, http-<status>, too-large, tls, not-prometheus, missing-metric,
    bad-value, error

A socket timeout only bounds each socket wait, so a server that trickles one byte a second would
hold a request for ever. The body is therefore read in small pieces against a total per-request
budget of min(target.timeout, time left in the tick), and at the deadline any read still in flight
is shut down from the calling thread.

What requests used to provide is kept: no retries (the next tick is the retry); up to 3 redirects
(vLLM versions that mount /metrics as an ASGI app redirect to /metrics/), **only to the same scheme,
host and port**: a redirect anywhere else is not followed and the scrape fails with `error`
"redirect to another host not followed: <host:port>" (an engine, or whatever answers on its address,
must not make the controller fetch, and trust as load, a page from elsewhere: 169.254.169.254, ...);
https verified against REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
when set, else certifi's bundle; HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY and ~/.netrc
honoured. The environment is read once per URL (a change while the daemon runs applies to URLs seen
after it), not on every request.

llama.cpp's page does not say how many parallel slots the server has (`-np`), and without a KV gauge
that is how full it is; its `/props` does (`total_slots`). So a llama.cpp target's `/props` (beside its
metrics path) is read once and then every PROPS_TTL seconds, within the same budget; when it cannot be
read the sample simply has no slots (the policy then falls back as for any engine without them).

Details never carry credentials: they are built here from fixed phrases, and the target's secrets
are redacted from them anyway.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import SplitResult, urljoin, urlsplit

import certifi
import requests.utils
import urllib3
import urllib3.exceptions as u3
from urllib3.util import make_headers

from controller import __version__, redact
from controller.clock import Clock, SystemClock
from controller.config.schema import EngineKeys, PoolConfig
from controller.engines import specs
from controller.errors import MetricsError
from controller.model import Member, ScrapeError, ScrapeKey, ScrapeResult, http_error

#: The classic text format. Never ask for OpenMetrics: some servers then escape colons in names.
ACCEPT = "text/plain;version=0.0.4"
_CHUNK = 64 * 1024
NOT_REACHED = "not reached: the tick deadline passed before the request was sent"
#: Endpoints that keep a keep-alive connection between ticks; beyond this, a connection per scrape.
KEEPALIVE = 128
_DETAIL_MAX = 200
_CACHE_MAX = 50_000  # URLs whose environment and route are remembered (cleared beyond: a fleet this large churns)
_MAX_REDIRECTS = 3  # vLLM versions that mount /metrics as an ASGI app redirect to /metrics/
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_REDIRECT_BODY_MAX = 64 * 1024  # read (to reuse the connection) up to this; else close it
#: seconds a llama.cpp server's slot count (from its /props) is reused before it is read again
PROPS_TTL = 300.0
#: requests' default headers, with ours: the target's own headers override these.
_DEFAULT_HEADERS = {
    "User-Agent": f"f5-llm-ratio/{__version__}",
    "Accept-Encoding": ", ".join(v.strip() for v in make_headers(accept_encoding=True)["accept-encoding"].split(",")),
    "Accept": ACCEPT,  # also for hand-built targets that carry no Accept of their own
    "Connection": "keep-alive",
}


@dataclass(frozen=True)
class Target:
    """One member's /metrics endpoint and how to read it. Secrets are kept out of repr."""

    member: str  # Member.key
    url: str
    engine_type: str
    timeout: float
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    keys: EngineKeys | None = None
    pool: str = ""  # PoolRef.full_path: one member may be scraped for two pools with two settings

    @property
    def key(self) -> ScrapeKey:
        """What `Scraper.scrape` keys this target's result by."""
        return ScrapeKey(self.pool, self.member)

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a log line or a detail."""
        out = [v.split(" ", 1)[-1] for k, v in self.headers if k.lower() == "authorization"]
        if self.auth:
            out.append(self.auth[1])
        return tuple(s for s in out if s)


def target_for(member: Member, pool: PoolConfig, keys: EngineKeys | None) -> Target:
    """The scrape target for one pool member, from the pool's `metrics` settings."""
    m = pool.metrics
    port = m.port or member.port
    path = m.path or specs.default_path(pool.engine_type)
    path = path if path.startswith("/") else "/" + path
    headers = [("Accept", ACCEPT), ("Accept-Encoding", "gzip")]
    if m.api_key:
        headers.append(("Authorization", f"Bearer {m.api_key}"))
    # With both APIkey and metric_user set the sideband sends the key as Bearer and no basic auth
    # (core/metrics_collector.py at f254c3e, lines 104-107: `if api_key: ... elif username and password:`).
    auth = (m.user, m.password or "") if m.user and not m.api_key else None
    where = member.scrape_address(m.target) if m.target else f"{member.scrape_host}:{port}"
    url = f"{m.schema.lower()}://{where}{path}"
    return Target(member.key, url, pool.engine_type, m.timeout, tuple(headers), auth, keys, pool=pool.ref.full_path)


#: Which limit cut a scrape short: the member's own timeout, or the tick's deadline.
Late = Literal["timeout", "deadline"]


class _Failed(Exception):
    """A scrape failure already classified into a reason slug and a safe detail."""

    def __init__(self, reason: ScrapeError, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Flight:
    """One request in progress, so the caller can cut its body read short at the deadline."""

    def __init__(self, target: Target):
        self.target = target
        self.response: urllib3.BaseHTTPResponse | None = None
        self.aborted = False
        self.lock = threading.Lock()

    def attach(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Register the response; False when the deadline already passed."""
        with self.lock:
            self.response = response
            return not self.aborted

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            response = self.response
        if response is not None:
            _shutdown(response)


class _Run:
    """One `Scraper.scrape` call: the targets not started yet, the requests in flight and the results.
    After `finish` the loops' late results are dropped (the caller has its answer)."""

    def __init__(self, targets: Sequence[Target]):
        self._todo = deque(targets)
        self._flying: dict[int, _Flight] = {}
        self._results: dict[ScrapeKey, ScrapeResult] = {}
        self._closed = False
        self._lock = threading.Lock()

    def next(self) -> _Flight | None:
        with self._lock:
            if self._closed or not self._todo:
                return None
            flight = _Flight(self._todo.popleft())
            self._flying[id(flight)] = flight
            return flight

    def done(self, flight: _Flight, result: ScrapeResult) -> None:
        with self._lock:
            self._flying.pop(id(flight), None)
            if not self._closed:
                self._results[flight.target.key] = result

    def finish(self, cut: Callable[[_Flight], ScrapeResult], unreached: Callable[[Target], ScrapeResult]) -> dict[ScrapeKey, ScrapeResult]:
        with self._lock:
            self._closed = True
            flying, todo = list(self._flying.values()), list(self._todo)
            self._todo.clear()
            results = dict(self._results)
        for flight in flying:
            results[flight.target.key] = cut(flight)
        for target in todo:
            results[target.key] = unreached(target)
        return results


class _Pools:
    """The Scraper's connection pools: urllib3 PoolManagers per (proxy, CA bundle, kept), in practice two.

    Kept endpoints (at most `keepalive`, the first seen: sticky, so they do not churn) share managers that
    hold one pool per endpoint, up to `maxsize` connections each (a member listed in two pools is fetched
    twice in a tick). The other endpoints share managers that hold at most `maxsize` small pools; their
    connections are closed after each page (`Scraper._get`), so they hold a socket only while in flight.
    No retries: a retry inside one tick only eats the deadline, and the next tick is the retry.
    `close()` drops every idle connection; the pools stay usable (new connections)."""

    def __init__(self, keepalive: int, maxsize: int):
        self.keepalive = max(0, keepalive)
        self.maxsize = maxsize
        self._managers: dict[tuple[str | None, str, bool], urllib3.PoolManager] = {}
        self._kept: set[tuple[str, str, int | None]] = set()
        self._lock = threading.Lock()

    def keep(self, url: str) -> bool:
        """Whether `url`'s endpoint keeps its connection between ticks (claims a slot while any is free)."""
        parts = urlsplit(url)
        endpoint = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
        with self._lock:
            if endpoint in self._kept:
                return True
            if len(self._kept) < self.keepalive:
                self._kept.add(endpoint)
                return True
            return False

    def manager(self, proxy: str | None, verify: str, kept: bool) -> urllib3.PoolManager:
        key = (proxy, verify, kept)
        found = self._managers.get(key)
        if found is None:
            with self._lock:
                found = self._managers.get(key)
                if found is None:
                    # A cold endpoint's pool holds no idle connection, so one slot (urllib3 fills a pool's
                    # queue with `maxsize` placeholders when it creates one and drains it when it drops one).
                    hosts, size = (self.keepalive + 8, self.maxsize) if kept else (4 * self.maxsize, 1)
                    found = self._managers[key] = _manager(proxy, verify, hosts, size)
        return found

    def close(self) -> None:
        with self._lock:
            managers = list(self._managers.values())
        for m in managers:
            m.clear()


def _manager(proxy: str | None, verify: str, hosts: int, maxsize: int) -> urllib3.PoolManager:
    """A PoolManager that verifies https against `verify` (a CA file or directory), through `proxy` if any."""
    kw: dict[str, Any] = {"num_pools": hosts, "maxsize": maxsize, "block": False, "retries": False, "cert_reqs": "CERT_REQUIRED"}
    kw["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
    if proxy is None:
        return urllib3.PoolManager(**kw)
    user, password = requests.utils.get_auth_from_url(proxy)
    if proxy.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:  # PySocks is not installed: requests refused these too
            raise _Failed("error", "SOCKS proxy support is not installed") from None
        return SOCKSProxyManager(proxy, username=user or None, password=password or None, **kw)
    headers = make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **kw)


@dataclass(frozen=True)
class _Route:
    """How to reach one URL, from the environment: the pool manager and ~/.netrc credentials."""

    manager: urllib3.PoolManager
    netrc: tuple[str, str] | None
    kept: bool  # False: one connection per page, closed after it (the socket bound)


class Scraper:
    """Concurrent, bounded scraping of /metrics pages.

    `clock` stamps `ScrapeResult.at` (the controller's notion of time); the network budget is measured
    with the real monotonic clock, because sockets run in real time whatever clock the caller uses.
    """

    def __init__(
        self,
        max_workers: int = 32,
        max_bytes: int = 8 * 1024 * 1024,
        clock: Clock | None = None,  # SystemClock() when None
        keepalive: int = KEEPALIVE,
    ):
        self.max_bytes = max_bytes
        self.clock = clock or SystemClock()
        self._max_workers = max_workers
        self._env: dict[str, tuple[dict[str, str], str, tuple[str, str] | None]] = {}  # url -> (proxies, CA, netrc auth)
        self._routes: dict[str, _Route] = {}
        # Open sockets: at most `keepalive` idle ones (plus a rare second one for a member listed in two
        # pools) and `max_workers` in flight.
        self._session = _Pools(keepalive, max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="scrape")
        self._slots: dict[str, tuple[int | None, float]] = {}  # /props URL -> (slots, monotonic time read)

    def __enter__(self) -> Scraper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def scrape(self, targets: Sequence[Target], deadline: float) -> dict[ScrapeKey, ScrapeResult]:
        """Scrape every target, in the order given; return by `deadline` seconds from now with one result
        per target. At most `max_workers` loops each take the next target until none is left or the
        deadline passes (so a tick's cost follows what it fetches, not the fleet size); targets never
        started get "deadline" with `reached` False, requests in flight are cut off."""
        end = time.monotonic() + max(0.0, deadline)
        run = _Run(targets)
        loops = []
        for _ in range(min(len(targets), self._max_workers)):
            try:
                loops.append(self._pool.submit(self._loop, run, end))
            except RuntimeError:  # the pool was closed: report rather than raise
                break
        if loops:
            wait(loops, timeout=max(0.0, end - time.monotonic()))
        return run.finish(lambda flight: self._cut(flight, deadline),
                          lambda target: self._unreached(target, "scraper closed" if not loops else NOT_REACHED))

    def _loop(self, run: _Run, end: float) -> None:
        while time.monotonic() < end:
            flight = run.next()
            if flight is None:
                return
            try:
                result = self._fetch(flight, end)
            except Exception as exc:  # noqa: BLE001 - _fetch catches everything; this is a last guard
                result = self._result(flight.target, 0.0, "error", type(exc).__name__)
            run.done(flight, result)

    def _cut(self, flight: _Flight, deadline: float) -> ScrapeResult:
        flight.abort()
        return self._result(flight.target, deadline, "deadline", f"no answer within the {deadline:g}s tick deadline")

    def _unreached(self, target: Target, detail: str) -> ScrapeResult:
        if detail != NOT_REACHED:
            return self._result(target, 0.0, "error", detail)
        return replace(self._result(target, 0.0, "deadline", NOT_REACHED), reached=False)

    def _environment(self, url: str) -> tuple[dict[str, str], str, tuple[str, str] | None]:
        """What requests would take from the environment for `url`: the proxies (HTTP_PROXY, HTTPS_PROXY,
        ALL_PROXY, less NO_PROXY), the CA bundle (REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE, else certifi's)
        and ~/.netrc credentials. Read once per URL: reading it costs more than parsing the page when the
        environment is large."""
        hit = self._env.get(url)
        if hit is None:
            self._trim(self._env)
            proxies = requests.utils.get_environ_proxies(url)
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
            hit = self._env[url] = (proxies, verify, requests.utils.get_netrc_auth(url))
        return hit

    def _route(self, url: str) -> _Route:
        route = self._routes.get(url)
        if route is None:
            scheme = url.partition("://")[0].lower()
            if scheme not in ("http", "https"):
                raise _Failed("error", "invalid metrics URL")
            proxies, verify, netrc = self._environment(url)
            if scheme == "https" and not os.path.exists(verify):
                raise _Failed("error", f"CA bundle not found: {verify}")
            proxy = requests.utils.select_proxy(url, proxies)
            if proxy:
                proxy = requests.utils.prepend_scheme_if_needed(proxy, "http")  # type: ignore[no-untyped-call]  # unannotated in types-requests
            self._trim(self._routes)
            kept = self._session.keep(url)
            route = self._routes[url] = _Route(self._session.manager(proxy or None, verify, kept), netrc, kept)
        return route

    def _trim(self, cache: dict[str, Any]) -> None:
        if len(cache) > _CACHE_MAX:
            cache.clear()

    # -- one target --------------------------------------------------------------------------------
    def _fetch(self, flight: _Flight, end: float) -> ScrapeResult:
        target = flight.target
        started = time.monotonic()
        budget = min(target.timeout, end - started)
        if budget <= 0 or flight.aborted:
            return replace(self._result(target, 0.0, "deadline", NOT_REACHED), reached=False)
        # Which limit stops us decides the slug: the member's own timeout, or the tick's deadline.
        late: Late = "timeout" if target.timeout <= end - started else "deadline"
        text = ""
        try:
            text = self._get(flight, started + budget, budget, late)
            sample = specs.extract(text, target.engine_type, target.keys)
            if sample.slots is None and specs.base_engine_type(target.engine_type) == "llamacpp":
                sample = replace(sample, slots=self._read_slots(flight, started + budget, budget, late))
        except _Failed as exc:
            return self._result(target, time.monotonic() - started, exc.reason, exc.detail)
        except MetricsError as exc:
            # Only on failure: what the page looks like, so `check` can name a wrong engine_type.
            looks_like = specs.detect(text) or "" if exc.reason == "missing-metric" else ""
            return replace(self._result(target, time.monotonic() - started, exc.reason, exc.detail), detected=looks_like)
        except Exception as exc:  # noqa: BLE001 - a worker's failure becomes that member's error
            reason, detail = _classify(exc, budget, late)
            if flight.aborted:
                reason, detail = "deadline", "cut off at the tick deadline"
            return self._result(target, time.monotonic() - started, reason, detail)
        return ScrapeResult(target.member, self.clock.monotonic(), sample=sample, duration=time.monotonic() - started)

    def _read_slots(self, flight: _Flight, stop_at: float, budget: float, late: Late) -> int | None:
        """A llama.cpp server's `total_slots` from its /props, cached for PROPS_TTL; None when unknown
        (no /props, a sidecar target, not JSON): a missing slot count never fails the scrape."""
        url = props_url(flight.target.url)
        cached = self._slots.get(url)
        now = time.monotonic()
        if cached is not None and now - cached[1] < PROPS_TTL:
            return cached[0]
        slots: int | None = None
        try:
            value = json.loads(self._get(flight, stop_at, budget, late, url=url)).get("total_slots")
            slots = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
        except (_Failed, ValueError, AttributeError, OSError, u3.HTTPError):
            slots = None
        self._slots[url] = (slots, now)
        return slots

    def _get(self, flight: _Flight, stop_at: float, budget: float, late: Late, url: str | None = None) -> str:
        """GET the page (or `url`, on the same target) and return its text, within `stop_at` (monotonic) in total."""
        target = flight.target
        url = url or target.url
        route = self._route(url)
        headers = _headers(target, target.auth or route.netrc)
        for hop in range(_MAX_REDIRECTS + 1):
            if not route.kept:
                headers = {**headers, "Connection": "close"}
            left = stop_at - time.monotonic()
            if left <= 0:
                raise _Failed(late, f"no response within {budget:.2g}s")
            response = route.manager.urlopen(
                "GET", url, headers=headers, timeout=urllib3.Timeout(connect=left, read=left),
                retries=False, redirect=False, preload_content=False, decode_content=True,
            )
            consumed = False
            try:
                if not flight.attach(response):
                    raise _Failed("deadline", "cut off at the tick deadline")
                status = response.status
                location = response.headers.get("Location") if status in _REDIRECTS else None
                if location:
                    if hop == _MAX_REDIRECTS:
                        raise _Failed("error", "too many redirects")
                    url = _redirect(url, location)
                    consumed = route.kept and self._skip_body(response, stop_at, budget, late)
                    route = self._route(url)
                    continue
                if not 200 <= status < 300:
                    raise _Failed(http_error(status), (response.reason or "")[:80])
                body = self._read_body(response, stop_at, budget, late)
                consumed = route.kept  # else the connection is closed below: the socket bound
                if flight.aborted:  # a shutdown read ends like EOF: never parse a truncated page
                    raise _Failed("deadline", "cut off at the tick deadline")
            finally:
                if not consumed:  # never hand a half-read connection back to the pool
                    response.close()
                response.release_conn()
            return body.decode("utf-8-sig", errors="replace")  # a BOM would hide the first line
        raise AssertionError("unreachable")

    def _skip_body(self, response: urllib3.BaseHTTPResponse, stop_at: float, budget: float, late: Late) -> bool:
        """Read a redirect's (small) body so its connection can be reused; True when read to the end."""
        length = response.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > _REDIRECT_BODY_MAX:
            return False
        size = 0
        try:
            for chunk in _pieces(response, stop_at):
                size += len(chunk)
                if size > _REDIRECT_BODY_MAX or time.monotonic() > stop_at:
                    return False
        except (TimeoutError, u3.ReadTimeoutError):
            raise _Failed(late, f"no response within {budget:.2g}s") from None
        return True

    def _read_body(self, response: urllib3.BaseHTTPResponse, stop_at: float, budget: float, late: Late) -> bytes:
        """Read the (decompressed) body in pieces, checking size and the total time between pieces."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes and not response.headers.get("Content-Encoding"):
            raise _Failed("too-large", f"Content-Length {int(length)} > {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in _pieces(response, stop_at):
                size += len(chunk)
                if size > self.max_bytes:  # counted after decompression, so a gzip bomb stops here too
                    raise _Failed("too-large", f"body over {self.max_bytes} bytes")
                chunks.append(chunk)
                if time.monotonic() > stop_at:
                    raise TimeoutError
        except (TimeoutError, u3.ReadTimeoutError):
            raise _Failed(late, f"page incomplete after {size} bytes in {budget:.2g}s") from None
        return b"".join(chunks)

    def _result(self, target: Target, duration: float, reason: ScrapeError, detail: str) -> ScrapeResult:
        return ScrapeResult(
            target.member,
            self.clock.monotonic(),
            error=reason,
            detail=_redact(detail, target.secrets()),
            duration=max(0.0, duration),
        )


def props_url(metrics_url: str) -> str:
    """llama.cpp's /props beside its metrics path: http://h:p/metrics -> http://h:p/props (a path prefix kept)."""
    parts = urlsplit(metrics_url)
    base = parts.path.rsplit("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}{base}/props"


def _headers(target: Target, auth: tuple[str, str] | None) -> dict[str, str]:
    """The request headers, as requests built them: its defaults (with our User-Agent and Accept), then
    the target's (matched case-insensitively), then basic auth, which replaces a bearer header."""
    headers = dict(_DEFAULT_HEADERS)
    for name, value in target.headers:
        for have in [h for h in headers if h.lower() == name.lower()]:
            del headers[have]
        headers[name] = value
    if auth:
        for have in [h for h in headers if h.lower() == "authorization"]:
            del headers[have]
        headers["Authorization"] = make_headers(basic_auth=f"{auth[0]}:{auth[1]}")["authorization"]
    return headers


def _redirect(url: str, location: str) -> str:
    """The next URL: followed only to the same scheme, host and port (so credentials never leave the
    origin either). Anywhere else fails the scrape, naming where it pointed (no path, no query)."""
    new = urljoin(url, location)
    if _origin(new) != _origin(url):
        parts = urlsplit(new)
        where = f"{parts.scheme}://{parts.hostname or '?'}:{_port(parts)}" if parts.scheme else "?"
        raise _Failed("error", f"redirect to another host not followed: {where} (only the same scheme, host and port)")
    return new


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), _port(parts)


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None


def _pieces(raw: urllib3.BaseHTTPResponse, stop_at: float) -> Iterator[bytes]:
    """Yield the body as it arrives. read1 returns after one socket read, so the caller sees time pass
    even when a server trickles bytes; the socket timeout shrinks to the time left before each read."""
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2
    while True:
        _set_read_timeout(raw, stop_at - time.monotonic())
        chunk = read1(_CHUNK, decode_content=True) if read1 else raw.read(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _set_read_timeout(raw: urllib3.BaseHTTPResponse, remaining: float) -> None:
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(remaining, 0.01))
        except OSError:
            pass


def _shutdown(response: urllib3.BaseHTTPResponse) -> None:
    """Unblock a read in another thread (urllib3 >= 2.3 has HTTPResponse.shutdown for exactly this)."""
    try:
        response.shutdown()
    except Exception:  # noqa: BLE001 - best effort
        sock = getattr(getattr(response, "connection", None), "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (urllib3 -> socket/ssl)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = [*getattr(e, "args", ()), getattr(e, "reason", None), e.__cause__, e.__context__]
        stack += [x for x in linked if isinstance(x, BaseException)]


def _classify(exc: Exception, budget: float, late: Late) -> tuple[ScrapeError, str]:
    """Map a urllib3/socket exception to (reason slug, safe detail)."""
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, (ssl.SSLError, u3.SSLError)):
            return "tls", _tls_detail(chain)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused", "connection refused"
    if isinstance(exc, (u3.LocationValueError, u3.URLSchemeUnknown)):  # before the timeouts: ProxySchemeUnknown
        return "error", "invalid metrics URL"
    # urllib3's NewConnectionError (refused, unreachable, no such name) is a ConnectTimeoutError too
    if isinstance(exc, u3.ConnectTimeoutError) and not isinstance(exc, u3.NewConnectionError):
        return late, f"no connection within {budget:.2g}s"
    if any(isinstance(e, (u3.TimeoutError, socket.timeout, TimeoutError)) and not isinstance(e, u3.NewConnectionError)
           for e in chain):
        return late, f"no response within {budget:.2g}s"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "error", "name resolution failed"
    if any(isinstance(e, u3.DecodeError) for e in chain):
        return "error", "body could not be decompressed"
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in chain):
        return "error", "connection reset"
    if any(isinstance(e, u3.ProtocolError) for e in chain):
        return "error", "connection closed mid-response"
    return "error", type(exc).__name__


def _tls_detail(chain: list[BaseException]) -> str:
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {e.verify_message}"[:_DETAIL_MAX]
    for e in chain:
        if isinstance(e, ssl.SSLError) and e.reason:
            return f"TLS error: {e.reason}"[:_DETAIL_MAX]
    return "TLS handshake failed"


def _redact(detail: str, secrets: tuple[str, ...]) -> str:
    return redact.scrub(detail, secrets)[:_DETAIL_MAX]
