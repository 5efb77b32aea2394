"""BIG-IP token lifecycle: one token per process, logged in lazily, extended, refreshed, deleted.

Every user may hold about 100 active tokens (F5 K44237337); a client that logs in per call or
leaks tokens locks out itself and every other automation of that user until the leaked tokens
expire. BIG-IP 17.1.2.x does not free non-admin users' tokens at all (bug ID1787517: users of F5's
application-study-tool and terraform-provider-bigip reach the limit within hours). So: log in as
seldom as BIG-IP allows. One token per unit, its lifetime set to `f5.token_timeout` (default and
BIG-IP's maximum: 36,000 s), replaced shortly before it expires (10 % of its life left, at least
60 s: with the default every 32,400 s, 2.7 logins a day, `bench/tokens.py`), the old one deleted after
a refresh and the current one at exit, and remembered in a state file (`controller.ltm.tokenstore`) so
that a successor of a killed process reuses or deletes it instead of stranding it. A crash without a
usable state file strands one token for its lifetime; the shipped systemd unit keeps the state file
(`StateDirectory=`), and a shorter `f5.token_timeout` bounds that case at the price of more logins.

`BasicAuth` is the other way (`f5.auth: basic`): HTTP basic auth on every call, which iControl REST
accepts for local accounts and which creates no token at all, so no login and no token limit. Remote
(LDAP/RADIUS/TACACS) users need a token with their `loginProviderName`.

`TokenManager` does no HTTP itself. It is given the client's `request` function, which sends
one unauthenticated call through the client's session (verify, timeout, error translation) and
returns the decoded JSON or raises a `BigIPError`:

    request(method, path, *, json=None, headers=None, timeout=None, redact=()) -> Any

`redact` names values (tokens) that must be scrubbed from any error the call raises.

Tokens and the password are credentials: they never appear in an exception message, a log
line or a repr.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from controller.clock import Clock, SystemClock
from controller.config import bounds
from controller.config.schema import F5Config
from controller.errors import AuthError, BigIPError, PermanentBigIPError, TokenLimitError
from controller.ltm.tokenstore import TokenStore, key_for
from controller.model import TokenCounters

log = logging.getLogger(__name__)

LOGIN_PATH = "/mgmt/shared/authn/login"
TOKENS_PATH = "/mgmt/shared/authz/tokens"
HEADER = "X-F5-Auth-Token"

TOKEN_LIFETIME = 36000  # seconds each token lives unless f5.token_timeout says otherwise (BIG-IP's maximum)
EXTEND_TO = TOKEN_LIFETIME  # the default timeout PATCHed onto a fresh token
DEFAULT_TIMEOUT = 1200  # seconds; BIG-IP's default when the reply does not say
REFRESH_MIN_LEFT = 60.0  # refresh when less than this many seconds are left ...
REFRESH_SHARE_LEFT = 0.10  # ... or less than this share of the token's lifetime
RELOGIN_BACKOFF = 30.0  # after a failed refresh, keep the old token and try again this much later
DELETE_TIMEOUT = bounds.DELETE_TIMEOUT  # seconds; best-effort deletes must not hold up shutdown
TOKEN_LIMIT_TEXT = "maximum active login tokens"

Request = Callable[..., Any]


def is_token_limit(text: str) -> bool:
    return TOKEN_LIMIT_TEXT in text.lower()


class TokenManager:
    """Holds the process's one BIG-IP token. Thread-safe: concurrent callers share one login."""

    def __init__(self, cfg: F5Config, request: Request, *, clock: Clock | None = None,
                 store: TokenStore | None = None):
        self._cfg = cfg
        self._request = request
        self._clock = clock or SystemClock()
        self._store = store
        self._store_key = key_for(cfg.username, cfg.host, cfg.port)
        self._want = int(cfg.token_timeout)  # the lifetime asked for each token (f5.token_timeout)
        self._reclaimed = store is None  # a predecessor's token is looked for once, before the first login
        self._refresh_failing = False
        self._lock = threading.RLock()
        self._token: str | None = None
        self._held: tuple[str, ...] = ()  # recent tokens, for scrubbing error texts; replaced, never mutated
        self._lifetime = 0.0  # seconds the current token lives, per BIG-IP's replies
        self._expires_at = 0.0  # clock.monotonic() when it expires (counted from before the login)
        self._refresh_at = 0.0  # clock.monotonic() when to replace it
        self._refused: AuthError | None = None  # a refused login, remembered until _refused_until
        self._refused_until = 0.0
        self.logins = 0
        self.extensions = 0
        self.deletions = 0

    def __repr__(self) -> str:
        state = "active" if self._token else "none"
        return f"TokenManager(user={self._cfg.username!r}, token={state}, logins={self.logins})"

    # -- public ------------------------------------------------------------------------------
    def counters(self) -> TokenCounters:
        """How many logins, extensions and deletions this manager has made."""
        return TokenCounters(logins=self.logins, extensions=self.extensions, deletions=self.deletions)


    @property
    def active(self) -> bool:
        return self._token is not None

    def expires_in(self) -> float | None:
        """Seconds until the current token expires, or None without a token."""
        with self._lock:
            return self._expires_at - self._clock.monotonic() if self._token else None

    def secrets(self) -> tuple[str, ...]:
        """The password and the tokens this process held lately: values no message may contain."""
        return tuple(s for s in (self._cfg.password, *self._held) if s)

    def header(self) -> dict[str, str]:
        """`{"X-F5-Auth-Token": token}`, logging in first or refreshing when needed."""
        with self._lock:
            if self._token is None and not self._reclaimed:
                self._reclaim()
            if self._token is None:
                self._login_unless_refused()
            elif self._clock.monotonic() >= self._refresh_at:
                self._refresh()
            assert self._token is not None
            return {HEADER: self._token}

    def invalidate(self, sent: Mapping[str, str] | None = None) -> None:
        """Forget the token after BIG-IP refused it (401), so the next `header()` logs in again.

        `sent` is the header the refused call carried: when another thread has already replaced
        that token, the new one is kept. The refused token is deleted best effort, in case the
        401 was spurious: a live token left behind would count against the user's limit for hours.
        """
        with self._lock:
            if self._token is None:
                return
            if sent is not None and sent.get(HEADER) != self._token:
                return
            old, self._token = self._token, None
            log.info("bigip_token_refused", extra={"user": self._cfg.username, "action": "log in again"})
            self._forget(old)
            self._delete(old)

    def close(self) -> None:
        """Delete the token on BIG-IP (best effort, short timeout) and forget it. Never raises."""
        with self._lock:
            old, self._token = self._token, None
            if old is not None:
                self._delete(old)
                self._forget(old)

    # -- internals ---------------------------------------------------------------------------

    def _login_unless_refused(self) -> None:
        """A refused password is not retried for RELOGIN_BACKOFF: BIG-IP may lock the account out."""
        if self._refused is not None and self._clock.monotonic() < self._refused_until:
            raise self._refused
        try:
            self._login()
        except AuthError as e:
            self._refused, self._refused_until = e, self._clock.monotonic() + RELOGIN_BACKOFF
            raise
        self._refused = None

    def _login(self) -> None:
        user = self._cfg.username
        started = self._clock.monotonic()
        body = {"username": user, "password": self._cfg.password, "loginProviderName": self._cfg.login_provider}
        try:
            reply = self._request("POST", LOGIN_PATH, json=body)
        except TokenLimitError as e:
            raise TokenLimitError(
                f"BIG-IP user {user} has reached its limit of active tokens (F5 K44237337); "
                f"this controller's tokens expire {self._want}s after login (others' per their own timeout: "
                "BIG-IP's default is 1,200 s, up to 36,000 s when extended); check for other automation leaking tokens",
                status=e.status, method="POST", path=LOGIN_PATH,
            ) from e
        except AuthError as e:
            source = f"; password from {self._cfg.password_source}" if self._cfg.password_source else ""
            raise AuthError(
                f"login refused for user {user} (login provider {self._cfg.login_provider!r}{source}): {e.message}",
                status=e.status, method="POST", path=LOGIN_PATH,
            ) from e
        token, lifetime = _parse_login(reply)
        self._refresh_failing = False
        self.logins += 1
        self._held = (*self._held[-7:], token)
        self._token = token
        self._lifetime = lifetime
        log.info("bigip_login", extra={"user": user, "token_timeout": lifetime})
        if lifetime != self._want:
            self._extend(token)
        self._set_expiry(started)
        self._remember(token)

    def _set_expiry(self, started: float) -> None:
        self._expires_at = started + self._lifetime
        # Refresh with a margin, but never sooner than half-way: a short-lived token whose extension
        # was refused would otherwise be "due" at once and cost a login per call.
        margin = max(REFRESH_MIN_LEFT, REFRESH_SHARE_LEFT * self._lifetime)
        self._refresh_at = self._expires_at - min(margin, self._lifetime / 2)

    # -- the state file ----------------------------------------------------------------------
    def _reclaim(self) -> None:
        """Reuse the token a killed predecessor left in the state file, or delete it: never strand it.

        Reuse is one PATCH that also sets its lifetime (and proves it is live). A token BIG-IP no
        longer knows (401/404) is just forgotten; one it refuses otherwise is deleted best effort.
        When BIG-IP does not answer, the entry is kept and looked at again before the next login.
        """
        assert self._store is not None
        self._reclaimed = True
        token = self._store.get(self._store_key)
        if token is None:
            return
        self._held = (*self._held[-7:], token)
        started = self._clock.monotonic()
        try:
            reply = self._request("PATCH", f"{TOKENS_PATH}/{token}", json={"timeout": self._want},
                                  headers={HEADER: token}, redact=(token,))
        except BigIPError as e:
            if e.retryable and e.status is None:  # no reply: keep the entry, try again next time
                self._reclaimed = False
                raise
            if e.status not in (401, 404):
                self._delete(token)
            self._store.drop(self._store_key, token)
            log.info("bigip_token_reclaimed", extra={"user": self._cfg.username, "result": "discarded",
                                                     "status": e.status})
            return
        self._token = token
        self._lifetime = _timeout_of(reply, default=self._want)
        self._set_expiry(started)
        self._remember(token)
        log.info("bigip_token_reclaimed", extra={"user": self._cfg.username, "result": "reused",
                                                 "token_timeout": self._lifetime})

    def _remember(self, token: str) -> None:
        if self._store is not None:
            self._store.put(self._store_key, token, self._lifetime)

    def _forget(self, token: str) -> None:
        if self._store is not None:
            self._store.drop(self._store_key, token)

    def _extend(self, token: str) -> None:
        """Set the token's timeout to f5.token_timeout. A failure is not fatal: the token keeps its timeout."""
        try:
            reply = self._request(
                "PATCH", f"{TOKENS_PATH}/{token}", json={"timeout": self._want},
                headers={HEADER: token}, redact=(token,),
            )
        except BigIPError as e:
            log.warning("bigip_token_extension_failed", extra={"token_timeout": self._lifetime, "error": str(e)})
            return
        self.extensions += 1
        self._lifetime = _timeout_of(reply, default=self._want)

    def _refresh(self) -> None:
        old, old_expires = self._token, self._expires_at
        assert old is not None
        try:
            self._login()
        except BigIPError as e:
            now = self._clock.monotonic()
            if now >= old_expires:
                self._token = None
                raise
            self._token, self._expires_at = old, old_expires
            self._refresh_at = now + min(RELOGIN_BACKOFF, max(0.0, (old_expires - now) / 2))
            # once per failing spell (an outage would otherwise log it every RELOGIN_BACKOFF); again at DEBUG
            level = logging.DEBUG if self._refresh_failing else logging.WARNING
            self._refresh_failing = True
            log.log(level, "bigip_token_refresh_failed", extra={"keeping_seconds": round(old_expires - now), "error": str(e)})
            return
        self._delete(old)

    def _delete(self, token: str) -> None:
        """DELETE a token, best effort. Never raises."""
        try:
            self._request(
                "DELETE", f"{TOKENS_PATH}/{token}", headers={HEADER: token},
                timeout=min(self._cfg.timeout, DELETE_TIMEOUT), redact=(token,),
            )
        except Exception as e:  # noqa: BLE001 - best effort by contract; the error text is already scrubbed
            log.info("bigip_token_delete_failed", extra={"error": str(e) if isinstance(e, BigIPError) else type(e).__name__,
                                                         "expires_on_its_own_within_seconds": self._want})
            return
        self.deletions += 1


class BasicAuth:
    """`f5.auth: basic`: HTTP basic auth on every call; no token, so no login, no token limit, nothing to delete.

    The same interface as `TokenManager`. A 401 is never "log in again": BIG-IP refused the password
    (or the role). A refused password is not sent again for RELOGIN_BACKOFF seconds, since every
    call with it counts as a failed login and BIG-IP may lock the account out.
    """

    logins = extensions = deletions = 0
    active = True

    def __init__(self, cfg: F5Config, *, clock: Clock | None = None):
        self._cfg = cfg
        self._clock = clock or SystemClock()
        raw = f"{cfg.username}:{cfg.password}".encode()
        self._value = "Basic " + base64.b64encode(raw).decode("ascii")
        self._refused: AuthError | None = None
        self._refused_until = 0.0

    def __repr__(self) -> str:
        return f"BasicAuth(user={self._cfg.username!r})"

    def counters(self) -> TokenCounters:
        return TokenCounters()

    def expires_in(self) -> float | None:
        return None

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self._cfg.password, self._value, self._value.split()[-1]) if s)

    def header(self) -> dict[str, str]:
        if self._refused is not None and self._clock.monotonic() < self._refused_until:
            raise self._refused
        return {"Authorization": self._value}

    def refused(self, error: AuthError) -> AuthError:
        """BIG-IP refused the credentials: say so, and send none for RELOGIN_BACKOFF seconds."""
        source = f"; password from {self._cfg.password_source}" if self._cfg.password_source else ""
        self._refused = AuthError(f"basic auth refused for user {self._cfg.username} (f5.auth: basic, local "
                                  f"accounts only{source}): {error.message}", status=error.status,
                                  method=error.method, path=error.path)
        self._refused_until = self._clock.monotonic() + RELOGIN_BACKOFF
        return self._refused

    def invalidate(self, sent: Mapping[str, str] | None = None) -> None:
        """Nothing to forget: there is no token."""

    def close(self) -> None:
        """Nothing to delete: there is no token."""


def _timeout_of(obj: Any, default: float) -> float:
    value = obj.get("timeout") if isinstance(obj, dict) else None
    if isinstance(value, dict):  # never seen, but do not trust shapes
        value = None
    try:
        seconds = float(value) if value is not None and not isinstance(value, bool) else float(default)
    except (TypeError, ValueError):
        seconds = float(default)
    return seconds if seconds > 0 else float(default)


def _parse_login(reply: Any) -> tuple[str, float]:
    """`token.token` and `token.timeout` from a login reply; the reply itself is never quoted."""
    tok = reply.get("token") if isinstance(reply, dict) else None
    value = tok.get("token") if isinstance(tok, dict) else None
    if not isinstance(value, str) or not value:
        raise PermanentBigIPError("login reply has no token.token", status=200, method="POST", path=LOGIN_PATH)
    return value, _timeout_of(tok, default=DEFAULT_TIMEOUT)
