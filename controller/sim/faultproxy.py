"""A TCP/TLS fault proxy for tests and bench/faults.py: put it between the controller and the BIG-IP emulator.

The emulator answers promptly or fails in ways it knows (mcpd lost, 503, dropped connections). What
it cannot do is answer *slowly in the middle of a reply*: headers that trickle in one byte a second,
a body that never finishes, a PATCH that is never answered. This proxy does, without touching the
emulator: it terminates TLS with its own certificate (`cert_path` is the CA bundle to verify with),
reads each HTTP/1.1 request, forwards it over TLS to the upstream and hands the reply back, unless a
rule matching the request's method and path says otherwise:

    proxy = FaultProxy("127.0.0.1", emulator.port).start()
    proxy.set("trickle", method="PATCH", interval=1.0)   # each reply byte 1 s apart, headers included
    proxy.set("hang", method="GET", path="/mgmt/tm/ltm/pool")  # never answer (the request is not forwarded)
    proxy.set("hang-applied", method="PATCH")            # forward it (BIG-IP applies it), never answer
    proxy.clear()                                        # back to a transparent proxy

Rules apply to requests that arrive after they are set; a reply being trickled when the rule is
cleared keeps trickling until the client gives up (as a real slow peer would).
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.sim import tls

MODES = ("pass", "trickle", "hang", "hang-applied")
_HEAD_MAX = 65536


@dataclass(frozen=True)
class Rule:
    mode: str
    method: str | None = None
    path: re.Pattern[str] | None = None
    interval: float = 1.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or bool(self.path.search(path)))


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {m: 0 for m in MODES}
        self._lock = threading.Lock()
        self._pair = tls.shared_pair()
        self._server_ctx = tls.server_context(self._pair)
        self._client_ctx = ssl.create_default_context()
        self._client_ctx.check_hostname = False
        self._client_ctx.verify_mode = ssl.CERT_NONE
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self.port = 0

    @property
    def cert_path(self) -> str:
        return self._pair.cert

    # -- control ---------------------------------------------------------------------------------
    def set(self, mode: str, *, method: str | None = None, path: str | None = None, interval: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        rule = Rule(mode, method.upper() if method else None, re.compile(path) if path else None, interval)
        with self._lock:
            self.rules = [*self.rules, rule]

    def clear(self) -> None:
        with self._lock:
            self.rules = []

    def rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            rules = self.rules
        return next((r for r in rules if r.matches(method, path)), None)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(64)
        self._listener = sock
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            _close(c)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), name="faultproxy-conn", daemon=True).start()

    # -- one client connection -------------------------------------------------------------------
    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._conns.add(sock)
        return sock

    def _serve(self, raw: socket.socket) -> None:
        client = upstream = None
        try:
            raw.settimeout(30)
            client = self._track(self._server_ctx.wrap_socket(raw, server_side=True))
            client.settimeout(None)
            up_raw = socket.create_connection(self.upstream, timeout=10)
            upstream = self._track(self._client_ctx.wrap_socket(up_raw, server_hostname=self.upstream[0]))
            cbuf, ubuf = bytearray(), bytearray()
            while not self._stop.is_set():
                request = _read_message(client, cbuf, is_request=True)
                if request is None:
                    return
                method, path = _request_line(request)
                rule = self.rule_for(method, path)
                mode = rule.mode if rule else "pass"
                with self._lock:
                    self.counts[mode] += 1
                if mode == "hang":
                    self._hold(client)
                    return
                upstream.sendall(request)
                reply = _read_message(upstream, ubuf, is_request=False, method=method)
                if reply is None:
                    return
                if mode == "hang-applied":
                    self._hold(client)
                    return
                if mode == "trickle" and rule is not None:
                    for i in range(len(reply)):
                        if self._stop.wait(rule.interval):
                            return
                        client.sendall(reply[i:i + 1])
                else:
                    client.sendall(reply)
        except (OSError, ValueError):
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    _close(s)

    def _hold(self, client: socket.socket) -> None:
        """Say nothing until the client gives up (closes) or the proxy stops."""
        client.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if client.recv(1) == b"":
                    return
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _request_line(message: bytes) -> tuple[str, str]:
    line = message.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
    return parts[0].upper(), path


def _read_message(sock: socket.socket, buf: bytearray, *, is_request: bool, method: str = "") -> bytes | None:
    """One HTTP/1.1 message (head + Content-Length body) from `sock`; None when the peer closed first."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > _HEAD_MAX:
            raise ValueError("header too large")
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1")
    match = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
    length = int(match.group(1)) if match else 0
    if not is_request and (method == "HEAD" or re.match(r"HTTP/1\.\d (1\d\d|204|304)", head)):
        length = 0
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    message = bytes(buf[:end + length])
    del buf[:end + length]
    return message


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (helper for callers of the proxy)."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
