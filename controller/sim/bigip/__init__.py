"""An in-process BIG-IP iControl REST emulator for tests, the demo and benchmarks.

It serves HTTPS (self-signed, see `tls.py`) with HTTP/1.1 keep-alive, and reproduces what this project
depends on: token login/extend/delete/expiry and the per-user token limit, HTTP Basic auth, LTM pools and
members (route domains, IPv6, sub-paths, `expandSubcollections`), member PATCH validation, transactions,
the read-only endpoints f5-sdk touches on connect, and the failure modes seen in the field (mcpd lost,
restjavad restarting with an HTML 503, URI not registered, dropped connections, latency, reboots).

Bodies and shapes follow real BIG-IP replies (fixtures/bigip in the shared reference): `kind`,
`selfLink` with `?ver=`, `generation`, `rateLimit` as a string, read-back session/state values.
Error bodies come from one dict, `ERRORS`.

    with BigIPEmulator(users={"admin": "secret"}) as bigip:          # serving on 127.0.0.1:<random>
        bigip.add_pool("/Common/llm-pool", members=["10.0.0.1:8000", "10.0.0.2:8000"])
        requests.get(bigip.base_url + "/mgmt/tm/ltm/pool", auth=("admin", "secret"), verify=bigip.cert_path)

Also runnable: `python -m controller.sim.bigip --port 8443 --pool /Common/llm-pool=127.0.0.1:8001,127.0.0.1:8002`
(add `--ha-peer 127.0.0.2` for an active/standby pair on one port).

HA pairs, FQDN pools, nodes: `HAPair(a, b)` joins two units in a sync-failover device group (`ha.py`);
`add_fqdn_member` creates an FQDN template member and its ephemeral members, which refuse changes;
`cm/failover-status`, `cm/device`, `cm/device-group`, `cm/sync-status`, `sys/failover` and `ltm/node`
answer as on a real unit; `$top`/`$skip` page collections; an empty collection has no `items`; a `%`
that is not a %XX escape is a 400 (route domains travel as `%25`).

The package follows the emulator's own sections:

    errors.py        ERRORS, error_body, RestError
    state.py         records (pools, members, nodes, tokens, transactions, requests, replies) and name parsing
    core.py          state, knobs and clock of one unit
    shapes.py        JSON shapes and collections (paging, empty collections)
    pools.py         the pool/member/node state API (add_pool, add_member, set_member_state, ...)
    faults.py        fail_next / clear_faults
    tokens.py        authentication and the token endpoints
    ltm.py           pool, member and node endpoints with BIG-IP's validation
    transactions.py  transaction endpoints and the atomic commit
    system.py        sys, device info, users, cm/* and AS3 read-only endpoints
    ha.py            failover state, config sync, HAPair
    routes.py        the route table: (method, pattern, handler function, access)
    server.py        HTTPS on controller.telemetry.httpserve
    emulator.py      BigIPEmulator: the sections assembled, plus dispatch
    cli.py           `python -m controller.sim.bigip`

Emulator conventions (where BIG-IP's exact behaviour is not documented, the choice is noted inline):
- The clock (`clock=`) drives token and transaction expiry; wall-clock fields (startTime, *Micros) are
  derived from it so `expirationMicros - lastUpdateMicros == timeout * 1e6` always holds.
- A token expires at start + timeout ("absolute" timeout); PATCHing `timeout` re-bases that, capped at
  36000 s.
- Fault knobs apply before authentication and routing, to every path matching their filter.
"""

from __future__ import annotations

from controller.sim.bigip.cli import main
from controller.sim.bigip.emulator import BigIPEmulator
from controller.sim.bigip.errors import ERRORS, RestError, error_body
from controller.sim.bigip.ha import HAPair
from controller.sim.bigip.state import FAULT_KINDS, LoggedRequest, Reply, Write

__all__ = ["ERRORS", "FAULT_KINDS", "BigIPEmulator", "HAPair", "LoggedRequest", "Reply", "RestError", "Write",
           "error_body", "main"]
