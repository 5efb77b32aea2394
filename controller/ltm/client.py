"""`BigIPClient`: the only code that talks iControl REST.

It is assembled from three neighbours, each with the why of its part:
`controller.ltm.replies` translates every library error and reply, at the boundary, into the tree in
`controller.errors` (the table of what raises what lives there); `controller.ltm.paths` holds the
REST paths and parses pool documents into model objects; `controller.ltm.writes` does the PATCH
batches and transactions of `apply`. Tokens are `controller.ltm.token`'s, deadlines `controller.ltm.deadline`'s.

Every call has one deadline, `f5.timeout`, for connect, send, headers and the whole body (a reply
trickling one byte per second is cut there: `controller.ltm.deadline`), cut further to what is left of
the tick's BIG-IP budget (`f5.tick_budget`, started by `begin_tick`). A call that hits its deadline
is not retried in the same tick, and after the first write that times out the tick writes no more.

Retryable errors are retried up to `ATTEMPTS` times with exponential backoff and full jitter;
`sleep` is injectable so tests run instantly. Transaction commits are never retried (the next
tick re-reads BIG-IP and decides again).

A 401 drops the token and allows one fresh login and one retry; BIG-IP's 401 for a role that may
not do this ("Authorization failed: user=...") is an AuthError at once, since a new token will not help.
So is any 401 on `/mgmt/tm/cm/*` that does not name the token (e.g. a bare "Unauthorized"): restricted
roles (Auditor, some Manager setups) are refused there, and logging in again would only cost a token
per call. With `f5.auth: basic` (`token.BasicAuth`) no call carries a token, so a 401 is never retried.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import requests

from controller.clock import Clock, SystemClock
from controller.config.schema import F5Config
from controller.errors import (
    AuthError,
    BigIPError,
    BigIPTimeout,
    BigIPUnreachable,
    PermanentBigIPError,
    ReplyTooLargeError,
    RetryableBigIPError,
)
from controller.ltm import deadline
from controller.ltm.paths import (
    RATIO_MAX,
    RATIO_MIN,
    WRITABLE_FIELDS,
    Malformed,
    check_fields,
    check_pool_fields,
    dig,
    member_path,
    parse_pool,
    pool_path,
    quote_segment,
)
from controller.ltm.replies import MESSAGE_MAX, access_denied, decode, role_denied, token_refused, translate_exception
from controller.ltm.token import HEADER as TOKEN_HEADER
from controller.ltm.token import BasicAuth, TokenManager
from controller.ltm.tokenstore import TokenStore
from controller.ltm.writes import COORDINATION_HEADER, TRANSACTION_PATH, TRANSACTION_POLLS, ApplyResult, Writer, refuse_bad
from controller.model import Member, MemberPlan, PoolRef, PoolState, TokenCounters
from controller.redact import scrub as _scrub
from controller.redact import token_urls as _token_urls

__all__ = [  # what callers import from here, wherever it now lives
    "ATTEMPTS", "BACKOFF_BASE", "BACKOFF_MAX", "COORDINATION_HEADER", "MESSAGE_MAX", "RATIO_MAX", "RATIO_MIN",
    "TRANSACTION_PATH", "TRANSACTION_POLLS", "WRITABLE_FIELDS", "ApplyResult", "BigIPClient", "check_fields",
    "member_path", "pool_path",
]

log = logging.getLogger(__name__)

ATTEMPTS = 3  # tries per call for retryable errors
BACKOFF_BASE = 0.5  # seconds; delays are uniform in [0, base·2^n], n = 0, 1, ...
BACKOFF_MAX = 5.0


CM_PREFIX = "/mgmt/tm/cm/"  # failover state, devices, device groups: refused to restricted roles


def _needs(method: str, path: str) -> str:
    """What the refused call needed, for the message."""
    if path.startswith(CM_PREFIX):
        return ("; reading the failover state (cm/*) needs a role that may read it (e.g. Administrator), or set "
                "f5.standalone: true for a unit with no peer")
    if method != "GET":
        return "; writing ratio or connectionLimit needs the Manager role (or higher) on the pool's partition"
    return ""


class _TokenPathFilter(logging.Filter):
    """urllib3 logs request lines at DEBUG; token URLs carry the token. Scrub them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - never break logging
            return True
        if "/mgmt/shared/authz/tokens/" in text:
            record.msg, record.args = _token_urls(text), ()
        return True


_URLLIB3_FILTER = _TokenPathFilter()


class BigIPClient:
    """One BIG-IP, one token, one HTTP session. Thread-safe for concurrent member writes."""

    def __init__(
        self,
        cfg: F5Config,
        *,
        clock: Clock | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        token_store: TokenStore | None = None,
    ):
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self._random = random.Random()
        if session is None:
            session = requests.Session()
            size = max(10, cfg.write_concurrency)
            session.mount("https://", deadline.DeadlineAdapter(pool_connections=1, pool_maxsize=size))
            session.mount("http://", deadline.DeadlineAdapter(pool_connections=1, pool_maxsize=size))
        self.session = session
        self._base = cfg.base_url
        self._calls_lock = threading.Lock()
        self.calls = 0
        self._request_hooks: list[Callable[[str, int, float], None]] = []
        self.budget = deadline.TickBudget()
        self.tokens: TokenManager | BasicAuth = (
            BasicAuth(cfg, clock=self.clock) if cfg.auth == "basic"
            else TokenManager(cfg, self._request, clock=self.clock, store=token_store))
        logging.getLogger("urllib3.connectionpool").addFilter(_URLLIB3_FILTER)  # idempotent
        if cfg.verify_tls is False:
            # Scoped to this host, so verification warnings for anything else in the process stay on.
            # (warnings.catch_warnings is not thread-safe; a host-specific filter is.)
            from urllib3.exceptions import InsecureRequestWarning

            host = re.escape(cfg.host.strip("[]"))
            warnings.filterwarnings(
                "ignore", message=rf"Unverified HTTPS request is being made to host '\[?{host}\]?'",
                category=InsecureRequestWarning,
            )

    def __repr__(self) -> str:
        return f"BigIPClient(host={self.cfg.host!r}, user={self.cfg.username!r}, calls={self.calls})"

    # -- reads -------------------------------------------------------------------------------

    def read_pool(self, ref: PoolRef) -> PoolState:
        """The pool and its members in one GET. A reply of the wrong shape is PermanentBigIPError."""
        path = pool_path(ref)
        reply = self._call("GET", path, params={"expandSubcollections": "true"})
        try:
            return parse_pool(ref, reply)
        except Malformed as e:
            raise PermanentBigIPError(f"malformed pool reply: {_scrub(str(e), self.tokens.secrets())}",
                                      status=200, method="GET", path=path) from None

    def get(self, path: str, *, retry: bool = True) -> Any:
        """One authenticated GET of any iControl REST path (e.g. cm/failover-status), decoded JSON."""
        return self._call("GET", path, retry=retry)

    def version(self) -> str:
        """TMOS version, e.g. "16.1.3"."""
        path = "/mgmt/tm/sys/version"
        reply = self._call("GET", path)
        entries = dig(reply, "entries")
        for entry in entries.values() if isinstance(entries, dict) else ():
            value = dig(entry, "nestedStats", "entries", "Version", "description")
            if isinstance(value, str) and value:
                return value
        raise PermanentBigIPError("malformed version reply: no entries.*.nestedStats.entries.Version",
                                  status=200, method="GET", path=path)

    def device_groups(self) -> list[dict[str, Any]]:
        """Device groups as `{"name", "type", "autoSync"}`: a sync-failover group with autoSync
        enabled turns every write into a config sync."""
        reply = self._call("GET", "/mgmt/tm/cm/device-group")
        items = reply.get("items", []) if isinstance(reply, dict) else []
        return [
            {"name": i.get("name", ""), "type": i.get("type", ""), "autoSync": i.get("autoSync", "")}
            for i in items if isinstance(i, dict)
        ] if isinstance(items, list) else []

    def whoami(self) -> dict[str, Any]:
        """Best effort: `{"name", "displayName", "partitionAccess": [{"name", "role"}]}` with what is readable.

        A remote (LDAP/RADIUS) user has no local record (404) and a low role may not read users
        (401): those parts are left out. Never returns the password hash `encryptedPassword`.
        """
        out: dict[str, Any] = {}
        user = quote_segment(self.cfg.username)
        try:
            authz = self._call("GET", f"/mgmt/shared/authz/users/{user}")
            if isinstance(authz, dict):
                out.update({k: authz[k] for k in ("name", "displayName") if isinstance(authz.get(k), str)})
        except BigIPError as e:
            if e.status not in (401, 403, 404):
                raise
        try:
            tm = self._call("GET", f"/mgmt/tm/auth/user/{user}")
            access = tm.get("partitionAccess") if isinstance(tm, dict) else None
            if isinstance(access, list):
                out["partitionAccess"] = [
                    {"name": a.get("name", ""), "role": a.get("role", "")} for a in access if isinstance(a, dict)
                ]
        except BigIPError as e:
            if e.status not in (401, 403, 404):
                raise
        return out

    # -- writes ------------------------------------------------------------------------------

    def patch_member(self, ref: PoolRef, member: Member, fields: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        """PATCH only `fields` (ratio, connectionLimit, description) of one member. Never PUT.

        Values are checked before any call: a bad one raises PermanentBigIPError and sends nothing.
        """
        path = member_path(ref, member)
        problem = check_fields(fields)
        if problem:
            raise PermanentBigIPError(f"refused locally, nothing sent: {problem}", method="PATCH", path=path)
        if not fields:
            return
        self._call("PATCH", path, json=dict(fields), headers=dict(headers) if headers else None)

    def patch_pool(self, ref: PoolRef, fields: Mapping[str, Any]) -> None:
        """PATCH only `fields` of the pool itself (queueTimeLimit: the opt-in goodput mode). Never its
        `members` (that would replace them). Values are checked before any call: a bad one raises
        PermanentBigIPError and sends nothing. One call, outside any transaction: one field, one change."""
        path = pool_path(ref)
        problem = check_pool_fields(fields)
        if problem:
            raise PermanentBigIPError(f"refused locally, nothing sent: {problem}", method="PATCH", path=path)
        if fields:
            self._call("PATCH", path, json=dict(fields))

    def apply(self, ref: PoolRef, plans: Sequence[MemberPlan]) -> ApplyResult:
        """Write each plan's `.changes` (plans without changes are skipped), per `cfg.write_mode`.

        "patch": one PATCH per member, `cfg.write_concurrency` at a time; one member's failure
        (including 404: removed since the read) is recorded and does not stop the others.
        "transaction": all changes in one atomic commit; any failure fails every plan.
        `calls` is the number of HTTP requests made during this apply.
        """
        start = self.calls
        result = ApplyResult()
        todo = refuse_bad(ref, plans, result)
        if todo:
            writer = Writer(call=self._call, patch=self.patch_member, sleep=self._sleep,
                            secrets=self.tokens.secrets, poll_delay=BACKOFF_BASE)
            if self.cfg.write_mode == "transaction":
                writer.transaction(ref, todo, result)
            else:
                writer.patches(ref, todo, result, concurrency=self.cfg.write_concurrency)
        result.calls = self.calls - start
        return result

    def observe_requests(self, hook: Callable[[str, int, float], None]) -> None:
        """`hook(method, status, seconds until the reply)` after every call that got a reply (once per hook)."""
        if hook not in self._request_hooks:
            self._request_hooks.append(hook)

    def _observed(self, method: str, resp: requests.Response) -> None:
        for hook in list(self._request_hooks):
            try:
                hook(method, resp.status_code, resp.elapsed.total_seconds())
            except Exception:  # an observer must never break a BIG-IP call
                log.debug("bigip_request_hook_failed", exc_info=True)

    def token_counters(self) -> TokenCounters:
        return self.tokens.counters()

    def unit(self) -> str:
        """This client's one unit (no call; `controller.ltm.failover` confirms which unit is active)."""
        return self.cfg.host

    def close(self) -> None:
        """Delete the token (best effort). The session stays usable; a later call logs in again."""
        self.budget.end()
        self.tokens.close()

    def begin_tick(self, seconds: float | None = None) -> None:
        """Start one budget (`f5.tick_budget` unless given) for every BIG-IP call until `end_tick`."""
        self.budget.begin(self.cfg.tick_budget if seconds is None else seconds)

    def end_tick(self) -> None:
        self.budget.end()

    # -- HTTP --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        retry: bool = True,
    ) -> Any:
        """One authenticated call: JSON in, decoded JSON out, errors translated, retryable ones retried."""
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._authenticated(method, path, json, params, headers)
            except BigIPTimeout:
                raise  # its deadline (or the tick's budget) is gone: retrying would only stretch the tick
            except RetryableBigIPError as e:
                left = self.budget.remaining()
                if attempt == attempts or (left is not None and left <= 0):
                    raise
                delay = self._random.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1)))
                delay = delay if left is None else min(delay, left)
                log.debug("bigip_call_retry", extra={"method": method, "path": e.path, "attempt": attempt,
                                                     "attempts": attempts, "delay_seconds": round(delay, 2),
                                                     "error": str(e)})
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _authenticated(self, method: str, path: str, json: Any, params: Mapping[str, str] | None,
                       headers: Mapping[str, str] | None) -> Any:
        extra = dict(headers or {})
        sent = self.tokens.header()
        try:
            return self._request(method, path, json=json, params=params, headers={**extra, **sent})
        except AuthError as e:
            if e.status != 401:
                raise
            if role_denied(e.message) or (path.startswith(CM_PREFIX) and not token_refused(e.message)):
                raise AuthError(f"permission denied ({e.message}){_needs(method, path)}", status=401,
                                method=method, path=e.path) from e
            if isinstance(self.tokens, BasicAuth):
                raise self.tokens.refused(e) from e
            log.info("bigip_token_rejected", extra={"error": e.message, "action": "login again"})
        except PermanentBigIPError as e:
            if e.status in (400, 403) and access_denied(e.message):
                raise AuthError(f"permission denied ({e.message}){_needs(method, path)}", status=e.status,
                                method=method, path=e.path) from e
            raise
        self.tokens.invalidate(sent)
        fresh = self.tokens.header()  # a refused login raises its own AuthError here
        try:
            return self._request(method, path, json=json, params=params, headers={**extra, **fresh})
        except AuthError as e:
            raise AuthError(f"refused again after a fresh login: {e.message}", status=e.status,
                            method=method, path=path) from e

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        redact: Iterable[str] = (),
    ) -> Any:
        """One HTTP exchange, no auth, no retry: returns decoded JSON or raises a translated BigIPError.

        `verify` and `timeout` go on every request: requests ignores `Session.verify` when
        REQUESTS_CA_BUNDLE is set, but not a per-request `verify`.
        """
        secrets = (*redact, *self.tokens.secrets(), *(headers or {}).get(TOKEN_HEADER, "").split())
        label = _scrub(path, secrets)
        try:
            seconds = self.budget.deadline(timeout if timeout is not None else self.cfg.timeout)
        except deadline.BudgetSpent as e:
            raise BigIPTimeout(f"not sent: {e}", method=method, path=label) from None
        with self._calls_lock:
            self.calls += 1
        with deadline.scope(seconds) as call:
            try:
                resp = self.session.request(
                    method, self._base + path, json=json, params=params, headers=dict(headers or {}),
                    verify=self.cfg.verify_tls, timeout=seconds, allow_redirects=False, stream=True,
                )
                _read_capped(resp, self.cfg.max_reply_bytes, method, label)  # the whole body, inside the deadline
            except requests.RequestException as e:
                error = translate_exception(e, method, label, secrets, where=f"{self.cfg.host}:{self.cfg.port}",
                                            seconds=seconds, expired=call.expired)
                leaks = "/authz/tokens/" in str(e) or any(s in str(e) for s in secrets)
                raise error from (None if leaks else e)  # a cause quoting a token URL would reach tracebacks
            except OSError as e:  # requests raises a bare OSError for a CA bundle path that does not exist
                if call.expired:
                    raise BigIPTimeout(f"no complete reply within {seconds:.3g}s", method=method, path=label) from None
                raise BigIPUnreachable(
                    f"TLS CA bundle not usable: {_scrub(str(e), secrets)}; check f5.verify_tls", method=method, path=label,
                ) from None
            if call.expired:
                raise BigIPTimeout(f"no complete reply within {seconds:.3g}s", method=method, path=label)
        self._observed(method, resp)
        return decode(resp, method, label, secrets)


_READ_CHUNK = 256 * 1024


def _read_capped(resp: requests.Response, cap: int, method: str, path: str) -> None:
    """Read the whole (decompressed) body into `resp`, refusing one larger than `cap` bytes: declared
    (Content-Length) before a byte of it is read, or counted as it arrives (so a gzip bomb stops too)."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap and not resp.headers.get("Content-Encoding"):
        resp.close()
        raise ReplyTooLargeError(f"reply of {int(declared):,} bytes refused: larger than f5.max_reply_mb "
                                 f"({cap:,} bytes)", status=resp.status_code, method=method, path=path)
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(_READ_CHUNK):
        size += len(chunk)
        if size > cap:
            resp.close()
            raise ReplyTooLargeError(f"reply refused after {size:,} bytes: larger than f5.max_reply_mb ({cap:,} bytes)",
                                     status=resp.status_code, method=method, path=path)
        chunks.append(chunk)
    resp._content = b"".join(chunks)  # noqa: SLF001 - what requests does itself after reading the body
