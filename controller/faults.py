"""Log a fault once when it starts and once when it clears, not once per tick."""

from __future__ import annotations

import structlog


class FaultLog:
    def __init__(self, log=None):
        self.log = log or structlog.get_logger("f5-llm-ratio")
        self.active: dict[str, str] = {}  # key -> signature of the fault being reported

    def fault(self, key: str, event: str, **fields) -> bool:
        """Report a fault; repeated identical reports for the same key stay quiet. True if logged."""
        signature = f"{event}|{fields.get('reason', '')}|{fields.get('error', '')}"
        if self.active.get(key) == signature:
            return False
        self.active[key] = signature
        self.log.warning(event, **fields)
        return True

    def clear(self, key: str, event: str, **fields) -> bool:
        if self.active.pop(key, None) is None:
            return False
        self.log.info(event, **fields)
        return True
