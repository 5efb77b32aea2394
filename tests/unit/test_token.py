"""TokenManager: one login per process, extension, refresh before expiry, deletion, clear errors."""

from __future__ import annotations

import logging
import re
import threading

import pytest
import requests

from controller import redact
from controller.config.schema import F5Config
from controller.errors import AuthError, BigIPError, TokenLimitError
from controller.ltm.client import BigIPClient
from controller.ltm.token import EXTEND_TO

BASE = "https://bigip.example:443"
LOGIN = BASE + "/mgmt/shared/authn/login"
TOKENS = re.compile(re.escape(BASE) + r"/mgmt/shared/authz/tokens/(?P<tok>[^/?]+)$")
PASSWORD = "pw-S3cret-Value"
CFG = F5Config(host="bigip.example", username="ratio-bot", password=PASSWORD, password_source="env F5_PASSWORD")

TOKEN_LIMIT = {"code": 400, "message": "user 2dcd8b8f-5ac5-4c2e-b1ba-1c4d2d1e9b7f has reached maximum active login tokens",
               "errorStack": [], "apiError": 1}


class FakeAuth:
    """BIG-IP's token endpoints on requests-mock: each login issues a new token."""

    def __init__(self, m, *, timeout=1200, extend=True):
        self.issued: list[str] = []
        self.deleted: list[str] = []
        self.timeout = timeout
        self.extend_ok = extend
        self.login_bodies: list[dict] = []
        m.post(LOGIN, json=self._login)
        m.patch(TOKENS, json=self._extend)
        m.delete(TOKENS, json=self._delete)

    def _login(self, request, context):
        self.login_bodies.append(request.json())
        tok = f"TOKSECRET{len(self.issued) + 1:04d}XYZ"
        self.issued.append(tok)
        return {"username": "ratio-bot", "loginProviderName": "tmos",
                "token": {"token": tok, "name": tok, "timeout": self.timeout, "expirationMicros": 1}}

    def _extend(self, request, context):
        tok = request.url.rsplit("/", 1)[1]
        assert request.headers["X-F5-Auth-Token"] == tok
        if not self.extend_ok:
            context.status_code = 400
            return {"code": 400, "message": f"cannot extend token {tok}", "errorStack": []}
        return {"token": tok, "name": tok, "timeout": request.json()["timeout"]}

    def _delete(self, request, context):
        self.deleted.append(request.url.rsplit("/", 1)[1])
        return {}

    @property
    def current(self) -> str:
        return self.issued[-1]


def make(clock, cfg=CFG) -> BigIPClient:
    return BigIPClient(cfg, clock=clock, sleep=lambda s: None)


def test_login_is_lazy_and_extends_to_36000(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    assert requests_mock.call_count == 0
    header = client.tokens.header()
    assert header == {"X-F5-Auth-Token": auth.current}
    assert auth.login_bodies == [{"username": "ratio-bot", "password": PASSWORD, "loginProviderName": "tmos"}]
    extend = requests_mock.request_history[1]
    assert (extend.method, extend.json()) == ("PATCH", {"timeout": EXTEND_TO})
    assert (client.tokens.logins, client.tokens.extensions, client.tokens.deletions) == (1, 1, 0)
    assert client.tokens.expires_in() == EXTEND_TO


def test_login_provider_from_config(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    make(clock, F5Config(host="bigip.example", username="u", password="p", login_provider="ldap")).tokens.header()
    assert auth.login_bodies[0]["loginProviderName"] == "ldap"


def test_one_login_for_many_headers(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    for _ in range(50):
        client.tokens.header()
        clock.advance(10)  # 500 s: inside one token's lifetime (600 s, refreshed at 540 s)
    assert len(auth.issued) == 1 and client.tokens.logins == 1


@pytest.mark.parametrize(
    "timeout, extend, refresh_after",
    [
        (1200, True, EXTEND_TO - 3600),  # set to 36,000 s: refresh when 10% (an hour) is left
        (1200, False, 1200 - 120),  # extension refused: keeps 1200 s, refresh with 10% left
        (600, False, 600 - 60),  # short token: at least 60 s ahead
    ],
)
def test_refresh_before_expiry_deletes_old_token(requests_mock, clock, timeout, extend, refresh_after):
    auth = FakeAuth(requests_mock, timeout=timeout, extend=extend)
    client = make(clock)
    first = client.tokens.header()["X-F5-Auth-Token"]
    clock.advance(refresh_after - 1)
    assert client.tokens.header()["X-F5-Auth-Token"] == first
    clock.advance(1)
    second = client.tokens.header()["X-F5-Auth-Token"]
    assert second != first
    assert auth.deleted == [first]
    assert (client.tokens.logins, client.tokens.deletions) == (2, 1)
    assert client.tokens.extensions == (2 if extend else 0)


def test_failed_extension_is_not_fatal(requests_mock, clock, caplog):
    auth = FakeAuth(requests_mock, extend=False)
    client = make(clock)
    with caplog.at_level(logging.WARNING):
        assert client.tokens.header() == {"X-F5-Auth-Token": auth.current}
    assert client.tokens.expires_in() == 1200 and client.tokens.extensions == 0
    assert "bigip_token_extension_failed" in caplog.text and auth.current not in caplog.text


def test_failed_refresh_keeps_old_token_until_it_expires(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    first = client.tokens.header()["X-F5-Auth-Token"]
    clock.advance(EXTEND_TO - 100)  # inside the refresh window
    requests_mock.post(LOGIN, status_code=503, text="<html><title>restarting</title></html>")
    assert client.tokens.header()["X-F5-Auth-Token"] == first  # still valid: keep it
    logins_tried = requests_mock.call_count
    assert client.tokens.header()["X-F5-Auth-Token"] == first  # and do not hammer the login
    assert requests_mock.call_count == logins_tried
    clock.advance(100)  # now expired
    with pytest.raises(BigIPError):
        client.tokens.header()
    assert auth.deleted == [] and not client.tokens.active


def test_token_limit_gives_clear_error(requests_mock, clock):
    requests_mock.post(LOGIN, status_code=400, json=TOKEN_LIMIT)
    client = make(clock)
    with pytest.raises(TokenLimitError) as info:
        client.tokens.header()
    text = str(info.value)
    assert "ratio-bot has reached its limit of active tokens (F5 K44237337)" in text
    assert "20 min" not in text and f"expire {EXTEND_TO}s after login" in text and "leaking tokens" in text
    assert PASSWORD not in text


def test_login_401_is_auth_error(requests_mock, clock):
    requests_mock.post(LOGIN, status_code=401, json={"code": 401, "message": "Authentication failed.", "errorStack": []})
    with pytest.raises(AuthError) as info:
        make(clock).tokens.header()
    assert "login refused for user ratio-bot" in str(info.value)
    assert "env F5_PASSWORD" in str(info.value) and PASSWORD not in str(info.value)


def test_close_deletes_token_once_and_forgets_it(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    tok = client.tokens.header()["X-F5-Auth-Token"]
    client.close()
    client.close()
    assert auth.deleted == [tok] and client.tokens.deletions == 1 and not client.tokens.active
    delete = requests_mock.request_history[-1]
    assert delete.method == "DELETE" and delete.timeout <= 3.0


def test_close_without_token_makes_no_call(requests_mock, clock):
    make(clock).close()
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    "failure",
    [
        {"status_code": 500, "json": {"code": 500, "message": "The connection to mcpd has been lost, try again."}},
        {"status_code": 401, "json": {"code": 401, "message": "X-F5-Auth-Token has expired."}},
        {"exc": requests.exceptions.ConnectionError},
        {"exc": requests.exceptions.ReadTimeout},
        {"exc": RuntimeError("anything at all")},
    ],
)
def test_close_never_raises(requests_mock, clock, failure):
    FakeAuth(requests_mock)
    client = make(clock)
    client.tokens.header()
    requests_mock.delete(TOKENS, **failure)
    client.close()
    assert client.tokens.deletions == 0 and not client.tokens.active


def test_invalidate_ignores_a_header_already_replaced(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    stale = client.tokens.header()
    client.tokens.invalidate(stale)  # refused: forget (and best-effort delete) it
    fresh = client.tokens.header()
    client.tokens.invalidate(stale)  # a second thread reporting the same old token changes nothing
    assert client.tokens.header() == fresh
    assert client.tokens.logins == 2 and auth.deleted == [stale["X-F5-Auth-Token"]]


def test_concurrent_callers_share_one_login(requests_mock, clock):
    auth = FakeAuth(requests_mock)
    client = make(clock)
    seen: list[dict] = []
    threads = [threading.Thread(target=lambda: seen.append(client.tokens.header())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(auth.issued) == 1 and all(h == seen[0] for h in seen)


def test_token_and_password_never_in_repr_errors_or_logs(requests_mock, clock, caplog):
    auth = FakeAuth(requests_mock, extend=False)  # BIG-IP's extension error quotes the token
    client = make(clock)
    with caplog.at_level(logging.DEBUG):
        tok = client.tokens.header()["X-F5-Auth-Token"]
        requests_mock.delete(TOKENS, exc=requests.exceptions.ConnectionError(
            f"HTTPSConnectionPool(host='bigip.example', port=443): Max retries exceeded with url: "
            f"/mgmt/shared/authz/tokens/{tok}"))
        client.close()
        requests_mock.post(LOGIN, status_code=400, json={"code": 400, "message": f"bad password {PASSWORD}"})
        with pytest.raises(BigIPError) as info:
            client.tokens.header()
    # the mock's own debug lines are left out; our event names carry their details in fields, checked too
    ours = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if not r.name.startswith("requests_mock"))
    assert "bigip_token_delete_failed" in ours
    for text in (ours, repr(client), repr(client.tokens), str(info.value), repr(info.value)):
        assert tok not in text and PASSWORD not in text
    assert auth.issued == [tok]


def test_urllib3_debug_lines_have_token_urls_scrubbed(clock, caplog):
    make(clock)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug(
            '%s://%s:%s "%s %s %s" %s %s', "https", "bigip", 443, "DELETE", "/mgmt/shared/authz/tokens/ABCDEF123", "HTTP/1.1", 200, 2)
    assert "ABCDEF123" not in caplog.text and f"/mgmt/shared/authz/tokens/{redact.MARKER}" in caplog.text


# ------------------------------------------------------------------------------ issue 22: as few logins as BIG-IP allows


def test_default_token_lives_36000_s_and_is_replaced_with_an_hour_left(requests_mock, clock):
    """BIG-IP 17.1.2.x keeps non-admin tokens (ID1787517): one token per 32,400 s, 3 logins in any day."""
    auth = FakeAuth(requests_mock)
    client = make(clock)
    client.tokens.header()
    assert EXTEND_TO == 36000 and client.tokens.expires_in() == 36000
    logins = []
    for _ in range(int(86400 / 60)):  # a day of calls, one a minute
        client.tokens.header()
        logins.append(len(auth.issued))
        clock.advance(60)
    assert len(auth.issued) == 3 and auth.deleted == auth.issued[:2]


@pytest.mark.parametrize("configured", [900, 7200])
def test_token_timeout_is_configurable(requests_mock, clock, configured):
    from dataclasses import replace

    FakeAuth(requests_mock)
    client = make(clock, replace(CFG, token_timeout=configured))
    client.tokens.header()
    patches = [r for r in requests_mock.request_history if r.method == "PATCH"]
    assert [r.json() for r in patches] == [{"timeout": configured}]
    assert client.tokens.expires_in() == configured


def test_basic_auth_sends_no_token_and_never_logs_in(requests_mock, clock):
    from dataclasses import replace

    pool = BASE + "/mgmt/tm/sys/version"
    requests_mock.get(pool, json={"entries": {"x": {"nestedStats": {"entries": {"Version": {"description": "17.1.2"}}}}}})
    requests_mock.post(LOGIN, status_code=500)
    client = make(clock, replace(CFG, auth="basic"))
    assert client.version() == "17.1.2" and client.version() == "17.1.2"
    sent = [r for r in requests_mock.request_history]
    assert [r.method for r in sent] == ["GET", "GET"]
    assert all(r.headers["Authorization"].startswith("Basic ") and "X-F5-Auth-Token" not in r.headers for r in sent)
    assert client.token_counters().logins == 0
    client.close()
    assert len(requests_mock.request_history) == 2  # nothing to delete


def test_basic_auth_refused_is_not_retried_for_30_s(requests_mock, clock):
    from dataclasses import replace

    url = BASE + "/mgmt/tm/sys/version"
    requests_mock.get(url, status_code=401, json={"code": 401, "message": "Authentication failed.", "errorStack": []})
    client = make(clock, replace(CFG, auth="basic"))
    with pytest.raises(AuthError) as info:
        client.version()
    assert "basic auth refused for user ratio-bot" in str(info.value) and PASSWORD not in str(info.value)
    with pytest.raises(AuthError):
        client.version()
    assert requests_mock.call_count == 1  # the second call sent nothing: the account is not hammered
    clock.advance(31)
    with pytest.raises(AuthError):
        client.version()
    assert requests_mock.call_count == 2
