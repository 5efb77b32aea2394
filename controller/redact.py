"""Secrets out of text, one way, with one marker.

Every path by which text leaves the process goes through `scrub`: BIG-IP error messages (the client),
scrape details (the scraper), log lines (the structlog processor `Redactor`, also on stdlib and urllib3
records) and the free text telemetry serves. Three kinds of secret are taken out:

- known values: the BIG-IP password, metrics credentials, API keys and the live token(s), longest first
  so that a secret containing another is replaced whole;
- token URLs, `/mgmt/shared/authz/tokens/<token>`, whatever the token (an old one is no longer known);
- URL credentials, `scheme://user:password@host`.

Pure: no I/O, so it can sit below every module that emits text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MARKER = "***"

_TOKEN_URL = re.compile(r"(/mgmt/shared/authz/tokens/)[^\s\"'?]+")
_URL_USERINFO = re.compile(r"(//)[^/@\s]+@")


def token_urls(text: str) -> str:
    """`/mgmt/shared/authz/tokens/ABC` -> `/mgmt/shared/authz/tokens/***`."""
    return _TOKEN_URL.sub(r"\g<1>" + MARKER, text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret, token URL and URL credential replaced by MARKER."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MARKER)
    if "/mgmt/shared/authz/tokens/" in text:
        text = token_urls(text)
    if "@" in text:
        text = _URL_USERINFO.sub(r"\g<1>" + MARKER + "@", text)
    return text


class Redactor:
    """The process's known secrets (config values plus live sources such as the BIG-IP token), and a
    structlog processor that scrubs every string value of every event."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: tuple[str, ...] = ()
        self.sources: list[Callable[[], Iterable[str]]] = []  # e.g. the live BIG-IP token
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def known(self) -> set[str]:
        found = set(self.secrets)
        for source in self.sources:
            found.update(s for s in source() if s)
        return found

    def scrub(self, text: str) -> str:
        return scrub(text, self.known())

    def __call__(self, _logger: Any, _name: str, event_dict: Mapping[str, Any]) -> dict[str, Any]:
        known = self.known()
        return {k: scrub(v, known) if isinstance(v, str) else v for k, v in event_dict.items()}
