"""Issue 19: the scraper's open sockets are bounded by its settings, not by the member count, and a
redirect is followed only to the same scheme, host and port.

Real loopback servers (127.0.0.1, started and stopped here); the client sockets are counted in the
kernel's table (/proc/net/tcp), not in the scraper's internals.
"""

from __future__ import annotations

import contextlib

import pytest

from controller.engines.scrape import Scraper
from controller.telemetry.httpserve import Response
from tests.conftest import engine_page_text
from tests.e2e.test_scrape import scrape_by_member, target
from tests.helpers_http import Loopback, page


def established_to(ports: set[int]) -> int:
    """Client-side TCP connections in state ESTABLISHED whose remote port is one of `ports`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port in ports:
                count += 1
    return count


def redirect(location: str):
    return lambda req, srv: Response(status=302, body=b"", content_type="text/plain", headers={"Location": location})


@pytest.mark.skipif(not __import__("os").path.exists("/proc/net/tcp"), reason="needs Linux's /proc/net/tcp")
def test_open_sockets_are_bounded_by_keepalive_not_by_member_count():
    text = engine_page_text("vllm_0_11_dp2")
    scraper = Scraper(max_workers=3, keepalive=2)
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(Loopback({"/metrics": page(text)})) for _ in range(10)]
        ports = {s.port for s in servers}
        targets = [target(s.url(), name=f"m{i}") for i, s in enumerate(servers)]
        for _ in range(3):
            results = scrape_by_member(scraper, targets, 5.0)
            assert all(r.ok for r in results.values()), results
            # Between ticks: only the kept endpoints hold a connection; each server also holds its end
            # of it, so count the client side (remote port = a server's port).
            assert established_to(ports) <= 2
        per_server = [len({seen["port"] for seen in s.seen}) for s in servers]
        scraper.close()
    # Two endpoints kept one connection for all three ticks; the other eight connected per page.
    assert sorted(per_server) == [1, 1] + [3] * 8
    closes = [seen["headers"].get("Connection") for s in servers for seen in s.seen]
    assert closes.count("close") == 8 * 3


def test_a_member_of_a_small_fleet_keeps_its_connection():
    scraper = Scraper(max_workers=2)
    with Loopback({"/metrics": page(engine_page_text("vllm_0_11_dp2"))}) as srv:
        for _ in range(3):
            assert scrape_by_member(scraper, [target(srv.url())], 2.0)["m1"].ok
    scraper.close()
    assert len({r["port"] for r in srv.seen}) == 1 and all(r["headers"].get("Connection") != "close" for r in srv.seen)


def test_a_redirect_on_the_same_host_and_port_is_followed():
    text = engine_page_text("vllm_0_11_dp2")
    with Scraper(max_workers=2) as scraper, Loopback({"/metrics": redirect("/metrics/"), "/metrics/": page(text)}) as srv:
        result = scrape_by_member(scraper, [target(srv.url())], 2.0)["m1"]
    assert result.ok and [r["path"] for r in srv.seen] == ["/metrics", "/metrics/"]


@pytest.mark.parametrize("where", ["port", "host"])
def test_a_redirect_to_another_host_or_port_is_not_followed_and_the_error_says_so(where):
    text = engine_page_text("vllm_0_11_dp2")
    with Loopback({"/metrics": page(text)}) as elsewhere:
        port = elsewhere.port
        location = elsewhere.url() if where == "port" else f"http://169.254.169.254:{port}/latest/meta-data"
        with Scraper(max_workers=2) as scraper, Loopback({"/metrics": redirect(location)}) as srv:
            result = scrape_by_member(scraper, [target(srv.url())], 2.0)["m1"]
    assert not result.ok and result.error == "error"
    assert "redirect to another host not followed" in result.detail
    assert (f":{port}" if where == "port" else "169.254.169.254") in result.detail
    assert "meta-data" not in result.detail  # where, not what
    assert elsewhere.seen == [] and len(srv.seen) == 1


def test_keepalive_is_lowered_to_fit_the_open_file_limit():
    from controller.loop.daemon import RESERVED_FDS, fit_keepalive

    assert fit_keepalive(128, 32, soft_limit=1024) == 128  # the defaults fit systemd's default limit
    assert fit_keepalive(5000, 32, soft_limit=1024) == 1024 - 32 - RESERVED_FDS
    assert fit_keepalive(128, 32, soft_limit=100) == 0  # every page on a connection of its own


def test_the_unit_sets_an_open_file_limit_that_fits_the_defaults():
    import pathlib
    import re

    from controller.config.schema import SchedulerConfig
    from controller.loop.daemon import RESERVED_FDS

    unit = (pathlib.Path(__file__).resolve().parents[2] / "systemd" / "f5-llm-ratio.service").read_text()
    found = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert found, "LimitNOFILE= in the unit"
    s = SchedulerConfig()
    assert int(found.group(1)) >= s.scrape_keepalive + s.scrape_concurrency + RESERVED_FDS
