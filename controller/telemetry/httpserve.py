"""One small threaded HTTP(S) server for telemetry, the emulators and tests.

Every server in the project used to subclass `ThreadingHTTPServer` with its own handler class, its own
thread, its own quiet logging and its own shutdown. This module is that code once. An app is a
function from a `Request` to a `Response`, or a route table (`{path: function}`):

    from controller.telemetry import httpserve

    def hello(req: httpserve.Request) -> httpserve.Response:
        return httpserve.Response.text("hello\\n")

    with httpserve.Server({"/hello": hello}, port=0) as srv:     # 127.0.0.1, any free port
        print(srv.url)                                          # http://127.0.0.1:50123

API (everything else is private):

    Server(app, *, host="127.0.0.1", port=0, tls=None, backlog=128, name="httpserve",
           server_header="", idle_timeout=60.0, methods=METHODS, on_error=None)
        .start() -> (host, port)   listen and serve on a daemon thread (idempotent)
        .stop()                    stop accepting, cut open connections, join the thread (idempotent)
        .address / .port / .url    where it listens (None before start)
        .stopping                  an Event set by stop(): slow handlers wait on it instead of sleeping
        context manager            `with Server(...) as srv:` starts and stops
    Request   method, target (as sent), path (no query), query, headers (lower-case keys), body, client, stopping
    Response  status, body, content_type, headers, reason, stream, close, drop;
              Response.text(...), Response.json(...)
    routes(table, not_found=None) -> app   dispatch on the path alone (the method is the handler's business)

Behaviour worth knowing:

- `host` may be IPv4, IPv6 (`::1`) or a name; port 0 picks a free port. No reverse-DNS lookup at bind.
- `tls` is a server-side `ssl.SSLContext`; the handshake runs in the connection's thread (a slow or broken
  client cannot stall accept) with a 10 s limit.
- HTTP/1.1 keep-alive; every reply carries Content-Length unless it streams without one (then the
  connection closes after it). HEAD gets the headers without the body. Chunked request bodies are read.
- A handler that raises gets a 500 and `on_error(exc, request)` is called (default: nothing). The server
  never prints: no access log, no tracebacks on stderr.
- `Response(drop=True)` resets the connection without a reply (a peer that goes away mid-call).
- `Response(stream=iterable)` writes each chunk as it is produced and flushes (slow or huge pages).
- stop() closes every open connection, so clients see the server go away rather than hang.
"""

from __future__ import annotations

import json as _json
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["METHODS", "App", "Request", "Response", "Server", "routes"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_BODY = 16 * 1024 * 1024  # bytes of request body accepted; more is a 413
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class Request:
    """One request as the app sees it; the body has been read in full."""

    method: str
    target: str  # the request target as sent, e.g. /mgmt/tm/ltm/pool?$top=2
    path: str  # the target up to '?', not decoded
    query: str  # after '?', not decoded ('' when none)
    headers: Mapping[str, str]  # keys lower-case
    body: bytes
    client: tuple[str, int]
    stopping: threading.Event = field(repr=False)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True, kw_only=True)
class Response:
    """What to send back. `stream` replaces `body` when given; `drop` sends nothing and resets."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    stream: Iterable[bytes] | None = None
    close: bool = False
    drop: bool = False

    @classmethod
    def text(cls, text: str, status: int = 200, *, content_type: str = "text/plain; charset=utf-8", **kw: Any) -> Response:
        return cls(status=status, body=text.encode("utf-8"), content_type=content_type, **kw)

    @classmethod
    def json(cls, obj: Any, status: int = 200, **kw: Any) -> Response:
        body = (_json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
        return cls(status=status, body=body, content_type="application/json; charset=utf-8", **kw)


App = Callable[[Request], Response]


def routes(table: Mapping[str, App], not_found: App | None = None) -> App:
    """An app that dispatches on the exact path (a trailing '/' is ignored, except for '/' itself)."""

    def missing(req: Request) -> Response:
        return Response.json({"error": "not found", "endpoints": sorted(table)}, 404)

    fallback = not_found or missing

    def app(req: Request) -> Response:
        handler = table.get(req.path.rstrip("/") or "/") or table.get(req.path)
        return (handler or fallback)(req)

    return app


class Server:
    """A threaded HTTP(S) server around one app. See the module docstring."""

    def __init__(
        self,
        app: App | Mapping[str, App],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        backlog: int = 128,
        name: str = "httpserve",
        server_header: str = "",
        idle_timeout: float = 60.0,
        methods: Iterable[str] = METHODS,
        on_error: Callable[[BaseException, Request], None] | None = None,
        poll_interval: float = 0.05,
    ):
        self.app: App = routes(app) if isinstance(app, Mapping) else app
        self.host, self.requested_port = host, port
        self.tls, self.backlog, self.name = tls, backlog, name
        self.server_header, self.idle_timeout = server_header, idle_timeout
        self.methods = frozenset(m.upper() for m in methods)
        self.on_error = on_error
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Bind and serve on a daemon thread; returns (host, port). OSError when the bind fails."""
        with self._lock:
            if self._httpd is None:
                self.stopping.clear()
                httpd = _HTTPServer(self, (self.host, self.requested_port))
                self._thread = threading.Thread(
                    target=httpd.serve_forever, kwargs={"poll_interval": self.poll_interval}, name=self.name, daemon=True
                )
                self._httpd = httpd
                self._thread.start()
            return str(self._httpd.server_address[0]), int(self._httpd.server_address[1])

    def stop(self) -> None:
        """Stop accepting, cut every open connection, and wait for the serving thread."""
        with self._lock:
            httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
            if httpd is None:
                return
            self.stopping.set()
            httpd.shutdown()
            httpd.close_all()
            httpd.server_close()
            if thread is not None:
                thread.join(timeout=5)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where ----------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int] | None:
        httpd = self._httpd
        return None if httpd is None else (str(httpd.server_address[0]), int(httpd.server_address[1]))

    @property
    def port(self) -> int | None:
        addr = self.address
        return None if addr is None else addr[1]

    @property
    def url(self) -> str | None:
        addr = self.address
        if addr is None:
            return None
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        return f"{'https' if self.tls else 'http'}://{host}:{addr[1]}"


# -- plumbing ---------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block shutdown
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, owner: Server, address: tuple[str, int]):
        self.owner = owner
        self.request_queue_size = owner.backlog
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds; skip it
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.owner.tls is not None:
            sock = self.owner.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            self._conns.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and failed handshakes: the client sees them; nothing to print

    def close_all(self) -> None:
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    wbufsize = 64 * 1024  # headers and body leave in one write (no Nagle / delayed-ACK stall)
    server: _HTTPServer

    def version_string(self) -> str:
        return self.server.owner.server_header or "httpserve"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request.do_handshake()
        super().setup()
        self.request.settimeout(self.server.owner.idle_timeout)  # idle keep-alive connections

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # no access log: a line per scrape would flood journald

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        if self.command not in owner.methods:
            self._send(Response.text("method not allowed\n", 405, close=True))
            return
        try:
            body = self._read_body()
        except ValueError:
            self._send(Response.text("bad request body\n", 400, close=True))
            return
        if body is None:
            self._send(Response.text("request body too large\n", 413, close=True))
            return
        path, _, query = self.path.partition("?")
        req = Request(
            method=self.command, target=self.path, path=path, query=query,
            headers={k.lower(): v for k, v in self.headers.items()}, body=body,
            client=(str(self.client_address[0]), int(self.client_address[1])), stopping=owner.stopping,
        )
        try:
            reply = owner.app(req)
        except Exception as exc:  # noqa: BLE001 - a handler bug is a 500, never a dead server
            if owner.on_error is not None:
                owner.on_error(exc, req)
            reply = Response.json({"error": "internal error"}, 500)
        self._send(reply)

    def _send(self, reply: Response) -> None:
        try:
            if reply.drop:
                self.close_connection = True
                self.request.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(reply.status, reply.reason)
            self.send_header("Content-Type", reply.content_type)
            extra = {k.lower() for k in reply.headers}
            streaming = reply.stream is not None
            if not streaming:
                self.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.close or (streaming and "content-length" not in extra):
                self.close_connection = True
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                if reply.stream is not None:
                    for chunk in reply.stream:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                else:
                    self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:  # BrokenPipe, ConnectionReset, TLS errors: the client went away
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch
