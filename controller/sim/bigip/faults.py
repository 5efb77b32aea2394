"""Fault knobs: the next N matching requests fail the way BIG-IPs fail in the field.

Faults apply before authentication and routing, to every path matching their filter.
"""

from __future__ import annotations

import re
from typing import Any

from controller.sim.bigip.core import EmulatorCore
from controller.sim.bigip.errors import ERRORS, error_body
from controller.sim.bigip.state import FAULT_KINDS, Fault, Reply, Request


class FaultKnobs(EmulatorCore):
    def fail_next(self, n: int = 1, kind: str | tuple[int, Any] = "mcpd", path: str | None = None,
                  method: str | None = None) -> None:
        """The next `n` requests matching `path` (a regex searched in the URL path) and `method` fail.
        kind: mcpd (500), html503 (503 HTML), notregistered (404), drop (connection closed, no reply),
        expired / missing (401 token bodies), or a (status, body) tuple."""
        if isinstance(kind, str) and kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} not in {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(kind, n, re.compile(path) if path else None, method.upper() if method else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.down = False

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and (f.path is None or f.path.search(path)) and f.method in (None, method):
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._faults.remove(f)
                    return f
        return None

    def _fault_reply(self, f: Fault, req: Request) -> Reply:
        k = f.kind
        if isinstance(k, tuple):
            status, body = k
            return Reply(status, body, "text/html" if isinstance(body, str) else "application/json; charset=UTF-8")
        if k == "drop":
            return Reply(0, None)
        if k == "html503":
            return Reply(503, ERRORS["restjavad_restarting_503_html"], "text/html")
        if k == "mcpd":
            return Reply(500, error_body("mcpd_lost_500"))
        if k == "notregistered":
            return Reply(404, error_body("restjavad_not_ready_404", path=req.path, op_id=self._next_op()))
        if k == "expired":
            return Reply(401, error_body("token_expired_401"))
        return Reply(401, error_body("token_missing_401"))
