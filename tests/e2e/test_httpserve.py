"""controller.telemetry.httpserve: the one threaded HTTP(S) server, exercised over real loopback sockets."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading

import pytest

from controller.sim import tls
from controller.telemetry import httpserve
from controller.telemetry.httpserve import Request, Response, Server


def _get(srv: Server, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    assert srv.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_route_table_serves_paths_and_404s_the_rest():
    table = {"/hello": lambda req: Response.text("hi\n"), "/": lambda req: Response.text("root\n")}
    with Server(table) as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert _get(srv, "/hello")[2] == b"hi\n"
        assert _get(srv, "/hello/?x=1")[2] == b"hi\n"
        assert _get(srv, "/")[2] == b"root\n"
        status, headers, body = _get(srv, "/nope")
        assert status == 404
        assert json.loads(body)["endpoints"] == ["/", "/hello"]
        assert headers["Content-Length"] == str(len(body))


def test_request_fields_reach_the_app():
    seen: list[Request] = []

    def app(req: Request) -> Response:
        seen.append(req)
        return Response.json({"ok": True}, 201, headers={"X-Thing": "1"})

    with Server(app, server_header="Jetty(9.2.22.v20170606)") as srv:
        status, headers, body = _get(srv, "/a/b?$top=2", "PATCH", b'{"ratio": 3}', {"X-F5-Auth-Token": "t"})
    assert status == 201 and headers["X-Thing"] == "1" and headers["Server"] == "Jetty(9.2.22.v20170606)"
    assert json.loads(body) == {"ok": True}
    (req,) = seen
    assert (req.method, req.path, req.query, req.target) == ("PATCH", "/a/b", "$top=2", "/a/b?$top=2")
    assert req.body == b'{"ratio": 3}' and req.header("x-f5-auth-token") == "t"
    assert req.client[0] == "127.0.0.1" and req.client[1] > 0


def test_head_has_headers_but_no_body_and_unlisted_methods_are_refused():
    with Server(lambda req: Response.text("body\n"), methods=("GET", "HEAD")) as srv:
        status, headers, body = _get(srv, "/", "HEAD")
        assert (status, headers["Content-Length"], body) == (200, "5", b"")
        assert _get(srv, "/", "POST", b"x")[0] == 405


def test_a_handler_that_raises_is_a_500_and_reported_once():
    errors: list[BaseException] = []

    def boom(req: Request) -> Response:
        raise RuntimeError("bug")

    with Server(boom, on_error=lambda exc, req: errors.append(exc)) as srv:
        assert _get(srv, "/")[0] == 500
        assert _get(srv, "/")[0] == 500  # the server lives on
    assert [str(e) for e in errors] == ["bug", "bug"]


def test_keep_alive_reuses_one_connection():
    ports: list[int] = []

    def app(req: Request) -> Response:
        ports.append(req.client[1])
        return Response.text("x")

    with Server(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        for _ in range(3):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"x"
        conn.close()
    assert len(set(ports)) == 1


def test_stream_without_length_closes_after_the_reply():
    with Server(lambda req: Response(stream=iter([b"a", b"b", b"c"]))) as srv:
        status, headers, body = _get(srv, "/")
    assert (status, body, headers.get("Connection")) == (200, b"abc", "close")


def test_drop_resets_without_a_reply():
    with Server(lambda req: Response(drop=True)) as srv, pytest.raises((http.client.HTTPException, OSError)):
        _get(srv, "/")


def test_chunked_request_body_is_read():
    bodies: list[bytes] = []

    def app(req: Request) -> Response:
        bodies.append(req.body)
        return Response.text("ok")

    with Server(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("POST", "/", body=iter([b"hello ", b"world"]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        assert conn.getresponse().read() == b"ok"
        conn.close()
    assert bodies == [b"hello world"]


def test_tls_serves_https_and_backlog_is_set():
    certs = tls.shared_pair()
    with Server(lambda req: Response.text("secure"), tls=tls.server_context(certs), backlog=7) as srv:
        assert srv.url and srv.url.startswith("https://127.0.0.1:")
        assert srv._httpd is not None and srv._httpd.request_queue_size == 7
        ctx = ssl.create_default_context(cafile=certs.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=5, context=ctx)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"secure"
        conn.close()


def test_ipv6_loopback_when_available():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        srv = Server(lambda req: Response.text("six"), host="::1")
        srv.start()
    except OSError as exc:
        pytest.skip(f"::1 not bindable here: {exc}")
    try:
        assert srv.url == f"http://[::1]:{srv.port}"
        conn = http.client.HTTPConnection("::1", srv.port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"six"
        conn.close()
    finally:
        srv.stop()


def test_stop_wakes_slow_handlers_and_cuts_open_connections():
    entered = threading.Event()

    def slow(req: Request) -> Response:
        entered.set()
        req.stopping.wait(30)
        return Response.text("late")

    srv = Server(slow)
    srv.start()
    result: list[object] = []

    def client() -> None:
        try:
            result.append(_get(srv, "/"))
        except (OSError, http.client.HTTPException) as exc:
            result.append(exc)

    t = threading.Thread(target=client)
    t.start()
    assert entered.wait(5)
    srv.stop()
    t.join(5)
    assert not t.is_alive() and len(result) == 1
    assert srv.address is None and srv.url is None
    srv.stop()  # idempotent


def test_start_is_idempotent_and_a_busy_port_is_an_oserror():
    with Server(lambda req: Response.text("a")) as first:
        assert first.start() == first.address
        with pytest.raises(OSError):
            Server(lambda req: Response.text("b"), port=first.port or 0).start()


def test_public_names():
    assert set(httpserve.__all__) == {"METHODS", "App", "Request", "Response", "Server", "routes"}
