"""Putting a device back as the backup found it, and proving it.

After any failure in the middle of a change the pipeline (1) leaves configuration mode discarding what is
uncommitted, (2) re-reads the running config and compares it with the backup, (3) if they differ, rolls back
the platform's way (Junos ``rollback 1`` + commit, IOS ``configure revert now``, FortiOS ``execute cfg
reload``, ASA the exact inverse of every line that took effect, in reverse order) and (4) reads and compares
again. The comparison is byte for byte on the running config without the platform's volatile lines.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from remotehands.network.platforms import Platform
from remotehands.network.session import NetSession
from remotehands.network.templates import Change


def fingerprint(spec: Platform, config: str) -> str:
    """sha256 of the running config without volatile lines: equal fingerprints are identical configs."""
    return hashlib.sha256(spec.normalized(config).encode()).hexdigest()


def shown(spec: Platform, config: str) -> str:
    """The config as it may be stored and attached: normalized, secrets masked."""
    from remotehands import redaction

    return redaction.redact(spec.masked(spec.normalized(config)))


def diff(before: str, after: str, name: str) -> str:
    """A unified diff of two (masked) configs; empty when equal."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{name} before",
            tofile=f"{name} after",
        )
    )


@dataclass(frozen=True)
class Outcome:
    """Where a rollback left the device: ``equal`` to the backup or not, and the config it read last."""

    equal: bool
    config: str
    how: str  # what was done: "nothing was left to undo", "rolled back with configure revert now", ...


def leave_config(session: NetSession) -> None:
    """Leave configuration mode, discarding what is not committed; errors are expected and ignored (the
    session may not be in configuration mode at all)."""
    for command in session.platform.config_abort:
        session.send(command)  # an error answer (not in config mode) is expected and harmless


def restore(session: NetSession, backup_sha: str, change: Change, ticket: str) -> Outcome:
    """Bring the device back to the backup (module docstring) and say whether it got there."""
    spec = session.platform
    config = session.running_config()
    if fingerprint(spec, config) == backup_sha:
        return Outcome(True, config, "nothing was left to undo")
    if spec.safety == "inverse-lines":
        undo = [
            inv
            for line, inv in zip(change.lines, change.inverse, strict=True)
            if inv and took_effect(line, config)
        ]
        session.enter_config()
        for line in reversed(undo):
            session.send(line)
        session.exit_config()
        how = f"undone with {len(undo)} inverse line(s)"
    else:
        if spec.rollback_in_config:
            session.enter_config()
        for command in spec.rollback:
            session.send(command.format(ticket=ticket), timeout=spec.commit_timeout)
        if spec.rollback_in_config:
            session.exit_config()
        how = "rolled back with " + " / ".join(c.format(ticket=ticket) for c in spec.rollback)
    config = session.running_config()
    return Outcome(fingerprint(spec, config) == backup_sha, config, how)


def took_effect(line: str, config: str) -> bool:
    """Whether an ACL-style line (ASA) shows in ``config``: an added line is there, a ``no`` line's is not."""
    present = {row.strip() for row in config.replace("\r\n", "\n").split("\n")}
    if line.startswith("no "):
        return line[3:] not in present
    return line in present
