"""The token state file: which BIG-IP token this controller holds, so a successor can reclaim it.

A process killed by SIGKILL, the OOM killer or the systemd watchdog cannot delete its token; BIG-IP
keeps it until it expires, and about 100 live tokens lock the user out (F5 K44237337). So the daemon
writes the token it holds to a private file, and on start reuses (or deletes) what a killed
predecessor left there.

Where: `f5.state_dir`, else `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`), else no file.
The file is `tokens-<id>.json` (`daemon.token_file_id`: host + a hash of the config path, one per host
and config path, so two daemons sharing a directory never take each other's token; the owner id in GUI
notes, `daemon.instance_id`, is `global.instance` or the host name), mode 0600, written
atomically (temporary file + rename). It never holds the password. Its shape, one entry per BIG-IP
unit (an HA pair has a token on each):

    {"version": 1, "tokens": {"admin@10.0.0.1:443": {"token": "...", "expires_at": 1764500000.0, "pid": 1234}}}

`expires_at` is wall-clock seconds; an entry past it is dropped unread. A file that cannot be read or
written is logged once and the controller carries on without it (a token may then be stranded, for
at most its lifetime, `f5.token_timeout`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1
MODE = 0o600


def state_dir(configured: str, environ: Mapping[str, str]) -> str:
    """`f5.state_dir`, else the first path of $STATE_DIRECTORY, else "" (no state file)."""
    if configured:
        return configured
    return environ.get("STATE_DIRECTORY", "").split(":")[0]


def key_for(username: str, host: str, port: int) -> str:
    return f"{username}@{host}:{port}"


class TokenStore:
    """Thread-safe reader/writer of one instance's token file."""

    def __init__(self, directory: str, instance: str, *, wall: Callable[[], float] = time.time):
        self.directory = directory
        self.path = os.path.join(directory, f"tokens-{instance or 'default'}.json")
        self._wall = wall
        self._lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return f"TokenStore({self.path!r})"

    def get(self, key: str) -> str | None:
        """The token remembered for `key`, unless it has expired."""
        with self._lock:
            entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        token = entry.get("token")
        if not isinstance(token, str) or not token:
            return None
        expires = entry.get("expires_at")
        if isinstance(expires, (int, float)) and expires <= self._wall():
            return None
        return token

    def put(self, key: str, token: str, lifetime: float) -> None:
        with self._lock:
            tokens = self._read()
            tokens[key] = {"token": token, "expires_at": round(self._wall() + lifetime, 3), "pid": os.getpid()}
            self._write(tokens)

    def drop(self, key: str, token: str | None = None) -> None:
        """Forget `key`'s token (only if it is still `token`, when given)."""
        with self._lock:
            tokens = self._read()
            entry = tokens.get(key)
            if entry is None or (token is not None and isinstance(entry, dict) and entry.get("token") != token):
                return
            del tokens[key]
            self._write(tokens)

    # -- file --------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:  # {key: {"token": str, "expires_at": float}}, as read from JSON
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self._warn("read", e)
            return {}
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return dict(tokens) if isinstance(tokens, dict) else {}

    def _write(self, tokens: dict[str, Any]) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.directory)
            try:
                os.fchmod(fd, MODE)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"version": VERSION, "tokens": tokens}, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as e:
            self._warn("write", e)

    def _warn(self, what: str, e: Exception) -> None:
        if not self._warned:  # once per process: the controller works without the file
            self._warned = True
            log.warning("token_state_unusable", extra={"path": self.path, "operation": what,
                                                       "error": getattr(e, "strerror", None) or type(e).__name__})
