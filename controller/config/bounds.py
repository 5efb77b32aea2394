"""The worst-case length of one tick, derived from the config, and whether it fits the systemd watchdog.

A tick is: BIG-IP reads, the scrapes, BIG-IP re-reads and writes. Every BIG-IP call of a tick shares
one budget (`f5.tick_budget`, counted from the tick's start; a call in flight is cut at its end) and
all scrapes share `scheduler.tick_deadline`. A SIGHUP reload at the start of a tick deletes the old
token (at most `DELETE_TIMEOUT`). Planning is pure and fast; `MARGIN` covers it and timer slack.

The daemon pings the watchdog after every tick, and a tick that overran waits at most one interval
for the next, so the longest gap between pings is `tick interval + bound`: it must be shorter than
`WatchdogSec` (systemd passes it as $WATCHDOG_USEC; without it, the shipped unit's 60 s is assumed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.schema import AppConfig

DELETE_TIMEOUT = 3.0  # seconds; best-effort token deletes (kept equal to controller.ltm.token.DELETE_TIMEOUT)
MARGIN = 1.0  # seconds: planning, thread wake-ups, deadline timer slack
DEFAULT_WATCHDOG = 60.0  # seconds: WatchdogSec in systemd/f5-llm-ratio.service
BOUND_KEYS = ("f5.tick_budget", "scheduler.tick_deadline", "scheduler.metrics_fetch_interval")


@dataclass(frozen=True)
class TickBound:
    bigip: float  # f5.tick_budget
    scrape: float  # scheduler.tick_deadline (default: 0.8 x the tick interval, at least 0.8 s)
    reload: float  # a reload's token delete
    margin: float
    interval: float  # the tick interval

    @property
    def seconds(self) -> float:
        return self.bigip + self.scrape + self.reload + self.margin

    @property
    def ping_gap(self) -> float:
        """The longest time between two watchdog pings."""
        return self.interval + self.seconds

    def explain(self) -> str:
        return (f"{self.seconds:g}s = f5.tick_budget {self.bigip:g} + scrape deadline {self.scrape:g} "
                f"+ reload token delete {self.reload:g} + margin {self.margin:g}")


def tick_bound(cfg: AppConfig) -> TickBound:
    return TickBound(
        bigip=cfg.f5.tick_budget,
        scrape=cfg.scheduler.scrape_deadline,
        reload=min(cfg.f5.timeout, DELETE_TIMEOUT),
        margin=MARGIN,
        interval=cfg.scheduler.tick_seconds,
    )


def watchdog_seconds(environ: Mapping[str, str]) -> tuple[float, str]:
    """(seconds, where from): $WATCHDOG_USEC when systemd set it, else the shipped unit's WatchdogSec."""
    raw = environ.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec > 0:
        return usec / 1e6, "$WATCHDOG_USEC"
    return DEFAULT_WATCHDOG, "WatchdogSec of the shipped unit"


def fit_problem(cfg: AppConfig, environ: Mapping[str, str]) -> str:
    """Why the worst-case tick does not fit the watchdog, or "" when it does."""
    bound = tick_bound(cfg)
    watchdog, source = watchdog_seconds(environ)
    if bound.ping_gap < watchdog:
        return ""
    return (f"the worst-case tick ({bound.explain()}) plus one tick interval ({bound.interval:g}s) is not "
            f"shorter than the watchdog ({watchdog:g}s, {source}): lower f5.tick_budget or "
            f"scheduler.tick_deadline / scheduler.metrics_fetch_interval, or raise WatchdogSec")
