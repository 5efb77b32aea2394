"""`check`: everything the controller needs, verified before it is trusted with a BIG-IP.

Each finding is a `Row`: what was checked (`item`), a severity (`status`: ok, info, warn, FAIL), a
stable machine-readable `code` and a human `detail`. FAIL rows block (`check` exits 1). The same
rows render as the table and as `check --json` (docs/commands.md, "Machine-readable output").

Beyond "does it work", `check` names the likely cause of what does not:
- pages that lack the configured engine's metrics but look like another engine (`engines.detect`):
  "these pages look like vLLM; set engine_type: vllm";
- a metrics path that answers 404 on every member (trtllm-serve serves /prometheus/metrics);
- a pool whose load-balancing mode ignores member ratios (FAIL, with the tmsh fix), or whose members are
  all ephemeral FQDN members (FAIL), or that looks owned by AS3 (warn);
- each configured unit's failover state (HA pairs) and the device group's sync mode;
- config keys that are accepted but ignored (the sideband scheduler's request-path keys).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, get_args

from controller import model
from controller.config import bounds
from controller.config.schema import AppConfig, F5Config, PoolConfig, WeightsConfig
from controller.engines.scrape import Target, target_for
from controller.engines.specs import FLAVOURS, base_engine_type, default_path
from controller.errors import BigIPError, NotFoundError
from controller.ltm import as3
from controller.ltm.failover import UnitStatus, unreadable_message
from controller.model import PoolRef, PoolState, ScrapeKey, ScrapeResult
from controller.policy import planner, weights

#: A finding's severity: FAIL blocks (`check` exits 1).
Severity = Literal["ok", "info", "warn", "FAIL"]
OK: Final = "ok"
INFO: Final = "info"
WARN: Final = "warn"
FAIL: Final = "FAIL"
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
WRITER_ROLES = ("admin", "resource-admin", "manager", "application-editor")  # may modify pool members


class PoolReader(Protocol):
    def read_pool(self, ref: PoolRef) -> PoolState: ...


class Checked(PoolReader, Protocol):
    """What `check` asks of the BIG-IP client: controller.ltm.failover.FailoverClient, over one unit or several."""

    @property
    def cfg(self) -> F5Config: ...  # f5.username, f5.standalone

    def version(self) -> str: ...  # TMOS version: the login works

    def whoami(self) -> dict[str, Any]: ...  # the account, with `partitionAccess: [{name, role}]` where readable

    def device_groups(self) -> list[dict[str, Any]]: ...  # `{name, type, autoSync}` each

    def status(self) -> list[UnitStatus]: ...  # each configured unit's failover state

    def unit(self) -> str: ...  # the unit reads and writes go to; BigIPError when none (split brain)

    def get(self, path: str, *, retry: bool = True) -> Any: ...  # decoded JSON of any iControl REST path


class MetricsReader(Protocol):
    """What `check` asks of the scraper (controller.engines.scrape.Scraper)."""

    def scrape(self, targets: Sequence[Target], deadline: float) -> Mapping[ScrapeKey, ScrapeResult]: ...


@dataclass(frozen=True)
class Row:
    item: str
    status: Severity
    detail: str
    code: str = ""  # stable slug for scripts, e.g. "login", "engine-mismatch", "metrics-path-404"


def _guard(item: str, code: str, fn: Callable[[], Row]) -> Row:
    try:
        return fn()
    except BigIPError as exc:
        return Row(item, FAIL, str(exc), code)


def check_config(cfg: AppConfig) -> list[Row]:
    rows = [Row("config", OK, f"{cfg.source}: {len(cfg.pools)} pool(s)", "config")]
    rows += [Row("config key", WARN, warning, "config-warning") for warning in cfg.warnings]
    rows += [Row("config key", INFO, note, "ignored-key") for note in cfg.notes]
    reload = (f"re-read when the file changes (checked every {cfg.reload_interval:g}s: global.interval) and on SIGHUP"
              if cfg.reload_interval > 0 else "re-read on SIGHUP only (global.interval: 0)")
    rows.append(Row("config reload", INFO, reload, "config-reload"))
    rows += [Row(f"pool {path}", FAIL, f"not steered: {why}", "unsupported-engine") for path, why in cfg.unsupported]
    return rows


def check_login(bigip: Checked) -> Row:
    return Row("login", OK, f"BIG-IP {bigip.version()}", "login")


def role_on(access: Sequence[Mapping[str, Any]], partition: str) -> str:
    """The account's role on `partition` (its own entry, else `all-partitions`); "" when none is listed."""
    own = [_role(a) for a in access if a.get("name") == partition]
    every = [_role(a) for a in access if a.get("name") == "all-partitions"]
    return (own or every or [""])[0]


def _role(access: Mapping[str, Any]) -> str:
    role = access.get("role", "")
    return role if isinstance(role, str) else ""


def check_role(bigip: Checked, username: str, partitions: Sequence[str] = ()) -> Row:
    """Whether the account may write the pools: its role on each pool's partition, from
    `GET /mgmt/tm/auth/user/NAME` (`partitionAccess[].role`). FAIL when it may not write one of them: BIG-IP
    would take `check`'s reads and then refuse `run`'s first PATCH (Operator: 400 01070822 Access Denied)."""
    access = [a for a in bigip.whoami().get("partitionAccess", []) if a.get("role")]
    if not access:
        return Row("role", WARN, f"could not read the role of {username} (GET /mgmt/tm/auth/user/{username}: a remote "
                                 "user has no local record); writes need Manager on the pools' partitions", "role")
    shown = ", ".join(f"{a.get('name')}: {a.get('role')}" for a in access)
    parts = list(dict.fromkeys(partitions)) or sorted({a.get("name", "") for a in access})
    cannot = [(p, role_on(access, p) or "no access") for p in parts if role_on(access, p) not in WRITER_ROLES]
    if not cannot:
        return Row("role", OK, f"{username}: {shown}: may write pool members in {', '.join(parts)}", "role")
    which = ", ".join(f"{role} on {p}" for p, role in cannot)
    fix = " ".join(f"{p} {{ role manager }}" for p, _ in cannot)
    return Row("role", FAIL, f"{username}: {which}: may not change a member's ratio or connectionLimit (BIG-IP "
                             "refuses the PATCH: 01070822 Access Denied); `plan` works, `run` needs Manager (or "
                             f"Administrator) on the pools' partitions; fix: tmsh modify auth user {username} "
                             f"partition-access add {{ {fix} }}", "role")


def check_sync(bigip: Checked) -> Row:
    """The sync mode of the device group that carries LTM config (the built-in sync-only groups do not)."""
    if bigip.cfg.standalone:
        return Row("config sync", OK, "f5.standalone: true: no device group asked (a unit with no peer)", "config-sync")
    groups = [g for g in bigip.device_groups() if g.get("type") == "sync-failover"]
    if not groups:
        return Row("config sync", OK, "no sync-failover device group: a standalone unit", "config-sync")
    auto = [g["name"] for g in groups if g.get("autoSync") == "enabled"]
    if auto:
        return Row("config sync", WARN, f"sync-failover, auto-sync on in {', '.join(auto)}: every ratio write starts "
                                        "a config sync to the peer", "config-sync")
    names = ", ".join(g["name"] for g in groups)
    return Row("config sync", WARN, f"sync-failover, manual sync in {names}: ratios written on the active unit stay "
                                    "there until someone syncs (after a failover the controller writes them again)",
               "config-sync")


def check_units(bigip: Checked) -> list[Row]:
    """Each configured unit's failover state (HA pairs); FAIL when none is active (nothing would be written),
    when the account may not read cm/* (unless f5.standalone), or on split brain."""
    statuses = bigip.status()
    single = len(statuses) == 1
    rows = []
    for s in statuses:
        item = f"unit {s.host}"
        if s.state == "standalone":
            rows.append(Row(item, OK, "f5.standalone: true: a unit with no peer; cm/* (failover state, device groups) "
                                      "not asked; reads and writes go here", "unit-standalone"))
        elif s.state == "active":
            rows.append(Row(item, OK, "active: reads and writes go here", "unit-active"))
        elif s.state == "standby" and not single:
            rows.append(Row(item, OK, "standby: never written", "unit-standby"))
        elif s.state == "unknown" and s.refused:
            rows.append(Row(item, FAIL, unreadable_message(s.host, bigip.cfg.username, s.refused),
                            "cm-unreadable"))
        elif single:
            rows.append(Row(item, FAIL, f"{s.detail or s.state}: not active, nothing would be written; point f5.host "
                                        "at the active unit or list every unit of the device group", "unit-not-active"))
        else:
            rows.append(Row(item, WARN, s.detail or f"{s.state}: never written", f"unit-{s.state}"))
    active = [s.host for s in statuses if s.state == "active"]
    if any(r.code == "cm-unreadable" for r in rows) and not active:
        return rows
    if len(active) > 1:
        try:
            chosen = bigip.unit()
            rows.append(Row("failover", OK, f"active/active: {len(active)} units active in one sync-failover device "
                                            f"group, no traffic group active on two; reads and writes go to {chosen}, "
                                            "the config sync carries the ratios to the others", "active-active"))
        except BigIPError as exc:
            rows.append(Row("failover", FAIL, str(exc), "split-brain"))
    elif len(statuses) > 1 and not active:
        states = ", ".join(f"{s.host} {s.state}" for s in statuses)
        rows.append(Row("failover", FAIL, f"0 active unit(s) ({states}): nothing would be written",
                        "no-active-unit"))
    return rows


def as3_declaration(bigip: Checked) -> object:
    """AS3's declaration when AS3 is installed and readable; None otherwise (best effort, never fails check)."""
    try:
        declaration: object = bigip.get(as3.DECLARE_PATH, retry=False)
        return declaration
    except BigIPError:
        return None


def check_pool(bigip: PoolReader, pool_cfg: PoolConfig, declaration: object = None) -> tuple[Row, PoolState | None]:
    item = f"pool {pool_cfg.ref}"
    try:
        state = bigip.read_pool(pool_cfg.ref)
    except NotFoundError:
        return Row(item, FAIL, "not found on BIG-IP", "pool-missing"), None
    members = f"{len(state.members)} member(s), {sum(m.active for m in state.members)} active"
    ephemeral = sum(m.ephemeral for m in state.members)
    if ephemeral:
        members += f" ({ephemeral} ephemeral FQDN member(s): scraped, never written)"
    held = [m.name for m in state.members if model.held_by_admin(m.description) or pool_cfg.excludes(m.name, m.full_path)]
    if held:
        members += f" ({len(held)} held by an admin, '{model.HOLD_MARKER}' or pools[].exclude: {', '.join(held[:5])})"
    mode = model.mode_problem(state) if pool_cfg.weights.drives_ratio else ""
    if mode:
        return Row(item, FAIL, f"{members}; not steerable: {mode}", "lb-mode-ignores-ratio"), state
    fqdn = model.fqdn_problem(state)
    if fqdn:
        return Row(item, FAIL, f"{members}; not steerable: {fqdn}", "all-ephemeral"), state
    if state.paused:
        return Row(item, WARN, f"{members}; paused by an admin ('{model.PAUSE_MARKER}' in the pool's description): "
                               "nothing is written until it is removed", "pool-paused"), state
    owner = as3.owner_hint(pool_cfg.ref, declaration)
    if owner:
        return Row(item, WARN, f"{members}; {owner}", "as3-owned"), state
    if pool_cfg.weights.drives_limit and not state.queue_on_connection_limit:
        return Row(item, WARN, f"{members}; connection limits without queueOnConnectionLimit reject excess requests; "
                   f"fix: {queue_fix(state)}", "no-queue-on-limit"), state
    if pool_cfg.weights.queue_time_limit_ms is not None and not state.queue_on_connection_limit:
        return Row(item, WARN, f"{members}; {queue_note(state, pool_cfg)}", "queue-time-limit-unused"), state
    return Row(item, OK, f"{members}; mode {state.load_balancing_mode}; {queue_note(state, pool_cfg)}", "pool"), state


def queue_fix(state: PoolState) -> str:
    return planner.queue_fix(state)


def queue_note(state: PoolState, pool_cfg: PoolConfig) -> str:
    """What the pool's connection queue means for the controller, and what to set (docs/policy.md)."""
    w = pool_cfg.weights
    if w.queue_time_limit_ms is not None:  # the opt-in goodput mode: what it will do, or why it cannot
        return f"{_queue_basics(state, w)}; {planner.queue_time_plan(state, w)[1]}"
    return _queue_basics(state, w, hint=True)


def _queue_basics(state: PoolState, w: WeightsConfig, hint: bool = False) -> str:
    if not state.queue_on_connection_limit:
        if w.drive == "auto":
            return ("queueOnConnectionLimit disabled: ratios only; to let f5-llm-ratio also set connection limits "
                    f"that hold bursts in LTM's queue: {queue_fix(state)}")
        return "queueOnConnectionLimit disabled"
    if w.drives_limit:
        limits = "connection limits follow each engine's queue"
    elif w.limits_on(True):
        limits = (f"connection limits follow each engine's queue in pools of up to {weights.AUTO_LIMITS_POOL} members "
                  f"(this one: {len(state.members)})")
    else:
        limits = "no connection limits (drive: ratio)"
    depth = f"queueDepthLimit {state.queue_depth_limit}" if state.queue_depth_limit else "no queueDepthLimit"
    wait = (f"queueTimeLimit {state.queue_time_limit_ms} ms (a request queued longer is reset)"
            if state.queue_time_limit_ms else "no queueTimeLimit (queued requests wait as long as it takes" + (
                "; weights.queue_time_limit: slo keeps it at half the SLO, resetting those that wait longer, for "
                "goodput: docs/policy.md)" if hint else ")"))
    return f"queueOnConnectionLimit enabled: {limits}; {depth}; {wait}"


def check_members(cfg: AppConfig, pool_cfg: PoolConfig, state: PoolState, scraper: MetricsReader) -> list[Row]:
    targets = [target_for(m, pool_cfg, cfg.keys_for(pool_cfg.engine_type)) for m in state.members if m.active]
    # members of idle priority groups are scraped here too: their group may be taken into use any time
    if not targets:
        return [Row(f"  metrics {pool_cfg.ref}", WARN, "no active member to scrape", "no-active-member")]
    results = scraper.scrape(targets, max(t.timeout for t in targets) + 1.0)
    ordered = [(t, results[t.key]) for t in targets]
    failed = sum(not r.ok for _, r in ordered)
    bad: Severity = FAIL if failed == len(ordered) else WARN
    rows = [_member_row(pool_cfg, t, r, bad) for t, r in ordered]
    return rows + diagnose(pool_cfg, ordered)


def _member_row(pool_cfg: PoolConfig, t: Target, r: ScrapeResult, bad: Severity) -> Row:
    if r.sample is None:
        return Row(f"  {t.member}", bad, f"{t.url}: {r.error} {r.detail}".strip(), f"metrics-{r.error}")
    s = r.sample
    running = "" if s.running is None else f" running={s.running:g}"
    kv = " no KV metric" if s.kv_usage is None else f" kv={s.kv_usage:.0%}"
    return Row(f"  {t.member}", OK, f"{s.engine or pool_cfg.engine_type}: waiting={s.waiting:g}{running}{kv}", "metrics")


def diagnose(pool_cfg: PoolConfig, results: Sequence[tuple[Target, ScrapeResult]]) -> list[Row]:
    """The likely cause behind the members' failures, said once per pool."""
    rows = []
    failures = [(t, r) for t, r in results if not r.ok]
    configured = base_engine_type(pool_cfg.engine_type) or pool_cfg.engine_type
    looks = Counter(r.detected for _, r in failures if r.detected and r.detected != configured)
    if looks:
        engine, n = looks.most_common(1)[0]
        severity: Severity = FAIL if len(failures) == len(results) else WARN
        rows.append(Row(f"  engine {pool_cfg.ref}", severity,
                        f"{n} of {len(results)} member page(s) lack {configured}'s metrics but look like "
                        f"{FLAVOURS.get(engine, engine)}: set engine_type: {engine} (or engines_metrics_keys)",
                        "engine-mismatch"))
    if results and all(r.error == "http-404" for _, r in results):
        path = pool_cfg.metrics.path or default_path(pool_cfg.engine_type)
        hint = ("trtllm-serve serves its metrics at /prometheus/metrics" if path != "/prometheus/metrics"
                else "vLLM, SGLang, TGI, llama.cpp and Triton serve /metrics")
        rows.append(Row(f"  path {pool_cfg.ref}", FAIL, f"every member answers 404 on {path}: wrong metrics.path? "
                                                         f"({hint})", "metrics-path-404"))
    return rows


def tick_bound_row(cfg: AppConfig, environ: Mapping[str, str] | None = None) -> Row:
    """The worst-case tick derived from the config, against the watchdog (a misfit is already a config error)."""
    import os

    bound = bounds.tick_bound(cfg)
    watchdog, source = bounds.watchdog_seconds(os.environ if environ is None else environ)
    return Row("tick bound", OK, f"worst case {bound.explain()}; with one interval "
                                 f"{bound.ping_gap:g}s < watchdog {watchdog:g}s ({source})", "tick-bound")


def run(cfg: AppConfig, bigip: Checked, scraper: MetricsReader) -> list[Row]:
    rows = [*check_config(cfg), tick_bound_row(cfg)]
    login = _guard("login", "login", lambda: check_login(bigip))
    rows.append(login)
    if login.status == FAIL:
        return rows
    partitions = [p.ref.partition for p in cfg.pools]
    rows.append(_guard("role", "role", lambda: check_role(bigip, cfg.f5.username, partitions)))
    try:
        rows.extend(check_units(bigip))
    except BigIPError as exc:
        rows.append(Row("failover", FAIL, str(exc), "failover"))
    try:
        rows.append(check_sync(bigip))
    except BigIPError as exc:  # refused to this account: said once, by the unit row (cm-unreadable)
        severity: Severity = WARN if exc.status in (401, 403, 404) else FAIL
        rows.append(Row("config sync", severity, f"device groups not readable: {exc}", "config-sync"))
    declaration = as3_declaration(bigip)
    for pool_cfg in cfg.pools:
        try:
            row, state = check_pool(bigip, pool_cfg, declaration)
        except BigIPError as exc:
            row, state = Row(f"pool {pool_cfg.ref}", FAIL, str(exc), "pool-read-failed"), None
        rows.append(row)
        if state is not None and state.priority_note():
            rows.append(Row(f"  groups {pool_cfg.ref}", INFO, f"{state.priority_note()}: ratios are planned, scored and "
                            "normalised within the groups in use; members of idle groups get share 0 and no write "
                            "until LTM takes their group into use", "priority-groups"))
        if state is not None:
            rows.extend(check_members(cfg, pool_cfg, state, scraper))
    return rows


def blocking(rows: list[Row]) -> bool:
    return any(r.status == FAIL for r in rows)


def as_json(rows: list[Row]) -> dict[str, Any]:
    """The `check --json` document (stable; docs/commands.md, "Machine-readable output")."""
    return {
        "version": 1,
        "command": "check",
        "result": "blocked" if blocking(rows) else "ready",
        "findings": [{"item": r.item.strip(), "severity": r.status.lower(), "code": r.code, "message": r.detail}
                     for r in rows],
    }
