"""structlog setup: JSON lines on stderr for journald, a readable console on a TTY, secrets redacted everywhere, floats rounded."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger, Processor

from controller import redact
from controller.redact import Redactor

REDACTED = redact.MARKER

REDACTOR = Redactor()
FLOAT_DIGITS = 4  # decimals kept in a log line: kv=0.41, not kv=0.40995919881305637

#: The logger every module logs through (`get()`): structlog's, filtered by level (`setup`).
Log = FilteringBoundLogger


def round_floats(_logger: object, _name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """A structlog processor: floats rounded to FLOAT_DIGITS decimals, so log lines stay readable."""
    return {k: round(v, FLOAT_DIGITS) if isinstance(v, float) else v for k, v in event_dict.items()}


def _route_stdlib(level: int, renderer: Processor, stream: TextIO) -> None:
    """Library loggers (ours on stdlib logging, urllib3) get the same format and redaction."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, round_floats, REDACTOR, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(max(level, logging.INFO))
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def setup(level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None, json: bool | None = None) -> None:
    """Logs go to stderr (journald reads both streams; stdout stays for the output of plan and check):
    JSON lines when stderr is not a terminal, a readable console format on one."""
    stream = stream or sys.stderr
    REDACTOR.update(secrets)
    if json is None:
        json = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    numeric = getattr(logging, level.upper(), logging.INFO)
    _route_stdlib(numeric, renderer, stream)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            round_floats,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "f5-llm-ratio") -> Log:
    log: Log = structlog.get_logger(name)  # structlog types it Any; `setup` makes it a filtering bound logger
    return log
