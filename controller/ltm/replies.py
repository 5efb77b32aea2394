"""What BIG-IP and `requests` say, translated into the tree in `controller.errors`.

`BigIPClient` (`controller.ltm.client`) is the only code that talks iControl REST; every library error
it meets is translated by this module, at the boundary:

| what happened                                        | raised                                   |
| ---------------------------------------------------- | ---------------------------------------- |
| no TCP connection, TLS failure, connect timeout       | BigIPUnreachable (retried)               |
| call deadline passed (connect+send+whole body), tick budget spent | BigIPTimeout (not retried this tick) |
| reset mid-reply                                       | RetryableBigIPError (retried)            |
| 500 "mcpd", any 503 (HTML: restjavad restarting), 502, 504 | RetryableBigIPError (retried)            |
| 404 "not registered", 404 without JSON, non-JSON 2xx  | RetryableBigIPError (retried)            |
| 401                                                   | token dropped, one re-login, one retry; then AuthError |
| 401 "Authorization failed: user=..." (role too low)  | AuthError at once, no re-login           |
| 401 on /mgmt/tm/cm/* not naming the token            | AuthError at once, no re-login           |
| 400/403 "01070822:3: Access Denied" (role too low)   | AuthError, says which role is needed     |
| 400 "maximum active login tokens"                     | TokenLimitError                          |
| 404 with a JSON body                                  | NotFoundError                            |
| other 3xx/4xx                                         | PermanentBigIPError                      |
| other 5xx                                             | BigIPError (not retried)                 |
| a reply whose shape is wrong (`read_pool` etc.)       | PermanentBigIPError("malformed ...")     |

The retries, the re-login after a 401 and the budget check are the client's (`controller.ltm.client`);
the shapes of pool and member replies are checked in `controller.ltm.paths`.

Error messages carry BIG-IP's own `message` (first 200 characters; HTML pages summarised by
their <title>) and never a token or the password.
"""

from __future__ import annotations

import html
import json as jsonlib
import re
from collections.abc import Sequence
from typing import Any

import requests

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
from controller.ltm.token import is_token_limit
from controller.redact import scrub as _scrub

MESSAGE_MAX = 200  # characters of BIG-IP's message kept in ours

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_CERT_REASON = re.compile(r"certificate verify failed: ([^()'\"]+)")


def decode(resp: requests.Response, method: str, path: str, secrets: Sequence[str]) -> Any:
    """A whole reply's decoded JSON (`{}` for an empty 2xx body), or the BigIPError it means."""
    status = resp.status_code
    text = resp.text or ""
    body, is_json = _json(text)
    if 200 <= status < 300:
        if not text.strip():
            return {}
        if not is_json:
            raise RetryableBigIPError(f"unexpected non-JSON reply: {_scrub(summary(text), secrets)}",
                                      status=status, method=method, path=path)
        return body
    message = _scrub(_message(body, text) if is_json else summary(text), secrets)
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
        raise err(PermanentBigIPError, f"unexpected redirect to {clip(where)!r}: is f5.host the management address?")
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
        return clip(str(body["message"]))
    return clip(text)


def summary(text: str) -> str:
    """HTML pages by their <title>, anything else by its first characters."""
    title = _TITLE.search(text)
    if title:
        return f"HTML page {clip(html.unescape(_TAG.sub('', title.group(1))))!r}"
    if "<html" in text.lower():
        return f"HTML page {clip(html.unescape(_TAG.sub(' ', text)))!r}"
    return clip(text) or "empty body"


def clip(text: str) -> str:
    return _SPACE.sub(" ", text).strip()[:MESSAGE_MAX]


def token_refused(message: str) -> bool:
    """A 401 about the token itself (expired, unknown after a restart, not sent): a fresh login helps."""
    low = message.lower()
    return "x-f5-auth-token" in low or "no user authentication header or token" in low


def access_denied(message: str) -> bool:
    """mcpd's refusal of a change the account's role may not make: `01070822:3: Access Denied: ...`."""
    return "01070822" in message or "access denied" in message.lower()


def role_denied(message: str) -> bool:
    """BIG-IP's 401 for a role that may not do this: a fresh token will not help."""
    return "authorization failed: user=" in message.lower()


def connection_reason(e: Exception) -> str:
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


def translate_exception(e: requests.RequestException, method: str, label: str, secrets: Sequence[str], *,
                        where: str, seconds: float, expired: bool = False) -> BigIPError:
    """What a failed exchange (no reply, or no whole reply) means; `where` is "host:port"."""
    exc = requests.exceptions
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
        return BigIPUnreachable(f"cannot connect to {where}: {connection_reason(e)}", method=method, path=label)
    if isinstance(e, (exc.InvalidURL, exc.InvalidHeader, exc.MissingSchema, exc.InvalidSchema)):
        return PermanentBigIPError(f"invalid request: {type(e).__name__}", method=method, path=label)
    return RetryableBigIPError(f"request failed: {type(e).__name__}", method=method, path=label)

