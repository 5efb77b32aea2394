"""The error tree. Library errors are translated into these at the I/O boundary.

    RatioError
    ├── ConfigError              bad config or missing secret; exit 2, before any network call
    ├── BigIPError               anything BIG-IP answered or failed to answer
    │   ├── RetryableBigIPError  500 mcpd lost, 503 HTML, 404 "not registered", timeouts, resets
    │   │   ├── BigIPUnreachable   no TCP/TLS connection at all
    │   │   └── BigIPTimeout       no complete reply within the call's deadline (or the tick's budget is spent)
    │   └── PermanentBigIPError  other 4xx: retrying will not help
    │       ├── AuthError          login refused (bad credentials, 401 after re-login)
    │       ├── TokenLimitError    400 "maximum active login tokens"
    │       ├── NotFoundError      pool or member does not exist (404 with a JSON body)
    │       └── NotActiveError     no configured unit is active (StateUnreadableError: cm/* not readable)
    └── MetricsError             one member's /metrics could not be used this tick
"""

from __future__ import annotations

from typing import Literal


class RatioError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RatioError):
    """The configuration is invalid. `problems` lists each one with its key path."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class BigIPError(RatioError):
    """A failed iControl REST call. `status` is the HTTP status, or None without a reply."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = ""):
        self.status = status
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}{code}{message}")
        self.message = message


class RetryableBigIPError(BigIPError):
    retryable = True


class BigIPUnreachable(RetryableBigIPError):
    pass


class BigIPTimeout(RetryableBigIPError):
    """The call's deadline passed (connect, send and the whole body), or the tick's BIG-IP budget was
    spent before it started. Not retried in the same tick: the next tick tries again."""


class PermanentBigIPError(BigIPError):
    pass


class ReplyTooLargeError(PermanentBigIPError):
    """A BIG-IP reply larger than `f5.max_reply_mb`: refused unread (not retried within the tick)."""


class AuthError(PermanentBigIPError):
    pass


class TokenLimitError(PermanentBigIPError):
    pass


class NotFoundError(PermanentBigIPError):
    pass


class NotActiveError(PermanentBigIPError):
    """No configured BIG-IP unit is active (standby, offline, forced offline): nothing may be written."""


class StateUnreadableError(NotActiveError):
    """The account may not read a unit's failover state (cm/*): whether it is active is unknown, so nothing
    is written. The message names the missing permission and the fixes (a role, or f5.standalone: true)."""


#: Why a member's metrics page was unusable (MetricsError.reason, and so ScrapeResult.error).
PageProblem = Literal["not-prometheus", "missing-metric", "bad-value", "too-many-series"]


class MetricsError(RatioError):
    """A member's metrics page was unusable. `reason` is a short stable slug for logs and counters."""

    def __init__(self, reason: PageProblem, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
