"""Scraper against a real loopback HTTP server: success, auth headers, and every failure slug.

Timings are kept short (sub-second timeouts) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import base64

import pytest

from controller.config.schema import EngineKeys, MetricsConfig, PoolConfig
from controller.engines.scrape import ACCEPT, Scraper, Target, target_for
from controller.model import Member, PoolRef
from tests.conftest import engine_page_text, free_port
from tests.helpers_http import Loopback, delayed, elapsed, gzipped, page, streamed, trickle

SECRET = "sk-very-secret-token"


def member(port: int, address: str = "127.0.0.1") -> Member:
    return Member(name=f"{address}:{port}", partition="Common", address=address, port=port)


def pool(**metrics) -> PoolConfig:
    return PoolConfig(ref=PoolRef("llm"), engine_type="vllm", metrics=MetricsConfig(**metrics))


def target(url: str, timeout: float = 2.0, name: str = "m1", headers=(("Accept", ACCEPT),), **kw) -> Target:
    return Target(member=name, url=url, engine_type="vllm", timeout=timeout, headers=headers, **kw)


def vllm_page() -> str:
    return engine_page_text("vllm_0_11_dp2")


def scrape_by_member(scraper: Scraper, targets, deadline: float) -> dict:
    """Results keyed by member name: these targets all belong to no pool, so the member alone is unique."""
    return {key.member: result for key, result in scraper.scrape(targets, deadline).items()}


@pytest.fixture
def scraper():
    s = Scraper(max_workers=8)
    yield s
    s.close()


# -- target_for ------------------------------------------------------------------------------------
def test_target_for_uses_the_engines_default_path_unless_configured():
    m = member(8000, "10.0.0.1")
    trt = PoolConfig(ref=PoolRef("llm"), engine_type="trtllm")
    assert target_for(m, trt, None).url == "http://10.0.0.1:8000/prometheus/metrics"  # trtllm-serve's path
    custom = PoolConfig(ref=PoolRef("llm"), engine_type="trtllm", metrics=MetricsConfig(path="/custom"))
    assert target_for(m, custom, None).url == "http://10.0.0.1:8000/custom"
    assert target_for(m, pool(), None).url == "http://10.0.0.1:8000/metrics"


def test_target_for_builds_url_headers_and_auth():
    m = Member(name="10.0.0.1%2:8000", partition="Common", address="10.0.0.1%2", port=8000)
    t = target_for(m, pool(), None)
    assert t.url == "http://10.0.0.1:8000/metrics"
    assert dict(t.headers) == {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}
    assert t.auth is None and t.member == m.key and t.engine_type == "vllm" and t.timeout == 3.0


def test_target_for_ipv6_port_path_schema_and_secrets():
    m = Member(name="2001:db8::1%3.8000", partition="Common", address="2001:db8::1%3", port=8000)
    keys = EngineKeys("x:waiting")
    t = target_for(m, pool(schema="https", port=9400, path="prometheus/metrics", api_key=SECRET, user="u", password="pw"), keys)
    assert t.url == "https://[2001:db8::1]:9400/prometheus/metrics"
    assert dict(t.headers)["Authorization"] == f"Bearer {SECRET}"
    assert t.auth is None and t.keys is keys  # both set: Bearer only, as the sideband sends
    assert "openmetrics" not in str(t.headers)
    assert SECRET not in repr(t) and "pw" not in repr(t)


# -- success ---------------------------------------------------------------------------------------
def test_ok_page_and_headers_sent(scraper):
    with Loopback({"/metrics": page(vllm_page())}) as srv:
        t = target_for(member(srv.port), pool(api_key=SECRET), None)
        result = scrape_by_member(scraper, [t], deadline=2.0)[t.member]
    assert result.ok, result
    assert (result.sample.waiting, result.sample.running, result.sample.ranks) == (12, 39, 2)
    assert result.sample.kv_usage == 0.9375 and result.duration > 0
    headers = srv.seen[0]["headers"]
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert headers["Accept"] == "text/plain;version=0.0.4"
    assert headers["Accept-Encoding"] == "gzip"


def test_basic_auth_header(scraper):
    with Loopback({"/metrics": page(vllm_page())}) as srv:
        t = target_for(member(srv.port), pool(user="scraper", password="pw:1"), None)
        assert scrape_by_member(scraper, [t], 2.0)[t.member].ok
    assert srv.seen[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"scraper:pw:1").decode()


def test_apikey_and_metric_user_both_set_send_bearer_as_the_sideband_does(scraper):
    # core/metrics_collector.py at f254c3e: `if api_key: Bearer ... elif username and password: BasicAuth`
    with Loopback({"/metrics": page(vllm_page())}) as srv:
        t = target_for(member(srv.port), pool(api_key=SECRET, user="scraper", password="pw:1"), None)
        assert scrape_by_member(scraper, [t], 2.0)[t.member].ok
    assert srv.seen[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_gzip_response_is_decoded(scraper):
    with Loopback({"/metrics": gzipped(vllm_page())}) as srv:
        result = scrape_by_member(scraper, [target(srv.url(), headers=(("Accept-Encoding", "gzip"),))], 2.0)["m1"]
    assert result.ok and result.sample.waiting == 12


def test_connections_are_kept_alive_between_ticks(scraper):
    with Loopback({"/metrics": page(vllm_page())}) as srv:
        for _ in range(3):
            assert scrape_by_member(scraper, [target(srv.url())], 2.0)["m1"].ok
    assert len({r["port"] for r in srv.seen}) == 1  # one TCP connection served all three ticks


def test_targets_are_scraped_concurrently(scraper):
    with Loopback({"/metrics": delayed(0.3, page(vllm_page()))}) as srv:
        targets = [target(srv.url(), name=f"m{i}") for i in range(6)]
        results, took = elapsed(lambda: scrape_by_member(scraper, targets, 3.0))
    assert all(r.ok for r in results.values()) and len(results) == 6
    assert took < 1.2  # six 0.3 s pages in parallel, not 1.8 s in series


# -- failures --------------------------------------------------------------------------------------
def test_refused(scraper):
    result = scrape_by_member(scraper, [target(f"http://127.0.0.1:{free_port()}/metrics")], 2.0)["m1"]
    assert (result.error, result.detail) == ("refused", "connection refused")


def test_slow_headers_time_out(scraper):
    with Loopback({"/metrics": delayed(5, page(vllm_page()))}) as srv:
        results, took = elapsed(lambda: scrape_by_member(scraper, [target(srv.url(), timeout=0.3)], 3.0))
    assert results["m1"].error == "timeout"
    assert took < 3.0  # the page takes 5 s: generous for a loaded CI box, still fails if the timeout does not hold


@pytest.mark.parametrize("timeout,deadline,reason", [(0.4, 3.0, "timeout"), (5.0, 0.4, "deadline")])
def test_trickling_body_is_cut_at_the_total_budget(scraper, timeout, deadline, reason):
    """One byte every 50 ms never trips a socket timeout; the total budget must still hold."""
    with Loopback({"/metrics": trickle(0.05)}) as srv:
        results, took = elapsed(lambda: scrape_by_member(scraper, [target(srv.url(), timeout=timeout)], deadline))
    assert results["m1"].error == reason
    assert took < min(timeout, deadline) + 1.5  # the trickle lasts far longer than either


def test_members_not_done_by_the_deadline_get_deadline():
    """With one worker, the second member waits behind the first and the tick ends first."""
    with Scraper(max_workers=1) as scraper, Loopback({"/slow": delayed(5, page(vllm_page()))}) as srv:
        targets = [target(srv.url("/slow"), timeout=5, name="a"), target(srv.url("/slow"), timeout=5, name="b")]
        results, took = elapsed(lambda: scrape_by_member(scraper, targets, 0.4))
    assert {r.error for r in results.values()} == {"deadline"}
    assert took < 2.5  # the pages take 5 s each


@pytest.mark.parametrize("declare_length", [True, False])
def test_ten_megabyte_page_is_too_large(scraper, declare_length):
    with Loopback({"/metrics": streamed(10 * 1024 * 1024, declare_length=declare_length)}) as srv:
        result = scrape_by_member(scraper, [target(srv.url())], 5.0)["m1"]
    assert result.error == "too-large"


def test_html_200_is_not_prometheus(scraper):
    html = "<!DOCTYPE html>\n<html><head><title>Login</title></head>\n<body>Sign in</body></html>\n"
    with Loopback({"/metrics": page(html, ctype="text/html")}) as srv:
        result = scrape_by_member(scraper, [target(srv.url())], 2.0)["m1"]
    assert result.error == "not-prometheus" and "HTML" in result.detail


def test_http_500_and_secret_never_in_detail(scraper):
    with Loopback({"/metrics": page("oops", status=500, reason=f"token {SECRET} rejected")}) as srv:
        t = target(srv.url(), headers=(("Authorization", f"Bearer {SECRET}"),), auth=("u", "hunter2"))
        result = scrape_by_member(scraper, [t], 2.0)["m1"]
    assert result.error == "http-500"
    assert SECRET not in result.detail and "***" in result.detail


def test_404_and_metric_errors_are_reported(scraper):
    with Loopback({"/metrics": page("# HELP x y\nother_metric 1\n")}) as srv:
        results = scrape_by_member(scraper, [target(srv.url("/nope"), name="a"), target(srv.url(), name="b")], 2.0)
    assert results["a"].error == "http-404"
    assert (results["b"].error, results["b"].detail) == ("missing-metric", "vllm:num_requests_waiting")


def test_https_to_a_plain_http_server_is_tls(scraper):
    with Loopback({"/metrics": page(vllm_page())}) as srv:
        result = scrape_by_member(scraper, [target(f"https://127.0.0.1:{srv.port}/metrics")], 2.0)["m1"]
    assert result.error == "tls"


def test_never_raises(scraper):
    results = scrape_by_member(scraper, [target("http://[not-an-address/metrics", name="bad")], 1.0)
    assert results["bad"].error == "error"
    scraper.close()
    assert scrape_by_member(scraper, [target("http://127.0.0.1:1/metrics")], 1.0)["m1"].error == "error"
