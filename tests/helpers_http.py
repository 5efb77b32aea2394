"""A real loopback HTTP server for scrape tests: 127.0.0.1, port 0, started and stopped by the test.

Routes map a path to a handler function `fn(req, server)` where `req` is the BaseHTTPRequestHandler.
Every request's path, headers and client port are recorded in `server.seen`. Slow handlers wait on
`server.stopping`, so stopping the server never waits for a sleeping handler.
"""

from __future__ import annotations

import gzip as _gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler, "Loopback"], None]


class Loopback:
    def __init__(self, routes: dict[str, Handler]):
        self.routes = routes
        self.seen: list[dict] = []
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Loopback:
        owner = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real engines serve

            def do_GET(self):
                owner.seen.append({"path": self.path, "headers": dict(self.headers), "port": self.client_address[1]})
                route = owner.routes.get(self.path.split("?")[0])
                try:
                    if route is None:
                        send(self, 404, b"not found\n", "text/plain")
                    else:
                        route(self, owner)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# -- handler building blocks ---------------------------------------------------------------------
def send(req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, *, reason: str | None = None, gzip: bool = False) -> None:
    if gzip:
        body = _gzip.compress(body)
    req.send_response(status, reason)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    if gzip:
        req.send_header("Content-Encoding", "gzip")
    req.end_headers()
    req.wfile.write(body)


def page(text: str, status: int = 200, ctype: str = "text/plain; version=0.0.4; charset=utf-8", **kw) -> Handler:
    return lambda req, srv: send(req, status, text.encode(), ctype, **kw)


def gzipped(text: str) -> Handler:
    """gzip only when the client asked for it, as prometheus_client's exposition does."""

    def handler(req, srv):
        send(req, 200, text.encode(), "text/plain; version=0.0.4", gzip="gzip" in req.headers.get("Accept-Encoding", ""))

    return handler


def delayed(seconds: float, then: Handler) -> Handler:
    """Hold the response headers back for `seconds` (a hung engine)."""

    def handler(req, srv):
        if not srv.stopping.wait(seconds):
            then(req, srv)

    return handler


def trickle(interval: float, total: int = 10_000) -> Handler:
    """Headers at once, then one byte per `interval`: every socket read succeeds, the page never ends."""

    def handler(req, srv):
        req.send_response(200)
        req.send_header("Content-Type", "text/plain; version=0.0.4")
        req.send_header("Content-Length", str(total))
        req.end_headers()
        req.wfile.flush()
        for _ in range(total):
            if srv.stopping.wait(interval):
                return
            req.wfile.write(b"#")
            req.wfile.flush()

    return handler


def streamed(size: int, *, declare_length: bool) -> Handler:
    """A `size`-byte page of comment lines, with or without Content-Length (close-delimited)."""
    line = b"# filler line for a very large page................................................\n"

    def handler(req, srv):
        req.send_response(200)
        req.send_header("Content-Type", "text/plain; version=0.0.4")
        if declare_length:
            req.send_header("Content-Length", str(size))
        else:
            req.send_header("Connection", "close")
            req.close_connection = True
        req.end_headers()
        sent = 0
        block = line * (65536 // len(line))
        while sent < size and not srv.stopping.is_set():
            piece = block[: size - sent]
            req.wfile.write(piece)
            sent += len(piece)

    return handler


def elapsed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0
