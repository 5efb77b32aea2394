"""BigIPClient against requests-mock, with the real BIG-IP JSON from the fixtures."""

from __future__ import annotations

import warnings
from urllib.parse import unquote

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from controller.clock import FakeClock
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
from controller.ltm.client import ATTEMPTS, BigIPClient, member_path
from controller.model import Member, PoolRef, split_member_name
from tests.bigip_support import (
    BASE,
    ERR,
    LOGIN,
    POOL_URL,
    REF,
    TOKEN,
    Err,
    cfg,
    fixture,
    member,
    member_json,
    non_auth,
    pool_reply,
    resolve,
)

# -- reading a pool -------------------------------------------------------------------------------


def test_read_pool_parses_fixture_in_one_get(client, auth):
    auth.get(POOL_URL, json=pool_reply(member_json("10.0.0.2:8000", "10.0.0.2", ratio=37, connectionLimit=12,
                                                   description="f5-llm-ratio: score 0.8")))
    state = client.read_pool(REF)
    gets = non_auth(auth.request_history)
    assert len(gets) == 1 and gets[0].qs == {"expandsubcollections": ["true"]}
    assert state.ref == REF and state.load_balancing_mode == "round-robin" and not state.honours_ratio
    assert state.queue_on_connection_limit is False and state.metadata == ()
    first, second = state.members
    assert first == Member(name="1.1.1.1:80", partition="Common", address="1.1.1.1", port=80, ratio=1,
                           connection_limit=0, session="user-disabled", state="up", description="",
                           full_path="/Common/1.1.1.1:80")
    assert not first.active
    assert (second.port, second.ratio, second.connection_limit, second.description) == (8000, 37, 12, "f5-llm-ratio: score 0.8")


def test_one_login_for_many_calls(client, auth):
    auth.get(POOL_URL, json=pool_reply())
    for _ in range(25):
        client.read_pool(REF)
    assert client.tokens.logins == 1 and client.tokens.extensions == 1
    assert client.calls == 25 + 2  # 25 GETs, one login, one extension


def test_pool_without_items_is_empty_and_metadata_and_queue_parsed(client, auth):
    reply = fixture("load_ltm_pool_with_metadata.json")
    reply["queueOnConnectionLimit"] = "enabled"
    reply["loadBalancingMode"] = "ratio-least-connections-member"
    auth.get(BASE + "/mgmt/tm/ltm/pool/~Common~asdasd", json=reply)
    state = client.read_pool(PoolRef("asdasd"))
    assert state.members == () and state.queue_on_connection_limit is True and state.honours_ratio
    assert state.metadata == (("ansible", "2.4"),)


def _mutate(fn):
    """A pool reply changed by `fn`, built when the test runs (the fixture is not read at collection)."""

    def build():
        reply = pool_reply()
        fn(reply)
        return reply

    return build


@pytest.mark.parametrize(
    "reply, words",
    [
        (_mutate(lambda r: r.pop("loadBalancingMode")), "loadBalancingMode"),
        (_mutate(lambda r: r["membersReference"].update(items={"a": 1})), "items is not a list"),
        (_mutate(lambda r: r["membersReference"]["items"][0].update(ratio="1")), "ratio"),
        (_mutate(lambda r: r["membersReference"]["items"][0].update(ratio=True)), "ratio"),
        (_mutate(lambda r: r["membersReference"]["items"][0].update(ratio=0)), "ratio"),
        (_mutate(lambda r: r["membersReference"]["items"][0].update(connectionLimit=-1)), "connectionLimit"),
        (_mutate(lambda r: r["membersReference"]["items"][0].pop("address")), "address"),
        (_mutate(lambda r: r["membersReference"]["items"][0].update(name="1.1.1.1")), "port"),
        (_mutate(lambda r: r["membersReference"]["items"].append("x")), "not an object"),
        (_mutate(lambda r: r.update(fullPath="/Common/other")), "fullPath"),
        (_mutate(lambda r: r.update(metadata="x")), "metadata"),
        ([1, 2], "expected an object"),
    ],
)
def test_malformed_pool_reply_is_permanent_and_not_retried(client, auth, sleeps, reply, words):
    reply = reply() if callable(reply) else reply
    auth.get(POOL_URL, json=reply)
    with pytest.raises(PermanentBigIPError, match="malformed pool reply") as info:
        client.read_pool(REF)
    assert words in str(info.value)
    assert len(non_auth(auth.request_history)) == 1 and sleeps.delays == []


# -- error translation and retries ---------------------------------------------------------------

HTML_503 = Err("restjavad_restarting_503_html")


@pytest.mark.parametrize(
    "status, body, error, calls, text",
    [
        (500, Err("mcpd_lost_500"), RetryableBigIPError, ATTEMPTS, "connection to mcpd has been lost"),
        (503, HTML_503, RetryableBigIPError, ATTEMPTS, "Configuration Utility restarting..."),
        (404, Err("restjavad_not_ready_404"), RetryableBigIPError, ATTEMPTS, "not registered"),
        (404, Err("pool_not_found_404"), NotFoundError, 1, "The requested Pool (/Common/my-pool) was not found."),
        (404, Err("object_not_found_404"), NotFoundError, 1, "Object not found"),
        (400, Err("node_in_use_400"), PermanentBigIPError, 1, "is referenced by a member of pool"),
        (400, Err("transaction_header_left_on_commit_400"), PermanentBigIPError, 1, "not allowed to be added"),
        (403, {"code": 403, "message": "Forbidden"}, PermanentBigIPError, 1, "Forbidden"),
        (500, {"code": 500, "message": "java.lang.NullPointerException"}, BigIPError, 1, "NullPointerException"),
        (200, "<html><body>hello</body></html>", RetryableBigIPError, ATTEMPTS, "unexpected non-JSON reply"),
        (302, "", PermanentBigIPError, 1, "unexpected redirect"),
    ],
)
def test_error_replies_are_translated(client, auth, sleeps, status, body, error, calls, text):
    body = resolve(body)
    kw = {"text": body} if isinstance(body, str) else {"json": body}
    auth.get(POOL_URL, status_code=status, headers={"Location": "/tmui/login.jsp"}, **kw)
    with pytest.raises(error) as info:
        client.read_pool(REF)
    exc = info.value
    assert type(exc) is error and exc.status == status
    assert text in str(exc) and "<html" not in str(exc) and "<title" not in str(exc)
    assert f"GET /mgmt/tm/ltm/pool/~Common~test_pool: HTTP {status}" in str(exc)
    assert len(non_auth(auth.request_history)) == calls
    assert len(sleeps.delays) == calls - 1


def test_backoff_is_exponential_with_jitter_and_bounded(client, auth, sleeps):
    auth.get(POOL_URL, status_code=503, text=resolve(HTML_503))
    for _ in range(20):
        with pytest.raises(RetryableBigIPError):
            client.read_pool(REF)
    firsts, seconds = sleeps.delays[0::2], sleeps.delays[1::2]
    assert all(0 <= d <= 0.5 for d in firsts) and all(0 <= d <= 1.0 for d in seconds)
    assert len(set(sleeps.delays)) > 1  # jittered


@pytest.mark.parametrize("status, body", [(500, Err("mcpd_lost_500")), (503, HTML_503), (404, Err("restjavad_not_ready_404"))])
def test_transient_failure_then_success(client, auth, status, body):
    body = resolve(body)
    kw = {"text": body} if isinstance(body, str) else {"json": body}
    auth.get(POOL_URL, [dict(status_code=status, **kw), {"json": pool_reply()}])
    assert len(client.read_pool(REF).members) == 1
    assert len(non_auth(auth.request_history)) == 2


def test_long_message_is_clipped_to_200_chars(client, auth):
    auth.get(POOL_URL, status_code=400, json={"code": 400, "message": "x" * 5000})
    with pytest.raises(PermanentBigIPError) as info:
        client.read_pool(REF)
    assert info.value.message == "x" * 200


SSL_TEXT = ("HTTPSConnectionPool(host='bigip.example', port=443): Max retries exceeded with url: /mgmt/shared/authn/login "
            "(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
            "self-signed certificate in certificate chain (_ssl.c:1006)')))")


@pytest.mark.parametrize(
    "exc, error, text",
    [
        (requests.exceptions.SSLError(SSL_TEXT), BigIPUnreachable,
         "TLS verification failed (self-signed certificate in certificate chain): set f5.verify_tls to a CA bundle path"),
        (requests.exceptions.ConnectionError("refused"), BigIPUnreachable, "cannot connect to bigip.example:443"),
        (requests.exceptions.ConnectTimeout("slow"), BigIPTimeout, "no connection to bigip.example:443 within 7s"),
        (requests.exceptions.ReadTimeout("slow"), BigIPTimeout, "no complete reply within 7s"),
        (requests.exceptions.ChunkedEncodingError("cut"), RetryableBigIPError, "request failed"),
    ],
)
def test_library_exceptions_are_translated_with_cause(client, auth, exc, error, text):
    auth.get(POOL_URL, exc=exc)
    with pytest.raises(error) as info:
        client.read_pool(REF)
    assert type(info.value) is error and text in str(info.value)
    assert isinstance(info.value.__cause__, requests.RequestException)
    # A call whose deadline passed is not retried in the same tick (issue 12): it would only stretch the tick.
    assert len(non_auth(auth.request_history)) == (1 if error is BigIPTimeout else ATTEMPTS)


def test_tls_failure_at_login_is_unreachable(auth, sleeps):
    auth.post(LOGIN, exc=requests.exceptions.SSLError(SSL_TEXT))
    with pytest.raises(BigIPUnreachable, match="set f5.verify_tls to a CA bundle path"):
        BigIPClient(cfg(), sleep=sleeps).read_pool(REF)
    assert auth.call_count == ATTEMPTS


# -- 401 and the token -----------------------------------------------------------------------------


def test_expired_token_gives_one_relogin_and_one_retry(client, auth):
    auth.get(POOL_URL, [{"status_code": 401, "json": ERR["token_expired_401"]}, {"json": pool_reply()}])
    client.read_pool(REF)  # logs in, 401, re-login, retry
    assert client.tokens.logins == 2
    assert [r.method for r in non_auth(auth.request_history)] == ["GET", "GET"]


@pytest.mark.parametrize("body", [Err("token_expired_401"), Err("token_missing_401"), Err("no_auth_401")])
def test_second_401_is_auth_error(client, auth, sleeps, body):
    body = resolve(body)
    auth.get(POOL_URL, status_code=401, json=body)
    with pytest.raises(AuthError) as info:
        client.read_pool(REF)
    assert "refused again after a fresh login" in str(info.value) and body["message"][:40] in str(info.value)
    assert client.tokens.logins == 2 and len(non_auth(auth.request_history)) == 2 and sleeps.delays == []


def test_role_denied_401_does_not_relogin(client, auth):
    denied = {"code": 401, "message": "Authorization failed: user=https://localhost/mgmt/shared/authz/users/ratio-bot "
              "resource=/mgmt/tm/ltm/pool verb=PATCH uri:http://localhost:8100/mgmt/tm/ltm/pool referrer:1.2.3.4 sender:1.2.3.4"}
    auth.patch(POOL_URL + "/members/~Common~1.1.1.1:80", status_code=401, json=denied)
    with pytest.raises(AuthError, match="verb=PATCH") as info:
        client.patch_member(REF, member(), {"ratio": 5})
    assert "needs the Manager role" in str(info.value)
    assert client.tokens.logins == 1


def test_token_limit_on_login_is_clear(auth, sleeps):
    auth.post(LOGIN, status_code=400, json=ERR["token_limit_400"])
    with pytest.raises(TokenLimitError) as info:
        BigIPClient(cfg(), sleep=sleeps).read_pool(REF)
    assert "ratio-bot has reached its limit of active tokens (F5 K44237337)" in str(info.value)
    assert auth.call_count == 1  # permanent: not retried, so no more tokens burnt


def test_close_deletes_the_token(client, auth):
    auth.get(POOL_URL, json=pool_reply())
    client.read_pool(REF)
    client.close()
    last = auth.request_history[-1]
    assert last.method == "DELETE" and last.url == f"{BASE}/mgmt/shared/authz/tokens/{TOKEN}"
    assert last.headers["X-F5-Auth-Token"] == TOKEN and client.tokens.deletions == 1


# -- verify and timeout on every request ----------------------------------------------------------


@pytest.mark.parametrize("verify", ["/etc/f5/ca.pem", False, True])
def test_verify_and_timeout_passed_per_request_despite_requests_ca_bundle(auth, monkeypatch, verify):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/some/other/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/some/other/bundle.pem")
    session = requests.Session()
    session.verify = "/ignored/by/requests.pem"
    auth.get(POOL_URL, json=pool_reply())
    client = BigIPClient(cfg(verify_tls=verify), session=session)
    client.read_pool(REF)
    client.close()
    assert auth.call_count == 4  # login, extend, GET, DELETE
    for req in auth.request_history:
        assert req.timeout is not None and req.timeout <= 7.0
        if verify is True:  # True means "the default trust store", which the env var may name
            assert req.verify in (True, "/some/other/bundle.pem")
        else:
            assert req.verify == verify


def test_insecure_warning_silenced_only_for_this_host(auth):
    from urllib3.exceptions import InsecureRequestWarning

    BigIPClient(cfg(host="lb-insecure.example", verify_tls=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        BigIPClient(cfg(host="lb-insecure.example", verify_tls=False))  # re-installs its filter first
        for host in ("lb-insecure.example", "elsewhere.example"):
            warnings.warn(f"Unverified HTTPS request is being made to host '{host}'. Adding certificate "
                          "verification is strongly advised.", InsecureRequestWarning, stacklevel=1)
    assert [str(w.message).split("'")[1] for w in caught] == ["elsewhere.example"]


# -- member paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, m, path",
    [
        (REF, member(), "/mgmt/tm/ltm/pool/~Common~test_pool/members/~Common~1.1.1.1:80"),
        (REF, member("10.0.0.1%2:8000", "10.0.0.1%2", 8000),
         "/mgmt/tm/ltm/pool/~Common~test_pool/members/~Common~10.0.0.1%252:8000"),
        (REF, member("2001:db8::1.8000", "2001:db8::1", 8000),
         "/mgmt/tm/ltm/pool/~Common~test_pool/members/~Common~2001:db8::1.8000"),
        (PoolRef("llm", "Tenant", "app"), member("web1:8000", "10.1.1.1", 8000, partition="Tenant"),
         "/mgmt/tm/ltm/pool/~Tenant~app~llm/members/~Tenant~web1:8000"),
        (PoolRef("llm", "Tenant", "app"),
         member("10.1.1.1:8000", "10.1.1.1", 8000, partition="Tenant", full_path="/Tenant/app/10.1.1.1:8000"),
         "/mgmt/tm/ltm/pool/~Tenant~app~llm/members/~Tenant~app~10.1.1.1:8000"),
    ],
)
def test_member_paths_on_the_wire(client, auth, ref, m, path):
    assert member_path(ref, m) == path
    auth.patch(BASE + path, json={})
    client.patch_member(ref, m, {"ratio": 9})
    assert auth.last_request.url == BASE + path and auth.last_request.json() == {"ratio": 9}


_octet = st.integers(0, 255).map(str)
_ipv4 = st.tuples(_octet, _octet, _octet, _octet).map(".".join)
_ipv6 = st.ip_addresses(v=6).map(str)
_rd = st.one_of(st.just(""), st.integers(1, 4094).map(lambda n: f"%{n}"))


@given(st.one_of(st.tuples(_ipv4, _rd, st.integers(1, 65535)).map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
                 st.tuples(_ipv6, _rd, st.integers(1, 65535)).map(lambda t: f"{t[0]}{t[1]}.{t[2]}")))
def test_member_path_round_trips_any_address(name):
    node, port = split_member_name(name)
    path = member_path(REF, Member(name=name, partition="Common", address=node, port=port))
    prefix = "/mgmt/tm/ltm/pool/~Common~test_pool/members/"
    assert path.startswith(prefix) and unquote(path[len(prefix):]) == "~Common~" + name
    assert "%" not in name or "%25" in path
    assert "/" not in path[len(prefix):] and "?" not in path and "#" not in path


def test_read_pool_route_domain_ipv6_and_subpath_members(client, auth):
    ref = PoolRef("llm", "Tenant", "app")
    reply = pool_reply(member_json("10.0.0.1%2:8000", "10.0.0.1%2", partition="Tenant"),
                       member_json("2001:db8::1.8000", "2001:db8::1", partition="Tenant",
                                   full_path="/Tenant/app/2001:db8::1.8000"),
                       fullPath="/Tenant/app/llm")
    auth.get(BASE + "/mgmt/tm/ltm/pool/~Tenant~app~llm", json=reply)
    _, rd, v6 = client.read_pool(ref).members
    assert (rd.address, rd.port, rd.scrape_host) == ("10.0.0.1%2", 8000, "10.0.0.1")
    assert (v6.address, v6.port, v6.scrape_host) == ("2001:db8::1", 8000, "[2001:db8::1]")
    assert member_path(ref, v6) == "/mgmt/tm/ltm/pool/~Tenant~app~llm/members/~Tenant~app~2001:db8::1.8000"


# -- issue 19: a reply over f5.max_reply_mb is refused ---------------------------------------------
@pytest.mark.parametrize("declared", [True, False])
def test_a_reply_over_the_size_cap_is_refused_with_a_clear_error(auth, sleeps, declared):
    from controller.errors import ReplyTooLargeError

    client = BigIPClient(cfg(max_reply_mb=1.0), clock=FakeClock(), sleep=sleeps)
    body = b'{"items": ["' + b"x" * (3 * 1024 * 1024) + b'"]}'
    headers = {"Content-Length": str(len(body))} if declared else {"Transfer-Encoding": "chunked"}
    auth.get(POOL_URL, content=body, headers=headers)
    with pytest.raises(ReplyTooLargeError) as err:
        client.read_pool(REF)
    assert "larger than f5.max_reply_mb (1,048,576 bytes)" in str(err.value)
    assert isinstance(err.value, PermanentBigIPError) and not err.value.retryable
    assert len(non_auth(auth.request_history)) == 1  # not retried


def test_a_reply_under_the_cap_is_read_as_before(auth, sleeps):
    client = BigIPClient(cfg(max_reply_mb=1.0), clock=FakeClock(), sleep=sleeps)
    auth.get(POOL_URL, json=pool_reply())
    assert len(client.read_pool(REF).members) == len(pool_reply()["membersReference"]["items"]) > 0
