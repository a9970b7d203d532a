"""A playbook's progress as the ticket shows it: per play and task, each host's outcome (ok, changed,
failed, unreachable, skipped), written as one comment at most every ``FLUSH_S`` seconds (coalesced), and the
job log line by line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

FLUSH_S = 5.0
_OUTCOMES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class Progress:
    """Collects events (``remotehands.ansible.runner`` hands them over redacted) into lines; ``write`` gets
    a batch of lines to put on the ticket."""

    def __init__(
        self, label: str, write: Callable[[str], None], *, clock: Callable[[], float] = time.monotonic
    ):
        self.label = label
        self.write = write
        self.clock = clock
        self.pending: list[str] = []
        self.flushed_at = clock()
        self.changed = 0
        self.last_task = ""

    def event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        line = None
        if kind == "playbook_on_play_start":
            line = f"play '{event['play']}'"
        elif kind == "playbook_on_task_start":
            self.last_task = event["task"]
        elif kind in _OUTCOMES:
            outcome = _OUTCOMES[kind]
            if outcome == "ok" and event["changed"]:
                outcome = "changed"
                self.changed += 1
            detail = f": {event['msg']}" if outcome in ("failed", "unreachable") and event["msg"] else ""
            line = f"  task '{event['task'] or self.last_task}': {event['host']} {outcome}{detail}"
        if line is None:
            return
        log.info("%s: %s", self.label, line.strip())
        self.pending.append(line)
        if self.clock() - self.flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write what is pending as one comment."""
        if self.pending:
            self.write(f"{self.label}:\n" + "\n".join(self.pending))
            self.pending = []
        self.flushed_at = self.clock()
