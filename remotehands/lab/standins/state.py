"""The state the stand-in commands share: one JSON file per stand-in host.

The commands find it through ``RH_STANDIN_STATE`` (the stand-in sshd sets it for every session). The file
holds what the real host would remember: the macOS version and its update catalog, ``pmset`` settings, the
ESXi image profile, maintenance mode and advanced settings, and ``log``, one entry per command run
(``{"argv": [...], "rc": N}``), which is how a test sees what a playbook did and in which order.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_ENV = "RH_STANDIN_STATE"

# A Mac on macOS 14.3 with a 14.x minor update and a major upgrade on offer; an ESXi 8.0 U2 host with an
# offline depot of 8.0 U3b on its datastore.
_DEFAULT: dict[str, Any] = {
    "mac": {
        "version": "14.3",
        "build": "23D56",
        # Every release Apple's catalog has for this Mac; softwareupdate offers the newest of each major
        # above the running version.
        "catalog": [
            {"version": "14.3", "build": "23D56"},
            {"version": "14.4", "build": "23E214"},
            {"version": "14.4.1", "build": "23E224"},
            {"version": "15.1", "build": "24B83"},
        ],
        # Apple silicon: installing an OS update needs a volume owner's name and password (--user,
        # --stdinpass). None: not asked (Intel Macs).
        "owner_user": None,
        "owner_password": None,
        "pending": None,  # an update installed without --restart: applied at the next restart
        "restarts": 0,
        "installers": [],  # versions of full installers fetched to /Applications
        "pmset": {
            "standby": 0,
            "Sleep On Power Button": 1,
            "autorestart": 0,
            "hibernatefile": "/var/vm/sleepimage",
            "powernap": 0,
            "disksleep": 10,
            "sleep": 1,
            "hibernatemode": 0,
            "ttyskeepawake": 1,
            "displaysleep": 10,
            "tcpkeepalive": 1,
            "womp": 1,
        },
    },
    "esxi": {
        "profile": "ESXi-8.0U2-22380479-standard",
        "profile_updated": False,  # esxcli shows "(Updated) NAME" once a profile update changed the host
        "version": "8.0.2",
        "build": "22380479",
        "update": "2",
        "patch": "0",
        "pending": None,  # the profile an update staged, running after the next reboot
        "maintenance_mode": False,
        "boots": 0,
        "depots": {
            "/vmfs/volumes/datastore1/VMware-ESXi-8.0U3b-24280767-depot.zip": [
                "ESXi-8.0U3b-24280767-standard",
                "ESXi-8.0U3b-24280767-no-tools",
            ],
        },
        "advanced": {
            "/UserVars/ESXiShellInteractiveTimeOut": {
                "type": "integer",
                "value": 0,
                "default": 0,
                "max": 86400,
                "description": "Idle time before an interactive shell is automatically logged out (in seconds)."
                " Requires 'Security.AccountUnlockTime' to be set to a non-zero value.",
            },
            "/UserVars/ESXiShellTimeOut": {
                "type": "integer",
                "value": 0,
                "default": 0,
                "max": 86400,
                "description": "Time before automatically disabling local and remote shell access (in seconds,"
                " 0 disables).  Takes effect after the services are restarted.",
            },
            "/UserVars/SuppressShellWarning": {
                "type": "integer",
                "value": 0,
                "default": 0,
                "max": 1,
                "description": "Don't show warning for enabled local and remote shell access",
            },
            "/Syslog/global/logHost": {
                "type": "string",
                "value": "",
                "default": "",
                "max": 0,
                "description": "The remote host to output logs to. Reset to default on null. Multiple hosts"
                " are supported and must be separated with comma (,).",
            },
        },
    },
    "log": [],
}


def default_state() -> dict[str, Any]:
    """A fresh copy of the default stand-in host (a Mac on 14.3 and an ESXi 8.0 U2 host in one file).

    Callers change the copy and pass it to ``write_state`` (or to ``start_sshd``); the default stays.
    """
    return copy.deepcopy(_DEFAULT)


def read_state(path: Path) -> dict[str, Any]:
    """The state in ``path``. Raises OSError if it cannot be read, ValueError if it is not JSON."""
    with _locked(path):
        return dict(json.loads(path.read_text()))


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state in ``path`` with ``state`` (atomically). Raises OSError if it cannot be written."""
    with _locked(path):
        _replace(path, state)


@contextlib.contextmanager
def edit_state(path: Path) -> Iterator[dict[str, Any]]:
    """Hold the state's lock, yield it, and write it back when the block ends without an exception.

    One command is one transaction: Ansible may run commands of one host back to back while a test reads.
    Raises OSError or ValueError as ``read_state`` does.
    """
    with _locked(path):
        state = dict(json.loads(path.read_text()))
        yield state
        _replace(path, state)


def state_path() -> Path:
    """The state file named by ``RH_STANDIN_STATE``. Raises KeyError when the variable is not set."""
    return Path(os.environ[STATE_ENV])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # A lock file beside the state, not the state itself: the state is replaced by rename on every write.
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)
