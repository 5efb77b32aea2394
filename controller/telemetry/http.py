"""A quiet threaded HTTP server around one route function: (target, Accept) -> (status, type, body)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from controller.telemetry import page

HANDLER_TIMEOUT = 10.0  # seconds a slow client may hold a server thread
Route = Callable[[str, str], tuple[int, str, bytes]]


class Server:
    def __init__(self, route: Route, host: str, port: int, poll_interval: float = 0.5):
        self.route, self.host, self.port, self.poll_interval = route, host, port, poll_interval
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        return None if self._httpd is None else (self._httpd.server_address[0], self._httpd.server_address[1])

    def start(self) -> tuple[str, int]:
        self._httpd = _HTTPServer((self.host, self.port), _handler_for(self.route))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": self.poll_interval},
                                        name="f5lr-telemetry", daemon=True)
        self._thread.start()
        return self.address  # type: ignore[return-value]

    def stop(self) -> None:
        httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not block shutdown

    def __init__(self, address: tuple[str, int], handler: Any):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler_for(route: Route) -> Any:
    class Handler(BaseHTTPRequestHandler):
        server_version = "f5-llm-ratio"
        sys_version = ""
        timeout = HANDLER_TIMEOUT

        def do_GET(self) -> None:
            self._reply(with_body=True)

        def do_HEAD(self) -> None:
            self._reply(with_body=False)

        def _reply(self, with_body: bool) -> None:
            code, content_type, body = route(self.path, self.headers.get("Accept", ""))
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if content_type.startswith("text/html"):
                    self.send_header("Content-Security-Policy", page.CSP)
                self.end_headers()
                if with_body:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away; nothing to tell it

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # an access line per Prometheus scrape would flood journald

    return Handler
