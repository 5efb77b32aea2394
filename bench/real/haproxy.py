"""HAProxy as the data plane: the rig's stand-in for LTM.

`balance leastconn` with per-server `weight` is weighted least-connections, what LTM's
`ratio-least-connections-member` does; a server's `maxconn` with the backend queue and `timeout queue`
behaves like a member's `connectionLimit` with `queueOnConnectionLimit` and `queueTimeLimit`
(REFERENCE.md). `Mirror` copies each member's ratio and connection limit from the BIG-IP emulator to
HAProxy's runtime API whenever they change there: LTM applying its own configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

BACKEND = "llm"
#: HAProxy's weight range is 0-256; 0 drains a server, so a ratio never maps below 1.
MAX_WEIGHT = 256


class HAProxyUnavailable(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
                                             if pathlib.Path(p).exists()), None)
    if found is None:
        raise HAProxyUnavailable("haproxy is not installed (Debian: apt-get install haproxy)")
    return found


def weight_for(ratio: int, scale: int) -> int:
    """A BIG-IP ratio (1..scale) scaled into HAProxy's weight range, never 0."""
    return max(1, min(MAX_WEIGHT, round(ratio * MAX_WEIGHT / max(1, scale))))


def render_config(port: int, servers: Mapping[str, int], socket_path: pathlib.Path, *, queue_timeout_s: float = 60.0) -> str:
    """One frontend on 127.0.0.1:`port`, one leastconn backend with `servers` (name -> port) at equal weight."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    option http-server-close",  # one request per server connection: connections = requests in flight
        "    timeout connect 5s",
        "    timeout client 300s",
        "    timeout server 300s",
        f"    timeout queue {int(queue_timeout_s * 1000)}ms",
        "frontend fe",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance leastconn",
    ]
    lines += [f"    server {name} 127.0.0.1:{p} weight {MAX_WEIGHT // 2} maxconn 0" for name, p in servers.items()]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class HAProxy:
    port: int
    servers: dict[str, int]  # server name -> engine port
    workdir: pathlib.Path
    proc: subprocess.Popen | None = None

    @property
    def socket_path(self) -> pathlib.Path:
        return self.workdir / "haproxy.sock"

    def start(self, timeout: float = 10.0) -> HAProxy:
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(render_config(self.port, self.servers, self.socket_path))
        check = subprocess.run([binary(), "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise HAProxyUnavailable(f"haproxy rejected its config: {check.stdout}{check.stderr}")
        log = open(self.workdir / "haproxy.log", "w")
        from bench.real.engine import die_with_parent

        self.proc = subprocess.Popen([binary(), "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HAProxyUnavailable(f"haproxy exited with {self.proc.returncode}; see {self.workdir / 'haproxy.log'}")
            with contextlib.suppress(OSError):
                self.command("show info")
                return self
            time.sleep(0.05)
        raise HAProxyUnavailable("haproxy's stats socket did not come up")

    def stop(self) -> None:
        from bench.real.engine import stop_process

        stop_process(self.proc, 5.0)

    def command(self, line: str) -> str:
        """One runtime API command over the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_weight(self, server: str, weight: int) -> None:
        self._ok(self.command(f"set server {BACKEND}/{server} weight {weight}"))

    def set_maxconn(self, server: str, maxconn: int) -> None:
        self._ok(self.command(f"set maxconn server {BACKEND}/{server} {maxconn}"))

    def state(self) -> dict[str, dict[str, int]]:
        """Per server: the current weight (`srv_uweight`) and connections in flight (`scur`)."""
        out: dict[str, dict[str, int]] = {}
        lines = self.command("show stat").splitlines()
        if not lines:
            return out
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == BACKEND and row.get("svname") in self.servers:
                out[row["svname"]] = {"weight": int(row.get("weight") or 0), "scur": int(row.get("scur") or 0),
                                      "qcur": int(row.get("qcur") or 0)}
        return out

    @staticmethod
    def _ok(answer: str) -> None:
        text = answer.strip()
        if text and not text.lower().startswith(("weight", "maxconn")) and "ok" not in text.lower():
            raise RuntimeError(f"haproxy runtime API: {text}")


class Mirror:
    """Copies ratio and connection limit from the emulated pool to HAProxy whenever they change there.

    `read` returns {server name: (ratio, connection limit)} from the emulator; polled every `period`
    seconds on a thread (the emulator applies a PATCH at once, LTM within milliseconds; a poll of 50 ms
    is well inside the controller's tick). While `paused`, HAProxy is left as another contender set it."""

    def __init__(self, haproxy: HAProxy, read: Callable[[], Mapping[str, tuple[int, int]]], scale: int, period: float = 0.05):
        self.haproxy, self.read, self.scale, self.period = haproxy, read, scale, period
        self.applied: dict[str, tuple[int, int]] = {}
        self.changes: list[tuple[float, str, int, int]] = []  # (monotonic time, server, weight, maxconn)
        self.paused = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mirror", daemon=True)
        self._thread.start()

    def resume(self) -> None:
        """Copy the pool now and keep copying it."""
        with self._lock:
            self.applied.clear()
            self._sync()
            self.paused = False

    def pause(self) -> None:
        with self._lock:
            self.paused = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sync(self) -> None:
        for server, (ratio, limit) in self.read().items():
            if self.applied.get(server) == (ratio, limit):
                continue
            weight = weight_for(ratio, self.scale)
            self.haproxy.set_weight(server, weight)
            self.haproxy.set_maxconn(server, max(0, limit))
            self.applied[server] = (ratio, limit)
            self.changes.append((time.monotonic(), server, weight, limit))

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock, contextlib.suppress(OSError, RuntimeError):
                if not self.paused:
                    self._sync()
