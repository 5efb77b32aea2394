"""structlog setup: JSON lines for journald, a readable console on a TTY, secrets redacted everywhere."""

from __future__ import annotations

import logging
import sys
from typing import Iterable

import structlog

REDACTED = "***"


class Redactor:
    """A structlog processor that replaces every known secret in every string value."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def __call__(self, _logger, _name, event_dict):
        return {k: self.scrub(v) if isinstance(v, str) else v for k, v in event_dict.items()}


REDACTOR = Redactor()


def setup(level: str = "INFO", secrets: Iterable[str] = (), stream=None, json: bool | None = None) -> None:
    stream = stream or sys.stdout
    REDACTOR.update(secrets)
    if json is None:
        json = not stream.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get(name: str = "f5-llm-ratio"):
    return structlog.get_logger(name)
