"""The `f5-llm-ratio` command. Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from controller import __version__, configfile, daemon, logs, preflight, render, telemetry
from controller.errors import ConfigError, RatioError

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="f5-llm-ratio",
        description="Set BIG-IP pool member ratios from LLM engine load. No request path: LTM picks members natively.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="the daemon: reconcile every metrics_fetch_interval")
    run.add_argument("--config", required=True, metavar="FILE", help="YAML config (the sideband scheduler's file works unchanged)")
    run.add_argument("--once", action="store_true", help="one tick, then exit (1 if anything failed)")
    run.add_argument("--dry-run", action="store_true", help="print the plan each tick instead of writing to BIG-IP")

    plan = sub.add_parser("plan", help="one tick: print the planned ratios, write nothing")
    plan.add_argument("--config", required=True, metavar="FILE")

    check = sub.add_parser("check", help="preflight: config, login, role, pools, LB mode, config sync, member metrics")
    check.add_argument("--config", required=True, metavar="FILE")

    demo = sub.add_parser("demo", help="run the real controller against a built-in BIG-IP emulator and simulated engines")
    from controller.demo import add_arguments

    add_arguments(demo)
    return p


def _load(path: str):
    cfg = configfile.load(path)
    logs.setup(cfg.log_level, cfg.secrets(), stream=sys.stderr)
    return cfg


def cmd_run(args) -> int:
    cfg = _load(args.config)
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


def _explain_failure(report) -> None:
    for err in report.errors:
        print(f"f5-llm-ratio: {err}", file=sys.stderr)
    for plan in report.plans:
        if plan.blind:
            print(f"f5-llm-ratio: {plan.pool.ref}: no member's /metrics could be used; nothing written", file=sys.stderr)


def cmd_plan(args) -> int:
    cfg = _load(args.config)
    d = daemon.Daemon(args.config, cfg, dry_run=True, out=sys.stdout)
    return d.run_once()


def cmd_check(args) -> int:
    cfg = _load(args.config)
    rec = daemon.build(cfg, dry_run=True)
    try:
        rows = preflight.run(cfg, rec.bigip, rec.scraper)
    finally:
        daemon.close(rec)
    print(render.table(("check", "status", "detail"), [(r.item, r.status, r.detail) for r in rows]))
    blocked = preflight.blocking(rows)
    print("\nresult: " + ("BLOCKED: fix the FAIL rows first" if blocked else "ready"))
    return EXIT_FAIL if blocked else EXIT_OK


def cmd_demo(args) -> int:
    from controller.demo import run

    return run(args)


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "check": cmd_check, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_help()
        return EXIT_CONFIG
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"f5-llm-ratio: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RatioError as exc:
        print(f"f5-llm-ratio: {logs.REDACTOR.scrub(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
    except Exception as exc:
        if os.environ.get("F5LR_DEBUG"):
            raise
        print(f"f5-llm-ratio: internal error: {type(exc).__name__}: {logs.REDACTOR.scrub(str(exc))} "
              "(set F5LR_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return EXIT_FAIL
