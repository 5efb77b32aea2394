"""What operators see of the controller: a live page, Prometheus /metrics, /healthz, /status, /history.json.

Endpoints (GET; HEAD gives the same status without a body), on `telemetry.host:port` (127.0.0.1:9109):

    /                 the live page: a banner for what is wrong; per pool and member, ratio, limit, expected
                      share and load over the last hour as small charts, and the recent changes with their reasons
    /history.json     the page's data: the last hour per member (see `history`), and the ratio changes
                      (`?pool=/Common/x` one pool, `?since=<unix time>` only newer points)
    /metrics          Prometheus text (OpenMetrics when asked), from this instance's own registry
    /healthz          liveness: 200 while ticks complete (failing or blind pools included); 503 when no tick
                      completed within `health_ticks` intervals, or every pool is blind past `telemetry.blind_ticks`
    /readyz           readiness: 200 when every configured pool was steered in the last tick, else 503 naming
                      each pool that was not and why (`f5lr_pool_ready{pool}` says the same)
    /status           pools and members as JSON, in the sideband scheduler's `/pools/status` shape
    /pools/status, /pools/{pool}/{partition}/status[?simple], /health
                      the sideband scheduler's own paths (see `status`)

Modules: `server` (the Telemetry object and routes), `metrics` (the registry), `status` (JSON views),
`history` (the ring buffer), `page` (the page's files); the HTTP server is `controller.telemetry.httpserve`.
"""

from controller.policy.shares import shares
from controller.telemetry.metrics import PREFIX, scrape_label, token_counters, writes_per_pool
from controller.telemetry.server import Telemetry, attach, engine_types, policies, serve

__all__ = ["PREFIX", "Telemetry", "attach", "engine_types", "policies", "scrape_label", "serve", "shares",
           "token_counters", "writes_per_pool"]
