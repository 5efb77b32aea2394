"""`BigIPEmulator`: one emulated BIG-IP unit, assembled from the package's sections.

State (core), the pool/member/node API (pools), fault knobs (faults), tokens, HA and HTTPS are mixins;
this class adds request dispatch through the route table (routes) and the bound data plane.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from controller.sim.bigip import routes, tokens, transactions
from controller.sim.bigip.errors import ERRORS, RestError
from controller.sim.bigip.faults import FaultKnobs
from controller.sim.bigip.ha import HAUnit
from controller.sim.bigip.pools import PoolStore
from controller.sim.bigip.server import Serving
from controller.sim.bigip.state import LoggedRequest, Reply, Request, bad_percent
from controller.sim.bigip.tokens import TokenStore
from controller.sim.dataplane import DataPlane, MemberView, PoolView


class BigIPEmulator(PoolStore, FaultKnobs, TokenStore, HAUnit, Serving):
    """Thread-safe in-memory BIG-IP with an optional HTTPS front end (`start()`)."""

    _dataplane: DataPlane | None = None

    # -- dispatch -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                client: str = "127.0.0.1") -> Reply:
        """Handle one request without HTTP (handy for benchmarks). `body`: dict/list, str or bytes."""
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        return self.handle(method, path, {k.lower(): v for k, v in (headers or {}).items()}, raw, client)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> Reply:
        """Dispatch one request. `headers` must have lower-case names."""
        method = method.upper()
        split = urlsplit(target)
        raw_path = split.path or "/"
        path = raw_path.rstrip("/") or "/"
        req = Request(method, path, raw_path, parse_qs(split.query, keep_blank_values=True), headers, body, client)
        reply = self._handle(req)
        with self._lock:
            self.request_log.append(LoggedRequest(self.now(), method, path, split.query, reply.status, req.user,
                                                  req.trans_id))
        self._after_request()  # config sync to HA peers, outside this unit's lock
        return reply

    def _handle(self, req: Request) -> Reply:
        lat = self.latency() if callable(self.latency) else self.latency
        if lat:
            time.sleep(lat)
        if self.down:
            return Reply(503, ERRORS["restjavad_restarting_503_html"], "text/html")
        fault = self._take_fault(req.method, req.path)
        if fault is not None:
            return self._fault_reply(fault, req)
        if bad_percent(req.raw_path):  # Jetty refuses a bare '%' (a route domain must be sent as %25)
            return Reply(400, ERRORS["bad_uri_400"].format(path=req.raw_path), "text/html;charset=iso-8859-1")
        try:
            handler, params, access = self._route(req)
            if access != "public":
                tokens.authenticate(self, req)
                if req.path.startswith("/mgmt/tm/cm/"):
                    tokens.authorize_cm(self, req)
            coord = req.headers.get("x-f5-rest-coordination-id")
            if coord and req.method != "GET" and not req.path.startswith("/mgmt/tm/transaction"):
                return transactions.queue_command(self, req, coord)
            if access == "write":
                self._authorize_write(req, params)
            status, body = handler(self, req, **params)
            return Reply(status, body)
        except RestError as e:
            return Reply(e.status, e.body, e.content_type, e.headers)

    def _route(self, req: Request) -> tuple[routes.Handler, dict[str, str], str]:
        return routes.route(req, self._next_op)

    def _authorize_write(self, req: Request, params: dict[str, str]) -> None:
        tokens.authorize_write(self, req, params)

    # -- data plane -----------------------------------------------------------------------------
    @property
    def dataplane(self) -> DataPlane:
        """A DataPlane bound to the live pool state (ratios written over REST apply immediately)."""
        with self._lock:
            if self._dataplane is None:
                self._dataplane = DataPlane(self._pool_view, clock=self._mono)
            return self._dataplane

    def _pool_view(self, pool: str) -> PoolView:
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return PoolView(
                mode=p.props["loadBalancingMode"],
                members=[MemberView(m.name, m.ratio, m.connection_limit, 0, m.session, m.state,
                                    int(m.props.get("priorityGroup", 0)))
                         for m in p.members.values()],
                min_active_members=int(p.props.get("minActiveMembers", 0)),
                queue_on_connection_limit=p.props["queueOnConnectionLimit"] == "enabled",
                queue_depth_limit=int(p.props["queueDepthLimit"]),
                queue_time_limit_ms=int(p.props["queueTimeLimit"]),
            )
