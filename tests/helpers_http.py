"""A real loopback HTTP server for scrape tests: 127.0.0.1, port 0, started and stopped by the test.

Built on `controller.telemetry.httpserve`. Routes map a path to a handler `fn(req, server) -> Response`, where
`req` is an `httpserve.Request`. Every request's path, headers and client port are recorded in
`server.seen`. Slow handlers wait on `server.stopping`, so stopping the server never waits for a
sleeping handler.
"""

from __future__ import annotations

import gzip as _gzip
import threading
import time
from collections.abc import Callable, Iterator

from controller.telemetry import httpserve
from controller.telemetry.httpserve import Request, Response

Handler = Callable[[Request, "Loopback"], Response]


class Loopback:
    def __init__(self, routes: dict[str, Handler]):
        self.routes = routes
        self.seen: list[dict] = []
        self._server = httpserve.Server(self._app, name="loopback", methods=("GET",))
        self.stopping: threading.Event = self._server.stopping

    def _app(self, req: Request) -> Response:
        self.seen.append({"path": req.target, "headers": _titled(req.headers), "port": req.client[1]})
        route = self.routes.get(req.path)
        return send(404, b"not found\n", "text/plain") if route is None else route(req, self)

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Loopback:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    @property
    def port(self) -> int:
        port = self._server.port
        assert port is not None
        return port

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _titled(headers) -> dict[str, str]:
    """Header names as clients write them (`Accept-Encoding`), as the tests look them up."""
    return {"-".join(part.capitalize() for part in k.split("-")): v for k, v in headers.items()}


# -- handler building blocks ---------------------------------------------------------------------
def send(status: int, body: bytes, ctype: str, *, reason: str | None = None, gzip: bool = False) -> Response:
    headers = {}
    if gzip:
        body = _gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return Response(status=status, body=body, content_type=ctype, reason=reason, headers=headers)


def page(text: str, status: int = 200, ctype: str = "text/plain; version=0.0.4; charset=utf-8", **kw) -> Handler:
    return lambda req, srv: send(status, text.encode(), ctype, **kw)


def gzipped(text: str) -> Handler:
    """gzip only when the client asked for it, as prometheus_client's exposition does."""
    return lambda req, srv: send(200, text.encode(), "text/plain; version=0.0.4", gzip="gzip" in req.header("Accept-Encoding"))


def delayed(seconds: float, then: Handler) -> Handler:
    """Hold the response headers back for `seconds` (a hung engine)."""

    def handler(req: Request, srv: Loopback) -> Response:
        if srv.stopping.wait(seconds):
            return Response(drop=True)
        return then(req, srv)

    return handler


def trickle(interval: float, total: int = 10_000) -> Handler:
    """Headers at once, then one byte per `interval`: every socket read succeeds, the page never ends."""

    def body(srv: Loopback) -> Iterator[bytes]:
        yield b""  # the headers go out at once
        for _ in range(total):
            if srv.stopping.wait(interval):
                return
            yield b"#"

    return lambda req, srv: Response(content_type="text/plain; version=0.0.4", headers={"Content-Length": str(total)},
                                     stream=body(srv))


def streamed(size: int, *, declare_length: bool) -> Handler:
    """A `size`-byte page of comment lines, with or without Content-Length (close-delimited)."""
    line = b"# filler line for a very large page................................................\n"

    def body(srv: Loopback) -> Iterator[bytes]:
        sent = 0
        block = line * (65536 // len(line))
        while sent < size and not srv.stopping.is_set():
            piece = block[: size - sent]
            yield piece
            sent += len(piece)

    def handler(req: Request, srv: Loopback) -> Response:
        headers = {"Content-Length": str(size)} if declare_length else {}
        return Response(content_type="text/plain; version=0.0.4", headers=headers, stream=body(srv), close=not declare_length)

    return handler


def elapsed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0
