"""`check`: everything the controller needs, verified before it is trusted with a BIG-IP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller import as3, bounds, model
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
    """The sync mode of the device group that carries LTM config (the built-in sync-only groups do not)."""
    groups = [g for g in bigip.device_groups() if g.get("type") == "sync-failover"]
    if not groups:
        return Row("config sync", OK, "no sync-failover device group: a standalone unit")
    auto = [g["name"] for g in groups if g.get("autoSync") == "enabled"]
    if auto:
        return Row("config sync", WARN, f"sync-failover, auto-sync on in {', '.join(auto)}: every ratio write starts "
                                        "a config sync to the peer")
    names = ", ".join(g["name"] for g in groups)
    return Row("config sync", WARN, f"sync-failover, manual sync in {names}: ratios written on the active unit stay "
                                    "there until someone syncs (after a failover the controller writes them again)")


def check_units(bigip) -> list[Row]:
    """Each configured unit's failover state; FAIL when none is active (nothing would be written)."""
    statuses = bigip.status() if hasattr(bigip, "status") else []
    rows = []
    single = len(statuses) == 1
    for s in statuses:
        if s.state == "active":
            rows.append(Row(f"unit {s.host}", OK, "active: reads and writes go here"))
        elif s.state == "standby" and not single:
            rows.append(Row(f"unit {s.host}", OK, "standby: never written"))
        elif s.state == "unknown" and single:
            rows.append(Row(f"unit {s.host}", WARN, "failover state not readable (cm/failover-status, cm/device): "
                                                    "taken as a standalone unit"))
        else:
            status = FAIL if single else WARN
            detail = s.detail or f"{s.state}: never written"
            rows.append(Row(f"unit {s.host}", status, detail if not single else
                            f"{s.state}, not active: nothing would be written; point f5.host at the active unit or "
                            "list every unit of the device group"))
    if len(statuses) > 1 and sum(s.state == "active" for s in statuses) != 1:
        states = ", ".join(f"{s.host} {s.state}" for s in statuses)
        rows.append(Row("failover", FAIL, f"{sum(s.state == 'active' for s in statuses)} active unit(s) ({states}): "
                                          "nothing would be written"))
    return rows


def check_pool(bigip, pool_cfg, declaration: object = None) -> tuple[Row, object]:
    item = f"pool {pool_cfg.ref}"
    try:
        state = bigip.read_pool(pool_cfg.ref)
    except NotFoundError:
        return Row(item, FAIL, "not found on BIG-IP"), None
    members = f"{len(state.members)} member(s), {sum(m.active for m in state.members)} active"
    ephemeral = sum(m.ephemeral for m in state.members)
    if ephemeral:
        members += f" ({ephemeral} ephemeral FQDN member(s): scraped, never written)"
    problems = [model.mode_problem(state) if pool_cfg.weights.drives_ratio else "", model.fqdn_problem(state)]
    why = "; ".join(p for p in problems if p)
    if why:
        return Row(item, FAIL, f"{members}; not steerable: {why}"), state
    owner = as3.owner_hint(pool_cfg.ref, declaration)
    if owner:
        return Row(item, WARN, f"{members}; {owner}"), state
    if pool_cfg.weights.drives_limit and not state.queue_on_connection_limit:
        return Row(item, WARN, f"{members}; connection limits without queueOnConnectionLimit reject excess requests"), state
    return Row(item, OK, f"{members}; mode {state.load_balancing_mode}"), state


def as3_declaration(bigip) -> object:
    """AS3's declaration when AS3 is installed and readable; None otherwise (best effort, never fails check)."""
    try:
        return bigip.get(as3.DECLARE_PATH, retry=False) if hasattr(bigip, "get") else None
    except BigIPError:
        return None


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
    try:
        rows.extend(check_units(bigip))
    except BigIPError as exc:
        rows.append(Row("failover", FAIL, str(exc)))
    rows.append(_guard("config sync", lambda: check_sync(bigip)))
    declaration = as3_declaration(bigip)
    for pool_cfg in cfg.pools:
        try:
            row, state = check_pool(bigip, pool_cfg, declaration)
        except BigIPError as exc:
            row, state = Row(f"pool {pool_cfg.ref}", FAIL, str(exc)), None
        rows.append(row)
        if state is not None:
            rows.extend(check_members(cfg, pool_cfg, state, scraper))
    return rows


def blocking(rows: list[Row]) -> bool:
    return any(r.status == FAIL for r in rows)
