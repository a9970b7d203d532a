"""What the host side of a LUN expansion (``remotehands.storage.hostside``) shares between ESXi and Linux:
``HostView``, the shell that runs one host's storage commands and turns their failures into our errors, and
the readers of the tools' tables.

Every error names the host and the command: ``DeviceRefused`` for a command that failed (its stderr, else its
stdout, in the message) or answered in a form we cannot read, ``VerificationFailed`` for a read-back that
disagrees. ``DeviceUnreachable`` from the SSH session passes through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from remotehands.errors import DeviceRefused, InvalidRequest, VerificationFailed
from remotehands.ssh.client import CommandResult, HostSsh

HostKind = Literal["esxi", "linux"]
_NAA = re.compile(r"naa\.[0-9a-f]{32}")

# How long a command may stay silent before the session gives up on it. Reads answer at once; a rescan waits
# on every path's SCSI commands (a slow or flapping fabric retries each for tens of seconds), and a grow
# writes the filesystem's or VMFS's new metadata (resize2fs adds block groups, its time grows with the size).
READ_TIMEOUT = 60.0
RESCAN_TIMEOUT = 600.0
GROW_TIMEOUT = 1800.0


@dataclass(frozen=True)
class HostView:
    """What one host sees of a LUN."""

    device_size: int  # bytes the host sees for the LUN (Linux: the multipath map)
    fs_size: (
        int | None
    )  # capacity of the datastore / filesystem on it, None when it is not mounted on this host
    where: str  # "datastore ds-ontap-01" / "/srv/data (ext4 on vg_data/lv_data)"
    fstype: str | None = None  # what is mounted on it here: vmfs, ext4, xfs, ...; None when nothing is


def check_naa(naa: str) -> None:
    """Raises ``InvalidRequest`` unless ``naa`` is ``naa.`` and 32 lowercase hex digits."""
    if not _NAA.fullmatch(naa):
        raise InvalidRequest(
            f"not a LUN name hosts see: {naa!r}", fix="give it as naa. and 32 lowercase hex digits"
        )


class HostShell:
    """The storage commands of one host over its SSH session; ``sudo`` puts ``sudo -n`` before each command
    that asks for root (Linux; ESXi logs in as root)."""

    def __init__(self, ssh: HostSsh, *, sudo: bool) -> None:
        self.ssh = ssh
        self.name = ssh.name
        self._sudo = sudo

    def run(
        self,
        command: str,
        *,
        root: bool = True,
        stdin: bytes | None = None,
        allow: tuple[int, ...] = (0,),
        timeout: float = READ_TIMEOUT,
    ) -> CommandResult:
        """Run ``command``, waiting up to ``timeout`` seconds for its output (``RESCAN_TIMEOUT``,
        ``GROW_TIMEOUT`` for the slow ones); raises ``DeviceRefused`` (the tool's own words) when its exit
        status is not in ``allow``, ``DeviceUnreachable`` when the session breaks or times out."""
        line = f"sudo -n {command}" if self._sudo and root else command
        result = self.ssh.run(line, stdin=stdin, timeout=timeout)
        if result.exit_status not in allow:
            raise DeviceRefused(
                f"{self.name}: '{result.command}' failed (exit {result.exit_status}): {said(result)}",
                fix=f"run it on {self.name} by hand to see why; the step can be retried once that is fixed",
            )
        return result

    def unreadable(self, result: CommandResult, what: str) -> DeviceRefused:
        """The error for output that does not say what the tool's documentation says it does."""
        text = " ".join(result.stdout.split())[:300] or "no output"
        return DeviceRefused(
            f"{self.name}: '{result.command}' answered without {what}: {text}",
            fix="check the tool's version on the host; remotehands reads the output format of its "
            "documentation",
        )

    def disagrees(self, command: str, message: str, fix: str) -> VerificationFailed:
        """The error for a read-back that does not show what it should."""
        return VerificationFailed(f"{self.name}: {message} (read with '{command}')", fix=fix)


def said(result: CommandResult) -> str:
    """The last lines of what a command said: its stderr, else its stdout."""
    text = result.stderr.strip() or result.stdout.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-3:])[:500] or "no output"


def integer(shell: HostShell, result: CommandResult, text: str, what: str) -> int:
    """``text`` as a non-negative integer; ``DeviceRefused`` when it is not one."""
    text = text.strip()
    if not text.isdigit():
        raise shell.unreadable(result, what)
    return int(text)


def esxcli_rows(shell: HostShell, result: CommandResult) -> list[dict[str, str]]:
    """The rows of an esxcli table (a header, a line of dashes per column two spaces apart, then the rows),
    each by column name. Cells are cut at the columns' starts, so a name with spaces stays whole."""
    lines = result.stdout.splitlines()
    dashes = next((i for i, line in enumerate(lines) if line.strip() and set(line) <= {"-", " "}), None)
    if dashes is None or dashes == 0:
        raise shell.unreadable(result, "an esxcli table")
    starts = [m.start() for m in re.finditer(r"-+", lines[dashes])]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [lines[dashes - 1][a:b].strip() for a, b in bounds]
    return [
        {name: line[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)}
        for line in lines[dashes + 1 :]
        if line.strip()
    ]
