"""Fetch the engines' /metrics pages concurrently, each within its own timeout and the tick's deadline.

One `Scraper` lives as long as the daemon: a persistent requests.Session keeps connections to the
engines alive between ticks, and a fixed thread pool bounds the concurrency. `scrape()` never raises
and always returns by the deadline; every member gets a `ScrapeResult` with either a Sample or a
short error slug:

    refused, timeout, deadline, http-<status>, too-large, tls, not-prometheus, missing-metric,
    bad-value, error

A requests timeout only bounds each socket wait, so a server that trickles one byte a second would
hold a request for ever. The body is therefore read in small pieces against a total per-request
budget of min(target.timeout, time left in the tick), and at the deadline any read still in flight
is shut down from the calling thread.

Details never carry credentials: they are built here from fixed phrases, and the target's secrets
are redacted from them anyway.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter

from controller import __version__, engines
from controller.clock import Clock, SystemClock
from controller.config import EngineKeys, PoolConfig
from controller.errors import MetricsError
from controller.model import Member, ScrapeResult

#: The classic text format. Never ask for OpenMetrics: some servers then escape colons in names.
ACCEPT = "text/plain;version=0.0.4"
_CHUNK = 64 * 1024
_POOLS_MIN = 128  # keep-alive host pools to start with; grown to the number of members scraped
_DETAIL_MAX = 200


@dataclass(frozen=True)
class Target:
    """One member's /metrics endpoint and how to read it. Secrets are kept out of repr."""

    member: str  # Member.key; results are keyed by it
    url: str
    engine_type: str
    timeout: float
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    auth: Optional[tuple[str, str]] = field(default=None, repr=False)
    keys: Optional[EngineKeys] = None

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a log line or a detail."""
        out = [v.split(" ", 1)[-1] for k, v in self.headers if k.lower() == "authorization"]
        if self.auth:
            out.append(self.auth[1])
        return tuple(s for s in out if s)


def target_for(member: Member, pool: PoolConfig, keys: Optional[EngineKeys]) -> Target:
    """The scrape target for one pool member, from the pool's `metrics` settings."""
    m = pool.metrics
    port = m.port or member.port
    path = m.path if m.path.startswith("/") else "/" + m.path
    headers = [("Accept", ACCEPT), ("Accept-Encoding", "gzip")]
    if m.api_key:
        headers.append(("Authorization", f"Bearer {m.api_key}"))
    auth = (m.user, m.password or "") if m.user else None
    url = f"{m.schema.lower()}://{member.scrape_host}:{port}{path}"
    return Target(member.key, url, pool.engine_type, m.timeout, tuple(headers), auth, keys)


class _Failed(Exception):
    """A scrape failure already classified into a reason slug and a safe detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Flight:
    """One request in progress, so the caller can cut its body read short at the deadline."""

    def __init__(self, target: Target):
        self.target = target
        self.response: Optional[requests.Response] = None
        self.aborted = False
        self.lock = threading.Lock()

    def attach(self, response: requests.Response) -> bool:
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


class Scraper:
    """Concurrent, bounded scraping of /metrics pages.

    `clock` stamps `ScrapeResult.at` (the controller's notion of time); the network budget is measured
    with the real monotonic clock, because sockets run in real time whatever clock the caller uses.
    """

    def __init__(
        self,
        max_workers: int = 32,
        max_bytes: int = 8 * 1024 * 1024,
        clock: Optional[Clock] = None,  # SystemClock() when None
        session: Optional[requests.Session] = None,
    ):
        self.max_bytes = max_bytes
        self.clock = clock or SystemClock()
        self._max_workers = max_workers
        self._hosts = 0  # endpoints the session's connection pools are sized for (0: a session we were given)
        self._env: dict[str, tuple[dict, object, object]] = {}  # url -> (proxies, verify, netrc auth)
        if session is None:
            session, self._hosts = _session(max_workers), _POOLS_MIN
            session.trust_env = False  # the environment is read once per URL instead (`_environment`)
        self._session = session
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="scrape")

    def __enter__(self) -> "Scraper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def scrape(self, targets: Sequence[Target], deadline: float) -> dict[str, ScrapeResult]:
        """Scrape every target; return by `deadline` seconds from now with one result per member."""
        end = time.monotonic() + max(0.0, deadline)
        self._fit_pools(len(targets))
        flights: dict[Future, _Flight] = {}
        for target in targets:
            flight = _Flight(target)
            try:
                flights[self._pool.submit(self._fetch, flight, end)] = flight
            except RuntimeError:  # the pool was closed: report rather than raise
                flights[_done(self._result(target, 0.0, "error", "scraper closed"))] = flight
        wait(flights, timeout=max(0.0, end - time.monotonic()))
        results: dict[str, ScrapeResult] = {}
        for future, flight in flights.items():
            results[flight.target.member] = self._collect(future, flight, deadline)
        return results

    def _environment(self, url: str) -> tuple[Optional[dict], object, object]:
        """What requests would take from the environment for `url` (proxies and no_proxy, REQUESTS_CA_BUNDLE /
        CURL_CA_BUNDLE, ~/.netrc), read once per URL: requests reads it on every request, which costs
        more than parsing the page when the environment is large. A session we were given is left to
        requests (proxies None, verify True: its own per-request merge applies)."""
        if self._session.trust_env:
            return None, True, None
        hit = self._env.get(url)
        if hit is None:
            if len(self._env) > 4 * max(self._hosts, _POOLS_MIN):
                self._env.clear()
            proxies = requests.utils.get_environ_proxies(url)
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            hit = self._env[url] = (proxies, verify, requests.utils.get_netrc_auth(url))
        return hit

    def _fit_pools(self, endpoints: int) -> None:
        """Keep one keep-alive pool per endpoint. urllib3 keeps at most `pool_connections` host pools and
        closes the least recently used beyond that: with more members than pools, every scrape would open
        a new TCP connection (and close another member's). So the pools grow with the fleet."""
        if not self._hosts or endpoints <= self._hosts:
            return
        self._hosts = max(endpoints + endpoints // 4, 2 * self._hosts)
        old = self._session.get_adapter("http://")
        adapter = _adapter(self._hosts, self._max_workers)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        old.close()  # its idle connections; a request still holding one closes it when done

    # -- one target --------------------------------------------------------------------------------
    def _collect(self, future: Future, flight: _Flight, deadline: float) -> ScrapeResult:
        if not future.done():
            future.cancel()
            flight.abort()
            return self._result(flight.target, deadline, "deadline", f"no answer within the {deadline:g}s tick deadline")
        try:
            return future.result()
        except Exception as exc:  # _fetch catches everything; this is a last guard
            return self._result(flight.target, 0.0, "error", type(exc).__name__)

    def _fetch(self, flight: _Flight, end: float) -> ScrapeResult:
        target = flight.target
        started = time.monotonic()
        budget = min(target.timeout, end - started)
        if budget <= 0 or flight.aborted:
            return self._result(target, 0.0, "deadline", "tick deadline passed before the request started")
        # Which limit stops us decides the slug: the member's own timeout, or the tick's deadline.
        late = "timeout" if target.timeout <= end - started else "deadline"
        try:
            text = self._get(flight, started + budget, budget, late)
            sample = engines.extract(text, target.engine_type, target.keys)
        except _Failed as exc:
            return self._result(target, time.monotonic() - started, exc.reason, exc.detail)
        except MetricsError as exc:
            return self._result(target, time.monotonic() - started, exc.reason, exc.detail)
        except Exception as exc:
            reason, detail = _classify(exc, budget, late)
            if flight.aborted:
                reason, detail = "deadline", "cut off at the tick deadline"
            return self._result(target, time.monotonic() - started, reason, detail)
        return ScrapeResult(target.member, self.clock.monotonic(), sample=sample, duration=time.monotonic() - started)

    def _get(self, flight: _Flight, stop_at: float, budget: float, late: str) -> str:
        """GET the page and return its text, within `stop_at` (monotonic) in total."""
        target = flight.target
        proxies, verify, netrc = self._environment(target.url)
        response = self._session.get(
            target.url,
            headers=dict(target.headers),
            auth=target.auth or netrc,
            timeout=(budget, budget),
            stream=True,
            proxies=proxies,
            verify=verify,  # per request, so REQUESTS_CA_BUNDLE still applies
        )
        try:
            if not flight.attach(response):
                raise _Failed("deadline", "cut off at the tick deadline")
            if not 200 <= response.status_code < 300:
                raise _Failed(f"http-{response.status_code}", (response.reason or "")[:80])
            body = self._read_body(response, stop_at, budget, late)
            if flight.aborted:  # a shutdown read ends like EOF: never parse a truncated page
                raise _Failed("deadline", "cut off at the tick deadline")
        finally:
            response.close()
        return body.decode("utf-8-sig", errors="replace")  # a BOM would hide the first line

    def _read_body(self, response: requests.Response, stop_at: float, budget: float, late: str) -> bytes:
        """Read the (decompressed) body in pieces, checking size and the total time between pieces."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_bytes and not response.headers.get("Content-Encoding"):
            raise _Failed("too-large", f"Content-Length {int(length)} > {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in _pieces(response.raw, stop_at):
                size += len(chunk)
                if size > self.max_bytes:  # counted after decompression, so a gzip bomb stops here too
                    raise _Failed("too-large", f"body over {self.max_bytes} bytes")
                chunks.append(chunk)
                if time.monotonic() > stop_at:
                    raise TimeoutError
        except (TimeoutError, u3.ReadTimeoutError):
            raise _Failed(late, f"page incomplete after {size} bytes in {budget:.2g}s") from None
        return b"".join(chunks)

    def _result(self, target: Target, duration: float, reason: str, detail: str) -> ScrapeResult:
        return ScrapeResult(
            target.member,
            self.clock.monotonic(),
            error=reason,
            detail=_redact(detail, target.secrets()),
            duration=max(0.0, duration),
        )


def _session(max_workers: int) -> requests.Session:
    """One keep-alive pool per engine host (many hosts; `Scraper._fit_pools` grows their number with the
    fleet), up to max_workers connections each; no retries: a retry inside one tick only eats the
    deadline, and the next tick is the retry."""
    session = requests.Session()
    adapter = _adapter(_POOLS_MIN, max_workers)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 3  # vLLM versions that mount /metrics as an ASGI app redirect to /metrics/
    session.headers["User-Agent"] = f"f5-llm-ratio/{__version__}"
    session.headers["Accept"] = ACCEPT  # also for hand-built targets that carry no Accept of their own
    return session


def _adapter(hosts: int, max_workers: int) -> HTTPAdapter:
    return HTTPAdapter(pool_connections=hosts, pool_maxsize=max_workers, max_retries=0)


def _pieces(raw, stop_at: float) -> Iterator[bytes]:
    """Yield the body as it arrives. read1 returns after one socket read, so the caller sees time pass
    even when a server trickles bytes; the socket timeout shrinks to the time left before each read."""
    read1 = getattr(raw, "read1", None)  # urllib3 >= 2
    while True:
        _set_read_timeout(raw, stop_at - time.monotonic())
        chunk = read1(_CHUNK, decode_content=True) if read1 else raw.read(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _set_read_timeout(raw, remaining: float) -> None:
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(remaining, 0.01))
        except OSError:
            pass


def _shutdown(response: requests.Response) -> None:
    """Unblock a read in another thread (urllib3 >= 2.3 has HTTPResponse.shutdown for exactly this)."""
    try:
        response.raw.shutdown()
    except Exception:
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def _done(result: ScrapeResult) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> socket/ssl)."""
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


def _classify(exc: Exception, budget: float, late: str) -> tuple[str, str]:
    """Map a requests/urllib3/socket exception to (reason slug, safe detail)."""
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, ssl.SSLError) or isinstance(e, (requests.exceptions.SSLError, u3.SSLError)):
            return "tls", _tls_detail(chain)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused", "connection refused"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return late, f"no connection within {budget:.2g}s"
    if any(isinstance(e, (requests.exceptions.Timeout, u3.TimeoutError, socket.timeout, TimeoutError)) for e in chain):
        return late, f"no response within {budget:.2g}s"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "error", "name resolution failed"
    if any(isinstance(e, u3.DecodeError) for e in chain):
        return "error", "body could not be decompressed"
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in chain):
        return "error", "connection reset"
    if any(isinstance(e, u3.ProtocolError) for e in chain):
        return "error", "connection closed mid-response"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "error", "too many redirects"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return "error", "invalid metrics URL"
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
    for secret in secrets:
        detail = detail.replace(secret, "***")
    return detail[:_DETAIL_MAX]
