"""`BigIPClient`: the only code that talks iControl REST.

Every library error is translated here, at the boundary, into the tree in `controller.errors`:

| what happened                                        | raised                                   |
| ---------------------------------------------------- | ---------------------------------------- |
| no TCP connection, TLS failure, connect timeout       | BigIPUnreachable (retried)               |
| call deadline passed (connect+send+whole body), tick budget spent | BigIPTimeout (not retried this tick) |
| reset mid-reply                                       | RetryableBigIPError (retried)            |
| 500 "mcpd", any 503 (HTML: restjavad restarting), 502, 504 | RetryableBigIPError (retried)            |
| 404 "not registered", 404 without JSON, non-JSON 2xx  | RetryableBigIPError (retried)            |
| 401                                                   | token dropped, one re-login, one retry; then AuthError |
| 401 "Authorization failed: user=..." (role too low)  | AuthError at once, no re-login           |
| 400 "maximum active login tokens"                     | TokenLimitError                          |
| 404 with a JSON body                                  | NotFoundError                            |
| other 3xx/4xx                                         | PermanentBigIPError                      |
| other 5xx                                             | BigIPError (not retried)                 |
| a reply whose shape is wrong (`read_pool` etc.)       | PermanentBigIPError("malformed ...")     |

A malformed pool reply is *permanent*, not retryable: retrying the same GET returns the same
document, and the reconciler must write nothing to that pool this tick either way.

Every call has one deadline, `f5.timeout`, for connect, send, headers and the whole body (a reply
trickling one byte per second is cut there: `controller.deadline`), cut further to what is left of
the tick's BIG-IP budget (`f5.tick_budget`, started by `begin_tick`). A call that hits its deadline
is not retried in the same tick, and after the first write that times out the tick writes no more.

Retryable errors are retried up to `ATTEMPTS` times with exponential backoff and full jitter;
`sleep` is injectable so tests run instantly. Transaction commits are never retried (the next
tick re-reads BIG-IP and decides again).

Error messages carry BIG-IP's own `message` (first 200 characters; HTML pages summarised by
their <title>) and never a token or the password.
"""

from __future__ import annotations

import html
import json as jsonlib
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from controller import deadline
from controller.clock import Clock, SystemClock
from controller.config import F5Config
from controller.errors import (
    AuthError,
    BigIPError,
    BigIPTimeout,
    BigIPUnreachable,
    NotFoundError,
    PermanentBigIPError,
    RetryableBigIPError,
    TokenLimitError,
)
from controller.model import Member, MemberPlan, PoolRef, PoolState, TokenCounters, split_member_name
from controller.redact import scrub as _scrub
from controller.redact import token_urls as _token_urls
from controller.token import HEADER as TOKEN_HEADER
from controller.token import TokenManager, is_token_limit
from controller.tokenstore import TokenStore

log = logging.getLogger(__name__)

ATTEMPTS = 3  # tries per call for retryable errors
BACKOFF_BASE = 0.5  # seconds; delays are uniform in [0, base·2^n], n = 0, 1, ...
BACKOFF_MAX = 5.0
MESSAGE_MAX = 200  # characters of BIG-IP's message kept in ours

RATIO_MIN, RATIO_MAX = 1, 65535
WRITABLE_FIELDS = frozenset({"ratio", "connectionLimit", "description"})
COORDINATION_HEADER = "X-F5-REST-Coordination-Id"
TRANSACTION_PATH = "/mgmt/tm/transaction"
TRANSACTION_POLLS = 3  # GETs while a committed transaction is still being applied
_ANY_ADDRESS = frozenset({"any6", "any", "::", "0.0.0.0"})  # an FQDN template member's address

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_CERT_REASON = re.compile(r"certificate verify failed: ([^()'\"]+)")


@dataclass
class ApplyResult:
    """What `apply` did: members written, members not written (with why), HTTP calls spent."""

    applied: list[str] = field(default_factory=list)
    failed: list[tuple[str, BigIPError]] = field(default_factory=list)
    calls: int = 0
    deferred: list[str] = field(default_factory=list)  # not attempted: an earlier write timed out or the budget is spent


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


def pool_path(ref: PoolRef) -> str:
    return f"/mgmt/tm/ltm/pool/{_quote(ref.uri_name)}"


def member_path(ref: PoolRef, member: Member) -> str:
    """`.../members/~Partition~name`; a fullPath with a subPath gives `~Partition~sub~name`. `%` goes out as `%25`."""
    full = member.full_path if member.full_path.endswith("/" + member.name) else f"/{member.partition}/{member.name}"
    return f"{pool_path(ref)}/members/{_quote(full.replace('/', '~'))}"


def _quote(segment: str) -> str:
    return quote(segment, safe=":~")


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
        self.budget = deadline.TickBudget()
        self.tokens = TokenManager(cfg, self._request, clock=self.clock, store=token_store)
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
            return _parse_pool(ref, reply)
        except _Malformed as e:
            raise PermanentBigIPError(f"malformed pool reply: {_scrub(str(e), self.tokens.secrets())}",
                                      status=200, method="GET", path=path) from None

    def get(self, path: str, *, retry: bool = True) -> Any:
        """One authenticated GET of any iControl REST path (e.g. cm/failover-status), decoded JSON."""
        return self._call("GET", path, retry=retry)

    def version(self) -> str:
        """TMOS version, e.g. "16.1.3"."""
        path = "/mgmt/tm/sys/version"
        reply = self._call("GET", path)
        entries = _dig(reply, "entries")
        for entry in entries.values() if isinstance(entries, dict) else ():
            value = _dig(entry, "nestedStats", "entries", "Version", "description")
            if isinstance(value, str) and value:
                return value
        raise PermanentBigIPError("malformed version reply: no entries.*.nestedStats.entries.Version",
                                  status=200, method="GET", path=path)

    def device_groups(self) -> list[dict]:
        """Device groups as `{"name", "type", "autoSync"}`: a sync-failover group with autoSync
        enabled turns every write into a config sync."""
        reply = self._call("GET", "/mgmt/tm/cm/device-group")
        items = reply.get("items", []) if isinstance(reply, dict) else []
        return [
            {"name": i.get("name", ""), "type": i.get("type", ""), "autoSync": i.get("autoSync", "")}
            for i in items if isinstance(i, dict)
        ] if isinstance(items, list) else []

    def whoami(self) -> dict:
        """Best effort: `{"name", "displayName", "partitionAccess": [{"name", "role"}]}` with what is readable.

        A remote (LDAP/RADIUS) user has no local record (404) and a low role may not read users
        (401): those parts are left out. Never returns the password hash `encryptedPassword`.
        """
        out: dict = {}
        user = _quote(self.cfg.username)
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

    def patch_member(self, ref: PoolRef, member: Member, fields: dict, *, headers: Mapping[str, str] | None = None) -> None:
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

    def apply(self, ref: PoolRef, plans: Sequence[MemberPlan]) -> ApplyResult:
        """Write each plan's `.changes` (plans without changes are skipped), per `cfg.write_mode`.

        "patch": one PATCH per member, `cfg.write_concurrency` at a time; one member's failure
        (including 404: removed since the read) is recorded and does not stop the others.
        "transaction": all changes in one atomic commit; any failure fails every plan.
        `calls` is the number of HTTP requests made during this apply.
        """
        start = self.calls
        result = ApplyResult()
        todo: list[MemberPlan] = []
        for plan in plans:
            changes = plan.changes
            if not changes:
                continue
            problem = check_fields(changes)
            if problem:
                result.failed.append((plan.member.key, PermanentBigIPError(
                    f"refused locally, nothing sent: {problem}", method="PATCH", path=member_path(ref, plan.member))))
            else:
                todo.append(plan)
        if todo:
            if self.cfg.write_mode == "transaction":
                self._apply_transaction(ref, todo, result)
            else:
                self._apply_patches(ref, todo, result)
        result.calls = self.calls - start
        return result

    def token_counters(self) -> TokenCounters:
        return self.tokens.counters()

    def unit(self) -> str:
        """This client's one unit (no call; `controller.failover` confirms which unit is active)."""
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

    def _apply_patches(self, ref: PoolRef, plans: list[MemberPlan], result: ApplyResult) -> None:
        stop = threading.Event()  # set by the first write that times out: the rest wait for the next tick
        skipped = BigIPTimeout("not attempted: an earlier write in this tick timed out")

        def write(plan: MemberPlan) -> BigIPError | None:
            if stop.is_set():
                return skipped
            try:
                self.patch_member(ref, plan.member, plan.changes)
            except BigIPTimeout as e:
                stop.set()
                return e
            except BigIPError as e:
                return e
            return None

        workers = max(1, min(self.cfg.write_concurrency, len(plans)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigip-write") as pool:
            outcomes = list(pool.map(write, plans))
        for plan, error in zip(plans, outcomes, strict=True):
            if error is None:
                result.applied.append(plan.member.key)
            elif error is skipped:
                result.deferred.append(plan.member.key)
            else:
                log.debug("bigip_write_failed", extra={"pool": str(ref), "member": plan.member.key, "error": str(error)})
                result.failed.append((plan.member.key, error))

    def _apply_transaction(self, ref: PoolRef, plans: list[MemberPlan], result: ApplyResult) -> None:
        keys = [p.member.key for p in plans]
        try:
            reply = self._call("POST", TRANSACTION_PATH, json={})
            trans_id = reply.get("transId") if isinstance(reply, dict) else None
            if isinstance(trans_id, bool) or not isinstance(trans_id, (int, str)) or not str(trans_id):
                raise PermanentBigIPError("malformed transaction reply: no transId", status=200,
                                          method="POST", path=TRANSACTION_PATH)
        except BigIPError as e:
            result.failed.extend((k, e) for k in keys)
            return
        tpath = f"{TRANSACTION_PATH}/{trans_id}"
        try:
            for plan in plans:
                self.patch_member(ref, plan.member, plan.changes, headers={COORDINATION_HEADER: str(trans_id)})
            # The commit must NOT carry the coordination header: BIG-IP answers 400 if it does.
            reply = self._call("PATCH", tpath, json={"state": "VALIDATING"}, retry=False)
            self._await_transaction(tpath, reply)
        except BigIPError as e:
            log.debug("bigip_transaction_failed", extra={"pool": str(ref), "error": str(e), "applied": 0})
            result.failed.extend((k, e) for k in keys)
            try:  # abandon it; BIG-IP also drops uncommitted transactions after 120 s
                self._call("DELETE", tpath, retry=False)
            except BigIPError:
                pass
            return
        result.applied.extend(keys)

    def _await_transaction(self, tpath: str, reply: Any) -> None:
        """Raise unless the committed transaction ends COMPLETED (a synchronous commit usually has)."""
        for poll in range(TRANSACTION_POLLS + 1):
            state = reply.get("state") if isinstance(reply, dict) else None
            if state in (None, "COMPLETED"):
                return
            if state == "FAILED":
                reason = _scrub(str(reply.get("failureReason") or reply.get("message") or "no reason given"),
                                self.tokens.secrets())
                raise PermanentBigIPError(f"transaction failed: {_clip(reason)}", method="PATCH", path=tpath)
            if poll == TRANSACTION_POLLS:
                break
            self._sleep(BACKOFF_BASE)
            reply = self._call("GET", tpath)
        raise RetryableBigIPError(f"transaction still {state} after commit", method="PATCH", path=tpath)

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

    def _authenticated(self, method, path, json, params, headers) -> Any:
        extra = dict(headers or {})
        sent = self.tokens.header()
        try:
            return self._request(method, path, json=json, params=params, headers={**extra, **sent})
        except AuthError as e:
            if e.status != 401:
                raise
            if _role_denied(e.message):
                raise AuthError(f"permission denied ({e.message}); writing ratio or connectionLimit needs the Manager "
                                "role (or higher) on the partition", status=401, method=method, path=e.path) from e
            log.info("bigip_token_rejected", extra={"error": e.message, "action": "login again"})
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
                    verify=self.cfg.verify_tls, timeout=seconds, allow_redirects=False,
                )
                _ = resp.content  # the whole body, inside the deadline
            except requests.RequestException as e:
                error = self._translate_exception(e, method, label, secrets, seconds, call.expired)
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
        return _decode(resp, method, label, secrets)

    def _translate_exception(self, e: requests.RequestException, method: str, label: str, secrets,
                             seconds: float | None = None, expired: bool = False) -> BigIPError:
        where = f"{self.cfg.host}:{self.cfg.port}"
        exc = requests.exceptions
        seconds = self.cfg.timeout if seconds is None else seconds
        if expired or (isinstance(e, exc.Timeout) and not isinstance(e, exc.ConnectTimeout)):
            return BigIPTimeout(f"no complete reply within {seconds:.3g}s", method=method, path=label)
        if isinstance(e, exc.SSLError):
            reason = _CERT_REASON.search(str(e))
            if reason or "CERTIFICATE_VERIFY_FAILED" in str(e):
                detail = f" ({_scrub(reason.group(1).strip(), secrets)})" if reason else ""
                msg = f"TLS verification failed{detail}: set f5.verify_tls to a CA bundle path"
            else:
                msg = f"TLS handshake with {where} failed: {type(e).__name__}"
            return BigIPUnreachable(msg, method=method, path=label)
        if isinstance(e, exc.ConnectTimeout):
            return BigIPTimeout(f"no connection to {where} within {seconds:.3g}s", method=method, path=label)
        if isinstance(e, exc.ConnectionError):
            return BigIPUnreachable(f"cannot connect to {where}: {_connection_reason(e)}", method=method, path=label)
        if isinstance(e, (exc.InvalidURL, exc.InvalidHeader, exc.MissingSchema, exc.InvalidSchema)):
            return PermanentBigIPError(f"invalid request: {type(e).__name__}", method=method, path=label)
        return RetryableBigIPError(f"request failed: {type(e).__name__}", method=method, path=label)


# -- reply decoding ------------------------------------------------------------------------------


def _decode(resp: requests.Response, method: str, path: str, secrets: Sequence[str]) -> Any:
    status = resp.status_code
    text = resp.text or ""
    body, is_json = _json(text)
    if 200 <= status < 300:
        if not text.strip():
            return {}
        if not is_json:
            raise RetryableBigIPError(f"unexpected non-JSON reply: {_scrub(_summary(text), secrets)}",
                                      status=status, method=method, path=path)
        return body
    message = _scrub(_message(body, text) if is_json else _summary(text), secrets)
    low = message.lower()

    def err(cls: type[BigIPError], msg: str = message) -> BigIPError:
        return cls(msg, status=status, method=method, path=path)

    if status == 401:
        raise err(AuthError)
    if is_token_limit(low):
        raise err(TokenLimitError)
    if status == 404:
        if "not registered" in low or not is_json:
            raise err(RetryableBigIPError)
        raise err(NotFoundError)
    if (status == 500 and "mcpd" in low) or status in (502, 503, 504):
        raise err(RetryableBigIPError)
    if 300 <= status < 400:
        where = resp.headers.get("Location", "")
        raise err(PermanentBigIPError, f"unexpected redirect to {_clip(where)!r}: is f5.host the management address?")
    if 400 <= status < 500:
        raise err(PermanentBigIPError)
    raise err(BigIPError)


def _json(text: str) -> tuple[Any, bool]:
    try:
        return jsonlib.loads(text), True
    except ValueError:
        return None, False


def _message(body: Any, text: str) -> str:
    if isinstance(body, dict) and body.get("message") is not None:
        return _clip(str(body["message"]))
    return _clip(text)


def _summary(text: str) -> str:
    """HTML pages by their <title>, anything else by its first characters."""
    title = _TITLE.search(text)
    if title:
        return f"HTML page {_clip(html.unescape(_TAG.sub('', title.group(1))))!r}"
    if "<html" in text.lower():
        return f"HTML page {_clip(html.unescape(_TAG.sub(' ', text)))!r}"
    return _clip(text) or "empty body"


def _clip(text: str) -> str:
    return _SPACE.sub(" ", text).strip()[:MESSAGE_MAX]


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _role_denied(message: str) -> bool:
    """BIG-IP's 401 for a role that may not do this: a fresh token will not help."""
    return "authorization failed: user=" in message.lower()


def _connection_reason(e: Exception) -> str:
    """The innermost cause's class, e.g. NewConnectionError or ConnectionRefusedError; never a URL."""
    seen: BaseException = e
    for _ in range(8):
        if seen.__cause__ is None and not (seen.args and isinstance(seen.args[0], BaseException)):
            break
        nxt = seen.__cause__ if seen.__cause__ is not None else seen.args[0]
        reason = getattr(nxt, "reason", None)
        seen = reason if isinstance(reason, BaseException) else nxt
    text = str(seen)
    for known in ("Connection refused", "Name or service not known", "No route to host",
                  "Network is unreachable", "Connection reset", "Temporary failure in name resolution",
                  "Remote end closed connection"):
        if known.lower() in text.lower():
            return known
    return type(seen).__name__


# -- pool parsing --------------------------------------------------------------------------------


class _Malformed(Exception):
    pass


def _parse_pool(ref: PoolRef, reply: Any) -> PoolState:
    if not isinstance(reply, dict):
        raise _Malformed(f"expected an object, got {type(reply).__name__}")
    mode = reply.get("loadBalancingMode")
    if not isinstance(mode, str) or not mode:
        raise _Malformed("loadBalancingMode missing")
    full = reply.get("fullPath")
    if full is not None and full != ref.full_path:
        raise _Malformed(f"fullPath {_clip(str(full))!r} is not {ref.full_path!r}")
    members_ref = reply.get("membersReference", {})
    if not isinstance(members_ref, dict):
        raise _Malformed("membersReference is not an object")
    items = members_ref.get("items", [])
    if not isinstance(items, list):
        raise _Malformed("membersReference.items is not a list")
    members = tuple(_parse_member(ref, i, item) for i, item in enumerate(items))
    names = [m.key for m in members]
    if len(set(names)) != len(names):
        raise _Malformed("duplicate member names")
    queue = reply.get("queueOnConnectionLimit", "disabled")
    metadata = reply.get("metadata", [])
    if not isinstance(metadata, list) or not all(isinstance(m, dict) and "name" in m for m in metadata):
        raise _Malformed("metadata is not a list of {name, value}")
    return PoolState(
        ref=ref,
        load_balancing_mode=mode,
        members=members,
        queue_on_connection_limit=queue == "enabled",
        metadata=tuple((str(m["name"]), str(m.get("value", ""))) for m in metadata),
    )


def _parse_member(ref: PoolRef, index: int, item: Any) -> Member:
    if not isinstance(item, dict):
        raise _Malformed(f"member #{index} is not an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _Malformed(f"member #{index} has no name")
    where = f"member {_clip(name)!r}"

    def text(key: str, default: str | None = None) -> str:
        value = item.get(key, default)
        if not isinstance(value, str):
            raise _Malformed(f"{where}: {key} missing or not a string")
        return value

    def integer(key: str, low: int, high: int) -> int:
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Malformed(f"{where}: {key} {value!r} is not an integer in {low}..{high}")
        return value

    try:
        _, port = split_member_name(name)
    except ValueError:
        raise _Malformed(f"{where}: no port in the name") from None
    partition = text("partition", ref.partition)
    address, state = text("address"), text("state", "up")
    fqdn = item.get("fqdn")
    ephemeral = str(item.get("ephemeral", "false")).lower() == "true"
    autopopulate = isinstance(fqdn, dict) and fqdn.get("autopopulate") == "enabled"
    return Member(
        name=name,
        partition=partition,
        address=address,
        port=port,
        ratio=integer("ratio", RATIO_MIN, RATIO_MAX),
        connection_limit=integer("connectionLimit", 0, 2**32 - 1),
        session=text("session", "monitor-enabled"),
        state=state,
        description=text("description", ""),
        full_path=text("fullPath", f"/{partition}/{name}"),
        ephemeral=ephemeral,
        fqdn_template=not ephemeral and (autopopulate or state.startswith("fqdn-") or address in _ANY_ADDRESS),
    )


def check_fields(fields: Mapping[str, Any]) -> str:
    """Why `fields` may not be PATCHed to a member, or "" when they may."""
    if not isinstance(fields, Mapping):
        return "fields must be a mapping"
    unknown = sorted(set(fields) - WRITABLE_FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(WRITABLE_FIELDS))}"
    if "ratio" in fields:
        r = fields["ratio"]
        if isinstance(r, bool) or not isinstance(r, int) or not RATIO_MIN <= r <= RATIO_MAX:
            return f"ratio {r!r} is not an integer in {RATIO_MIN}..{RATIO_MAX}"
    if "connectionLimit" in fields:
        c = fields["connectionLimit"]
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            return f"connectionLimit {c!r} is not an integer >= 0"
    if "description" in fields and not isinstance(fields["description"], str):
        return "description is not a string"
    return ""
