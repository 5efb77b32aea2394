"""Serve simulated engines' /metrics pages over HTTP on loopback, with fault knobs for tests.

One `EngineServer` is one engine endpoint (one pool member: its own port). `EngineFarm` starts many.
Requests to the engines are submitted in-process (`RealtimeEngine.submit`); only /metrics is served.

Faults (`server.fault = ...`, changeable while running):

| fault      | behaviour                                                                          |
| ---------- | ---------------------------------------------------------------------------------- |
| None       | the page                                                                           |
| "refuse"   | the listening socket is closed: connections are refused; clearing it listens again on the same port |
| "timeout"  | the reply waits `hang_seconds` (default 30 s) before the page                      |
| "trickle"  | the page, `trickle_bytes` every `trickle_interval` seconds (a slow-loris body)     |
| "garbage"  | 200 text/plain with bytes that are not a Prometheus page                           |
| "html200"  | 200 text/html: a login page, as a proxy or a wrong port would answer              |
| "huge"     | the page padded with valid series to `huge_bytes` (default 10 MiB)                 |
| "nan"      | the page with the load metrics' values NaN                                         |
| "missing"  | the page without the load metrics                                                  |
| "http500"  | 500 Internal Server Error                                                          |

`latency` (seconds) delays every reply. Replies are gzip-compressed when the client accepts gzip.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from controller.sim import pages
from controller.sim.engine import EngineSnapshot
from controller.telemetry import httpserve
from controller.telemetry.httpserve import Request, Response

FAULTS = (None, "refuse", "timeout", "trickle", "garbage", "html200", "huge", "nan", "missing", "http500")

_HTML = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
         b"<body><form method=\"post\" action=\"/login\"><input name=\"user\"><input name=\"password\" type=\"password\">"
         b"<button>Sign in</button></form></body></html>\n")
_GARBAGE = b"\x00\x1f\x8b\xff}{ not a metrics page \xfe\xfd\n\x00" * 64

@runtime_checkable
class Snapshotting(Protocol):
    """An Engine or a RealtimeEngine."""

    def snapshot(self) -> EngineSnapshot: ...


#: One data-parallel rank: an engine or a callable giving its snapshot.
Rank = Snapshotting | Callable[[], EngineSnapshot]
#: Anything that yields snapshots: an Engine/RealtimeEngine (has .snapshot()), a callable, or a list of ranks.
Source = Snapshotting | Callable[[], EngineSnapshot | Sequence[EngineSnapshot]] | Sequence[Rank]


def _snapshots(source: Source) -> EngineSnapshot | Sequence[EngineSnapshot]:
    if isinstance(source, (list, tuple)):
        return [_rank(s) for s in source]
    if isinstance(source, Snapshotting):
        return source.snapshot()
    assert callable(source)  # neither a list nor an engine: a callable (Source)
    return source()


def _snapshot_of(source: Source) -> EngineSnapshot:
    snaps = _snapshots(source)
    return snaps if isinstance(snaps, EngineSnapshot) else snaps[0]


def _rank(source: Rank) -> EngineSnapshot:
    if isinstance(source, Snapshotting):
        return source.snapshot()
    return source()


class EngineServer:
    """Serve one engine's page (or one page of several data-parallel ranks) at 127.0.0.1:<port>."""

    def __init__(self, source: Source, flavour: str = "vllm", *, host: str = "127.0.0.1", port: int = 0,
                 ranks: int | None = None, model_name: str | None = None, fault: str | None = None,
                 latency: float = 0.0, hang_seconds: float = 30.0, trickle_bytes: int = 64, trickle_interval: float = 0.5,
                 huge_bytes: int = 10 * 1024 * 1024):
        if flavour not in pages.FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}; expected one of {', '.join(pages.FLAVOURS)}")
        self.source = source
        self.flavour = flavour
        self.host = host
        self.port = port
        self.ranks = ranks
        self.model_name = model_name
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.trickle_bytes = trickle_bytes
        self.trickle_interval = trickle_interval
        self.huge_bytes = huge_bytes
        self.scrapes = 0  # GETs of the metrics path answered or attempted, for tests
        self._fault: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http: httpserve.Server | None = None
        self._started = False
        self.fault = fault

    # -- lifecycle --

    def start(self) -> int:
        """Listen (on an ephemeral port unless one was given) and return the port."""
        with self._lock:
            self._stopping.clear()
            self._started = True
            if self._fault != "refuse":
                self._listen()
        return self.port

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._started = False
            self._close()

    def __enter__(self) -> EngineServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def path(self) -> str:
        return pages.PATHS[self.flavour]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    # -- faults --

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; expected one of {FAULTS}")
        with self._lock:
            self._fault = value
            if not self._started:
                return
            if value == "refuse":
                self._close()
            elif self._http is None:
                self._listen()  # same port again: a member that comes back

    def page(self) -> str:
        """The current page, without faults."""
        return pages.render(_snapshots(self.source), self.flavour, ranks=self.ranks, model_name=self.model_name)

    # -- internals --

    def _listen(self) -> None:
        server = httpserve.Server(self._app, host=self.host, port=self.port, name=f"metrics-{self.port}",
                                  server_header="uvicorn", methods=("GET",))
        self.port = server.start()[1]
        self._http = server

    def _close(self) -> None:
        server, self._http = self._http, None
        if server is not None:
            server.stop()

    def _app(self, req: Request) -> Response:
        if req.path == "/props" and self.flavour == "llamacpp" and self._fault is None:
            # llama.cpp's server properties; the controller reads `total_slots` (its -np)
            props = json.dumps({"total_slots": _snapshot_of(self.source).max_num_seqs, "model_path": "sim.gguf"})
            return Response(status=200, body=props.encode(), content_type="application/json; charset=utf-8")
        if req.path not in (self.path, "/metrics"):
            return Response.text("Not Found\n", 404)
        self.scrapes += 1
        fault = self._fault
        if self.latency > 0 and self._stopping.wait(self.latency):
            return Response(drop=True)
        if fault == "timeout" and self._stopping.wait(self.hang_seconds):
            return Response(drop=True)
        if fault == "http500":
            return self._reply(req, 500, b"Internal Server Error", "text/plain; charset=utf-8")
        if fault == "html200":
            return self._reply(req, 200, _HTML, "text/html; charset=utf-8")
        if fault == "garbage":
            return self._reply(req, 200, _GARBAGE, pages.CONTENT_TYPE)
        body = self._page_with(fault).encode("utf-8")
        return self._reply(req, 200, body, pages.CONTENT_TYPE, trickle=fault == "trickle")

    def _page_with(self, fault: str | None) -> str:
        text = self.page()
        if fault == "nan":
            return pages.with_load_values(text, self.flavour, "NaN")
        if fault == "missing":
            return pages.without_load_metrics(text, self.flavour)
        if fault == "huge":
            return _pad(text, self.huge_bytes)
        return text

    def _reply(self, req: Request, status: int, body: bytes, ctype: str, trickle: bool = False) -> Response:
        headers = {}
        if "gzip" in req.header("Accept-Encoding") and status == 200:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if not trickle:
            return Response(status=status, body=body, content_type=ctype, headers=headers)
        headers["Content-Length"] = str(len(body))  # declared in full; the bytes come slowly
        return Response(status=status, content_type=ctype, headers=headers, stream=self._trickle(body), close=True)

    def _trickle(self, body: bytes) -> Iterator[bytes]:
        for i in range(0, len(body), self.trickle_bytes):
            yield body[i:i + self.trickle_bytes]
            if self._stopping.wait(self.trickle_interval):
                return


def _pad(text: str, size: int) -> str:
    """The page followed by valid filler series up to `size` bytes (a page from a very busy exporter)."""
    head = "# HELP sim_filler_info Filler series that make the page huge.\n# TYPE sim_filler_info gauge\n"
    need = size - len(text) - len(head)
    if need <= 0:
        return text
    line = 'sim_filler_info{series="%09d",padding="' + "x" * 40 + '"} 1.0\n'
    n = need // len(line % 0) + 1
    return text + head + "".join(line % i for i in range(n))


class EngineFarm:
    """Many EngineServers, one per member: `EngineFarm({"gpu1": (rt_engine, "vllm"), ...}).start() -> {name: port}`.

    A value is `(source, flavour)` or `(source, flavour, {EngineServer keyword arguments})`.
    """

    def __init__(self, engines: Mapping[str, tuple[Source, str] | tuple[Source, str, Mapping[str, Any]]], **defaults: Any):
        self.servers: dict[str, EngineServer] = {}
        for name, spec in engines.items():
            source, flavour, *rest = spec
            kwargs = {**defaults, **(rest[0] if rest else {})}
            self.servers[name] = EngineServer(source, flavour, **kwargs)

    def start(self) -> dict[str, int]:
        return {name: server.start() for name, server in self.servers.items()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __getitem__(self, name: str) -> EngineServer:
        return self.servers[name]

    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def __enter__(self) -> EngineFarm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
