"""HTTPS for the emulator, on the shared `controller.telemetry.httpserve` server (Jetty's Server header, keep-alive)."""

from __future__ import annotations

from typing import Any

from controller.sim import tls
from controller.sim.bigip.core import EmulatorCore
from controller.sim.bigip.state import Reply
from controller.telemetry import httpserve

SERVER_HEADER = "Jetty(9.2.22.v20170606)"


class Serving(EmulatorCore):
    """start()/stop() an HTTPS front end for `handle()` (provided by the emulator class)."""

    _server: httpserve.Server | None = None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> Reply:
        raise NotImplementedError

    @property
    def cert_path(self) -> str | None:
        """The server certificate, which is also the CA bundle to verify against (None before start)."""
        return self._certs.cert if self._certs else None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve HTTPS on a daemon thread; return the base URL, e.g. https://127.0.0.1:50123."""
        if self._server is not None and self.base_url:
            return self.base_url
        if self._certs is None:
            self._certs = (tls.make_self_signed(self._cert_dir, dns_names=("localhost", self.hostname))
                           if self._cert_dir else tls.shared_pair())
        server = httpserve.Server(self._app, host=host, port=port, tls=tls.server_context(self._certs),
                                  backlog=128, name="bigip-emulator", server_header=SERVER_HEADER,
                                  idle_timeout=120.0)
        server.start()
        self._server = server
        self.base_url = server.url
        return self.base_url or ""

    def _app(self, req: httpserve.Request) -> httpserve.Response:
        reply = self.handle(req.method, req.target, dict(req.headers), req.body, req.client[0])
        if reply.dropped:
            return httpserve.Response(drop=True)
        return httpserve.Response(status=reply.status, body=reply.encode(), content_type=reply.content_type,
                                  headers=reply.headers)

    @property
    def port(self) -> int | None:
        return self._server.port if self._server else None

    def stop(self) -> None:
        """Stop serving and cut every open connection (clients see the BIG-IP go away)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Any:
        """`with BigIPEmulator(...) as bigip:` serves on 127.0.0.1 (random port) until the block ends."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
