"""The `f5-llm-ratio` command. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from controller import __version__, logs, telemetry
from controller.config import yamlfile
from controller.config.schema import AppConfig
from controller.errors import ConfigError, RatioError
from controller.loop import daemon, preflight, render
from controller.model import TickReport
from controller.telemetry.status import missing_pool_view, pool_view, scrub

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CONFIG_HELP = "YAML config file (the sideband scheduler's scheduler-config.yaml works unchanged)"
JSON_VERSION = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="f5-llm-ratio",
        description="Set BIG-IP pool member ratios from LLM engine load. No request path: LTM picks members natively.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. Logs go to stderr.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, metavar="LEVEL",
                        help="log level on stderr: DEBUG, INFO, WARNING or ERROR (default: global.log_level from the config; "
                             "plan, check and demo show INFO lines only when asked, so only their result reaches the terminal)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", help="run, plan, check or demo; COMMAND --help for its options")

    run = sub.add_parser("run", parents=[common], help="the daemon: reconcile every metrics_fetch_interval",
                         description="Reconcile every scheduler.metrics_fetch_interval until SIGTERM; SIGHUP reloads the config.")
    run.add_argument("--config", required=True, metavar="FILE", help=CONFIG_HELP)
    run.add_argument("--once", action="store_true", help="one tick, then exit (1 if anything failed)")
    run.add_argument("--dry-run", action="store_true", help="print the plan each tick instead of writing to BIG-IP")

    plan = sub.add_parser("plan", parents=[common], help="one tick: print the planned ratios, write nothing",
                          description="One tick against BIG-IP and the engines; prints what would be written. "
                                      "Works with a read-only (Guest) account.")
    plan.add_argument("--config", required=True, metavar="FILE", help=CONFIG_HELP)
    plan.add_argument("--json", action="store_true", help="print the plan as one JSON document (shape: docs/commands.md, "
                                                          "'Machine-readable output') instead of the table")

    check = sub.add_parser("check", parents=[common], help="preflight: config, login, role, pools, LB mode, config sync, member metrics",
                           description="Verify everything the controller needs and name the likely cause of what fails.")
    check.add_argument("--config", required=True, metavar="FILE", help=CONFIG_HELP)
    check.add_argument("--json", action="store_true", help="print the findings as one JSON document (shape: docs/commands.md, "
                                                           "'Machine-readable output') instead of the table")

    demo = sub.add_parser("demo", parents=[common], help="run the real controller against a built-in BIG-IP emulator and simulated engines",
                          description="The real controller loop against a BIG-IP emulator, simulated engines and a real trace; "
                                      "the live page is at http://127.0.0.1:9109/ while it runs.")
    from controller.demo import add_arguments

    add_arguments(demo)
    return p


def _load(path: str, level: str | None, quiet: bool = False) -> AppConfig:
    """Load the config and set up logging on stderr. `quiet` (plan, check): the config's INFO becomes WARNING,
    so no progress line lands above the result on a terminal; --log-level, or DEBUG in the config, still wins."""
    cfg = yamlfile.load(path)
    default = "WARNING" if quiet and cfg.log_level == "INFO" else cfg.log_level
    logs.setup(level or default, cfg.secrets(), stream=sys.stderr)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config, args.log_level)
    log = logs.get()
    daemon.announce(cfg, log)
    d = daemon.Daemon(args.config, cfg, dry_run=args.dry_run, out=sys.stdout)
    if args.once:
        code = d.run_once()
        if code and d.rec.last_report is not None:
            _explain_failure(d.rec.last_report)
        return code
    tel = telemetry.serve(d)  # None when telemetry.enabled is false
    try:
        return d.run_forever()
    finally:
        if tel is not None:
            tel.stop()


def _explain_failure(report: TickReport) -> None:
    for err in report.errors:
        print(f"f5-llm-ratio: {err}", file=sys.stderr)
    for plan in report.plans:
        if plan.blind:
            print(f"f5-llm-ratio: {plan.pool.ref}: no member's /metrics could be used; nothing written", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = _load(args.config, args.log_level, quiet=True)
    d = daemon.Daemon(args.config, cfg, dry_run=True, out=None if args.json else sys.stdout)
    code = d.run_once()
    if args.json:
        report = d.rec.last_report
        print(json.dumps(plan_json(cfg, report, code), allow_nan=False))
    return code


def plan_json(cfg: AppConfig, report: TickReport | None, code: int) -> dict[str, Any]:
    """The `plan --json` document: per pool the /status pool view; failures as records (docs/commands.md)."""
    engine_types, policies = telemetry.engine_types(cfg), telemetry.policies(cfg)
    plans = report.plans if report is not None else ()
    read = {plan.pool.ref.full_path for plan in plans}
    pools = [pool_view(plan, engine_types.get(plan.pool.ref.full_path, ""), policies.get(plan.pool.ref.full_path, ""), True)
             for plan in plans]
    if report is not None:  # (no report: no plans, no views)
        for view in pools:
            view["result"] = report.pool_result(view["full_path"])
            view["problem"] = scrub(report.pool_problem(view["full_path"])) or None
    pools += [missing_pool_view(path, et, report.pool_outcome(path) if report is not None else None)
              for path, et in engine_types.items() if path not in read]
    failures = report.failures if report is not None else ()
    return {
        "version": JSON_VERSION,
        "command": "plan",
        "ok": code == EXIT_OK,
        "exit_code": code,
        "dry_run": True,
        "writes": sum(len(plan.writes) for plan in plans),
        "pools": pools,
        "errors": [{"kind": o.kind.value, "reason": o.reason.value, "pool": o.pool or None, "member": o.member or None,
                    "message": scrub(o.message)} for o in failures],
    }


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config, args.log_level, quiet=True)
    rec = daemon.build(cfg, dry_run=True)
    try:
        rows = preflight.run(cfg, rec.bigip, rec.scraper)
    finally:
        daemon.close(rec)
    blocked = preflight.blocking(rows)
    if args.json:
        doc = preflight.as_json(rows)
        doc.update(ok=not blocked, exit_code=EXIT_FAIL if blocked else EXIT_OK)
        doc["errors"] = [{"kind": "check", "reason": f["code"], "pool": None, "member": None, "message": f["message"]}
                         for f in doc["findings"] if f["severity"] == "fail"]
        print(json.dumps(doc))
    else:
        print(render.table(("check", "status", "detail"), [(r.item, r.status, r.detail) for r in rows]))
        print("\nresult: " + ("BLOCKED: fix the FAIL rows first" if blocked else "ready"))
    return EXIT_FAIL if blocked else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import run

    return run(args)


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "check": cmd_check, "demo": cmd_demo}


def config_errors(exc: ConfigError) -> list[dict[str, Any]]:
    """Each problem of a ConfigError as a `--json` error record: {kind: config, key, message}."""
    out: list[dict[str, Any]] = []
    for problem in exc.problems:
        key, sep, _ = problem.partition(": ")
        out.append({"kind": "config", "reason": "invalid", "key": key if sep and " " not in key and not key.startswith("/") else None,
                    "pool": None, "member": None, "message": scrub(problem)})
    return out


def error_json(command: str, code: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The one JSON object `plan --json` and `check --json` print when they cannot do their job at all (a bad
    config, a failure before any result): same `version`, `command`, `ok`, `exit_code` and `errors` as always."""
    doc: dict[str, Any] = {"version": JSON_VERSION, "command": command, "ok": False, "exit_code": code, "errors": errors}
    if command == "check":
        doc["result"] = "blocked"
        doc["findings"] = [{"item": "config" if e["kind"] == "config" else command, "severity": "fail",
                            "code": "config" if e["kind"] == "config" else e["reason"], "message": e["message"]}
                           for e in errors]
    else:
        doc.update(dry_run=True, writes=0, pools=[])
    return doc


def _fail(args: argparse.Namespace, code: int, text: str, errors: list[dict[str, Any]]) -> int:
    """A failure that ends the command: one line on stderr, and with --json one JSON object on stdout."""
    print(f"f5-llm-ratio: {text}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps(error_json(args.command, code, errors), allow_nan=False))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage error (or --help) on stderr
        wants_json = "--json" in argv and argv[:1] in (["plan"], ["check"])
        if exc.code == EXIT_CONFIG and wants_json:
            usage = {"kind": "config", "reason": "usage", "key": None, "pool": None, "member": None,
                     "message": "invalid command line (see the usage line on stderr)"}
            print(json.dumps(error_json(argv[0], EXIT_CONFIG, [usage])))
        raise
    if not args.command:
        _parser().print_help()
        return EXIT_CONFIG
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(args, EXIT_CONFIG, str(exc), config_errors(exc))
    except RatioError as exc:
        text = logs.REDACTOR.scrub(str(exc))
        return _fail(args, EXIT_FAIL, text, [{"kind": "tick", "reason": "failed", "pool": None, "member": None,
                                              "message": text}])
    except KeyboardInterrupt:
        return EXIT_FAIL
    except Exception as exc:
        if os.environ.get("F5LR_DEBUG"):
            raise
        text = f"internal error: {type(exc).__name__}: {logs.REDACTOR.scrub(str(exc))}"
        return _fail(args, EXIT_FAIL, f"{text} (set F5LR_DEBUG=1 for the traceback, and please report it)",
                     [{"kind": "tick", "reason": "internal-error", "pool": None, "member": None, "message": text}])
