"""`check`: everything the controller needs, verified before it is trusted with a BIG-IP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller import bounds
from controller.config import AppConfig
from controller.errors import BigIPError, NotFoundError
from controller.scrape import target_for

OK, WARN, FAIL = "ok", "warn", "FAIL"
WRITER_ROLES = ("admin", "resource-admin", "manager")


@dataclass(frozen=True)
class Row:
    item: str
    status: str
    detail: str


def _guard(item: str, fn: Callable[[], Row]) -> Row:
    try:
        return fn()
    except BigIPError as exc:
        return Row(item, FAIL, str(exc))


def check_login(bigip) -> Row:
    return Row("login", OK, f"BIG-IP {bigip.version()}")


def check_role(bigip, username: str) -> Row:
    roles = sorted({a.get("role", "") for a in bigip.whoami().get("partitionAccess", []) if a.get("role")})
    if not roles:
        return Row("role", WARN, f"could not read the role of {username}; writes need Manager on the pools' partitions")
    writer = any(r in WRITER_ROLES for r in roles)
    detail = f"{username}: {', '.join(roles)}" + ("" if writer else " (read-only: `plan` works, writes need Manager)")
    return Row("role", OK if writer else WARN, detail)


def check_sync(bigip) -> Row:
    # Only sync-failover groups carry LTM pools; the built-in sync-only groups always auto-sync.
    auto = [g["name"] for g in bigip.device_groups() if g.get("autoSync") == "enabled" and g.get("type") == "sync-failover"]
    if auto:
        return Row("config sync", WARN, f"auto-sync on in {', '.join(auto)}: every ratio write starts a config sync")
    return Row("config sync", OK, "no device group with auto-sync")


def check_pool(bigip, pool_cfg) -> tuple[Row, object]:
    item = f"pool {pool_cfg.ref}"
    try:
        state = bigip.read_pool(pool_cfg.ref)
    except NotFoundError:
        return Row(item, FAIL, "not found on BIG-IP"), None
    members = f"{len(state.members)} member(s), {sum(m.active for m in state.members)} active"
    if not state.honours_ratio:
        return Row(item, WARN, f"{members}; mode {state.load_balancing_mode} ignores ratios: use ratio-least-connections-member"), state
    if pool_cfg.weights.drives_limit and not state.queue_on_connection_limit:
        return Row(item, WARN, f"{members}; connection limits without queueOnConnectionLimit reject excess requests"), state
    return Row(item, OK, f"{members}; mode {state.load_balancing_mode}"), state


def check_members(cfg: AppConfig, pool_cfg, state, scraper) -> list[Row]:
    targets = [target_for(m, pool_cfg, cfg.keys_for(pool_cfg.engine_type)) for m in state.members if m.active]
    if not targets:
        return [Row(f"  metrics {pool_cfg.ref}", WARN, "no active member to scrape")]
    results = scraper.scrape(targets, max(t.timeout for t in targets) + 1.0)
    failed = sum(not r.ok for r in results.values())
    bad = FAIL if failed == len(results) else WARN
    rows = []
    for t in targets:
        r = results[t.key]
        if r.ok:
            s = r.sample
            kv = "no KV metric" if s.kv_usage is None else f"kv={s.kv_usage:.0%}"
            rows.append(Row(f"  {t.member}", OK, f"{s.engine or pool_cfg.engine_type}: waiting={s.waiting:g} {kv}"))
        else:
            rows.append(Row(f"  {t.member}", bad, f"{t.url}: {r.error} {r.detail}".strip()))
    return rows


def tick_bound_row(cfg: AppConfig, environ=None) -> Row:
    """The worst-case tick derived from the config, against the watchdog (a misfit is already a config error)."""
    import os

    bound = bounds.tick_bound(cfg)
    watchdog, source = bounds.watchdog_seconds(os.environ if environ is None else environ)
    return Row("tick bound", OK, f"worst case {bound.explain()}; with one interval "
                                 f"{bound.ping_gap:g}s < watchdog {watchdog:g}s ({source})")


def run(cfg: AppConfig, bigip, scraper) -> list[Row]:
    rows = [Row("config", OK, f"{cfg.source}: {len(cfg.pools)} pool(s)"), tick_bound_row(cfg)]
    login = _guard("login", lambda: check_login(bigip))
    rows.append(login)
    if login.status == FAIL:
        return rows
    rows.append(_guard("role", lambda: check_role(bigip, cfg.f5.username)))
    rows.append(_guard("config sync", lambda: check_sync(bigip)))
    for pool_cfg in cfg.pools:
        try:
            row, state = check_pool(bigip, pool_cfg)
        except BigIPError as exc:
            row, state = Row(f"pool {pool_cfg.ref}", FAIL, str(exc)), None
        rows.append(row)
        if state is not None:
            rows.extend(check_members(cfg, pool_cfg, state, scraper))
    return rows


def blocking(rows: list[Row]) -> bool:
    return any(r.status == FAIL for r in rows)
