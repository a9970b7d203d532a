"""Fault injection for crash tests: kill this process at a named journal boundary.

``RH_FAULT_KILL_AT`` holds comma-separated ``<step>:<boundary>`` pairs; when a worker reaches one it sends
itself SIGKILL, exactly as a power loss or OOM kill would stop it. Boundaries: ``before-started``,
``after-started`` (journal row committed, nothing sent yet), ``after-act`` (sent, not yet journaled done),
``after-done``. Unset in production; costs one dict lookup per boundary.
"""

from __future__ import annotations

import os
import signal

BOUNDARIES = ("before-started", "after-started", "after-act", "after-done")


def checkpoint(step: str, boundary: str) -> None:
    spec = os.environ.get("RH_FAULT_KILL_AT")
    if spec and f"{step}:{boundary}" in spec.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
