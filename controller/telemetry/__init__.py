"""What operators see of the controller: a live page, Prometheus /metrics, /healthz, /status, /history.json.

Endpoints (GET; HEAD gives the same status without a body), on `telemetry.host:port` (127.0.0.1:9109):

    /                 the live page: per pool and member, ratio, limit, expected share and load over the
                      last hour as small charts, and the recent ratio changes with their reasons
    /history.json     the page's data: the last hour per member (see `history`), and the ratio changes
                      (`?pool=/Common/x` one pool, `?since=<unix time>` only newer points)
    /metrics          Prometheus text (OpenMetrics when asked), from this instance's own registry
    /healthz          200 when a successful tick finished within `health_ticks` tick intervals, else 503
    /status           pools and members as JSON, in the sideband scheduler's `/pools/status` shape
    /pools/status, /pools/{pool}/{partition}/status[?simple], /health
                      the sideband scheduler's own paths (see `status`)

Modules: `server` (the Telemetry object and routes), `metrics` (the registry), `status` (JSON views),
`history` (the ring buffer), `page` (the page's files); the HTTP server is `controller.httpserve`.
"""

from controller.telemetry.metrics import PREFIX, scrape_label, token_counters, writes_per_pool
from controller.telemetry.server import Telemetry, attach, engine_types, policies, serve
from controller.telemetry.status import shares

__all__ = ["PREFIX", "Telemetry", "attach", "engine_types", "policies", "scrape_label", "serve", "shares",
           "token_counters", "writes_per_pool"]
