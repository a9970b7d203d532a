"""Each firewall platform as data: how to reach its CLI, enter and leave configuration, commit with a safety
net, confirm, roll back and save; what its errors look like; which lines of its configuration change by
themselves; where its secrets are. The change pipeline (``remotehands.network.pipeline``) is one for all;
``remotehands.network.templates`` renders a rule in each platform's syntax.

Commit strategies (``safety``):
- ``commit-confirmed`` (Junos): ``commit check``, then ``commit confirmed N``; the device rolls back by itself
  unless a plain ``commit`` follows within N minutes.
- ``revert-timer`` (IOS/IOS-XE): the config session is opened with ``configure terminal revert timer N``; the
  device restores its rollback point unless ``configure confirm`` follows.
- ``revert-mode`` (FortiOS with ``cfg-save revert``): changes are live but unsaved; ``execute cfg save`` keeps
  them, ``execute cfg reload`` (or the revert timeout) restores the saved configuration.
- ``inverse-lines`` (ASA): no safety net; apply, verify, and only then ``write memory``; otherwise send the
  exact inverse of every applied line, in reverse order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from remotehands.errors import InvalidRequest

Safety = Literal["commit-confirmed", "revert-timer", "revert-mode", "inverse-lines"]


@dataclass(frozen=True)
class Platform:
    """One platform's CLI as data. Commands may hold ``{minutes}`` and ``{ticket}``."""

    name: str  # as the inventory names it (also Netmiko's device_type)
    safety: Safety
    read_timeout: float  # seconds for an ordinary show or config line
    commit_timeout: float  # seconds for a commit or save, which can take minutes on a busy device
    show_running: str  # the full running configuration
    config_enter: str  # "" when config lines carry their own context (FortiOS)
    config_exit: str
    config_abort: tuple[str, ...] = ()  # leave config mode after a failure, discarding what is uncommitted
    check: tuple[str, ...] = ()  # validation before committing, inside config mode
    commit: tuple[str, ...] = ()  # the safe commit, inside config mode (Junos)
    confirm: tuple[str, ...] = ()  # keep the change (outside config mode unless confirm_in_config)
    confirm_in_config: bool = False
    save: tuple[str, ...] = ()  # make it survive a reload
    rollback_uncommitted: tuple[str, ...] = ()  # inside config mode, before the commit
    rollback: tuple[str, ...] = ()  # after the commit / with the change live (outside config mode)
    rollback_in_config: bool = False
    nothing_pending: str = ""  # the answer to ``confirm``/``rollback`` when no timer is pending
    error_patterns: tuple[str, ...] = ()  # a config line's output matching one was rejected
    volatile: tuple[str, ...] = ()  # lines of show_running that change by themselves
    secrets: tuple[str, ...] = ()  # regexes whose group 1 is a secret to mask in backups and logs
    preflight: tuple[tuple[str, str, str], ...] = ()  # (command, regex the output must match, fix)
    confirm_prompts: dict[str, str] = field(default_factory=dict)  # command -> regex of its y/n question

    def errors(self, output: str) -> str | None:
        """The first line of ``output`` that matches an error pattern, or None."""
        for pattern in self.error_patterns:
            match = re.search(pattern, output, re.MULTILINE)
            if match:
                start = output.rfind("\n", 0, match.start()) + 1
                end = output.find("\n", match.end())
                return output[start : end if end >= 0 else len(output)].strip()
        return None

    def normalized(self, config: str) -> str:
        """``config`` without volatile lines and trailing blanks: two reads of an unchanged device match."""
        volatile = [re.compile(p) for p in self.volatile]
        lines = [line.rstrip() for line in config.replace("\r\n", "\n").split("\n")]
        kept = [line for line in lines if not any(p.search(line) for p in volatile)]
        return "\n".join(kept).strip("\n") + "\n"

    def masked(self, text: str) -> str:
        """``text`` with every secret the platform's configuration holds replaced by ``<redacted>``."""
        for pattern in self.secrets:
            text = re.sub(pattern, lambda m: m.group(0).replace(m.group(1), "<redacted>"), text, flags=re.M)
        return text


PLATFORMS: dict[str, Platform] = {
    "cisco_asa": Platform(
        name="cisco_asa",
        safety="inverse-lines",
        read_timeout=20.0,
        commit_timeout=120.0,
        show_running="show running-config",
        config_enter="configure terminal",
        config_exit="end",
        config_abort=("end",),
        save=("write memory",),
        error_patterns=(r"^ERROR:", r"% Invalid input"),
        volatile=(r"^: Written by", r"^Cryptochecksum:"),
        secrets=(
            r"^enable password (\S+)",
            r"^username \S+ password (\S+)",
            r"(?:pre-shared-|ikev\d )?key (\S+)",
            r"community (\S+)",
        ),
    ),
    "cisco_ios": Platform(
        name="cisco_ios",
        safety="revert-timer",
        read_timeout=20.0,
        commit_timeout=120.0,
        show_running="show running-config",
        config_enter="configure terminal revert timer {minutes}",
        config_exit="end",
        config_abort=("end",),
        confirm=("configure confirm",),
        save=("write memory",),
        rollback=("configure revert now",),
        nothing_pending="No Rollback Confirmed Change pending",
        error_patterns=(r"^%\s*\S", r"^Bad mask"),
        volatile=(
            r"^Building configuration",
            r"^Current configuration :",
            r"^! Last configuration change",
            r"^! NVRAM config last updated",
            r"^ntp clock-period",  # IOS rewrites it as the clock drifts
        ),
        secrets=(
            r"secret(?: \d+)? (\S+)",
            r"password(?: \d+)? (\S+)",
            r"^snmp-server community (\S+)",
            r"key(?: \d+)? (\S+)",
            r"key-string(?: \d+)? (\S+)",
        ),
    ),
    "juniper_junos": Platform(
        name="juniper_junos",
        safety="commit-confirmed",
        read_timeout=30.0,
        commit_timeout=300.0,
        show_running="show configuration | display set",
        config_enter="configure exclusive",
        config_exit="exit configuration-mode",
        config_abort=("rollback 0", "exit configuration-mode"),
        check=("commit check",),
        commit=('commit confirmed {minutes} comment "{ticket}"',),
        confirm=('commit comment "{ticket} confirmed"',),
        confirm_in_config=True,
        rollback_uncommitted=("rollback 0",),
        rollback=("rollback 1", 'commit comment "{ticket} rolled back"'),
        rollback_in_config=True,
        error_patterns=(r"^syntax error", r"^error:", r"^\s*unknown command"),
        volatile=(r"^## Last commit", r"^## Last changed"),
        secrets=(
            r'encrypted-password "([^"]+)"',
            r'secret "([^"]+)"',
            r'authentication-key "([^"]+)"',
            r'(?:ascii-text|hexadecimal) "([^"]+)"',
            r"snmp community (\S+)",
        ),
    ),
    "fortinet": Platform(
        name="fortinet",
        safety="revert-mode",
        read_timeout=30.0,
        commit_timeout=120.0,
        show_running="show",
        config_enter="",
        config_exit="",
        config_abort=("abort", "end", "end"),
        confirm=("execute cfg save",),
        rollback=("execute cfg reload", "y"),
        error_patterns=(r"^Command fail", r"command parse error", r"entry not found in datasource"),
        volatile=(r"^#conf_file_ver=",),
        secrets=(
            r"set (?:password|passwd|psksecret|secret|key|passphrase|auth-pwd|priv-pwd) ENC (\S+)",
            r'set private-key "([^"]+)"',
        ),
        preflight=(
            (
                "get system global | grep cfg-save",
                r"cfg-save\s*:\s*revert",
                "set the FortiGate to revert mode (config system global / set cfg-save revert / end): "
                "remotehands keeps a change only after verifying it, with 'execute cfg save'",
            ),
        ),
        confirm_prompts={"execute cfg reload": r"\(y/n\)"},
    ),
}


def platform(name: str) -> Platform:
    """The platform ``name``; raises ``InvalidRequest`` naming the supported ones."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise InvalidRequest(
            f"platform {name!r} has no change pipeline", fix="supported: " + ", ".join(sorted(PLATFORMS))
        ) from None
