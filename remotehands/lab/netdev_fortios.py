"""The lab's FortiGate: a FortiOS 7.2 CLI over a configuration tree (``netdev_fortios_config``), with the
revert-mode save model: changes apply at once, the first unsaved one arms the revert timer, ``execute cfg
save`` keeps them and ``execute cfg reload`` (or the timer) puts the saved configuration back. ``get router
info routing-table static`` shows the static routes the running configuration makes active.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from remotehands.lab.netdev_fortios_config import (
    KEYS,
    NUMBERED,
    ORDER,
    Refusal,
    Section,
    Settings,
    Tree,
    baseline,
    check_setting,
    in_schema_order,
    new_entry,
    referrers,
    render,
)
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    DeviceSession,
    NetDevice,
    Reply,
    Zone,
)

BUILD = "1517"
HEADER = f"#config-version=FGVM64-7.2.5-FW-build{BUILD}-230606:opmode=0:vdom=0:user=admin"
RELOAD_WARNING = "This operation will discard all unsaved changes and reload the saved configuration."


class FortiosDevice(NetDevice):
    """A FortiGate-VM64: running and saved configuration trees, the revert timer and the version counter."""

    platform: ClassVar[str] = "fortinet"

    def __init__(
        self,
        name: str,
        zones: dict[str, Zone],
        state_file: Path,
        *,
        time_scale: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        revert_timeout: int = 600,
    ) -> None:
        super().__init__(name, zones, state_file, time_scale=time_scale, clock=clock)
        self.running: Tree = baseline(zones, name, revert_timeout)
        self.saved_tree: Tree = copy.deepcopy(self.running)
        self.version = 1
        self.revert_deadline: float | None = None
        self.saved()

    def global_setting(self, key: str) -> str:
        """A ``system global`` setting of the running configuration."""
        return " ".join(self.running["system global"].settings.get(key, [""]))

    @property
    def hostname(self) -> str:
        """The running hostname (the prompt follows it at once)."""
        return self.global_setting("hostname") or self.name

    def show(self, paths: list[str] | None = None) -> str:
        """The configuration as ``show`` prints it, whole (with its header) or the named sections."""
        if paths is not None:
            return "\n".join(line for path in paths for line in render(self.running[path]))
        head = [HEADER, f"#conf_file_ver={self.version}", f"#buildno={BUILD}", "#global_vdom=1"]
        return "\n".join(head + [line for path in ORDER for line in render(self.running[path])])

    def running_config(self) -> str:
        """``show`` without the ``#conf_file_ver`` line, which changes with every edit."""
        return "\n".join(x for x in self.show().split("\n") if not x.startswith("#conf_file_ver=")) + "\n"

    def new_session(self, user: str) -> DeviceSession:
        """A CLI login at the top level."""
        return FortiosSession(self, user)

    def changed(self) -> bool:
        """Record a change of the running configuration; True if it is the first unsaved one (which, in
        revert mode, arms the revert timer)."""
        self.version += 1
        self.saved()
        if self.global_setting("cfg-save") != "revert" or self.revert_deadline is not None:
            return False
        seconds = int(self.global_setting("cfg-revert-timeout") or "600")
        self.revert_deadline = self.clock() + self.minutes(seconds / 60)
        return True

    def save(self) -> None:
        """``execute cfg save``: the running configuration becomes the saved one; no revert pending."""
        self.saved_tree = copy.deepcopy(self.running)
        self.revert_deadline = None

    def reload(self) -> None:
        """``execute cfg reload`` or the revert timer: the saved configuration comes back."""
        self.running = copy.deepcopy(self.saved_tree)
        self.revert_deadline = None
        self.version += 1
        self.saved()

    def tick(self, now: float) -> None:
        """Revert unsaved changes whose time is up, and let logins in again."""
        if self.revert_deadline is not None and now >= self.revert_deadline:
            self.reload()
            self.accepting = True


def grep(text: str, spec: str) -> str | Refusal:
    """FortiOS's ``| grep [-i] [-v] PATTERN`` over ``text``."""
    try:
        words = shlex.split(spec)
    except ValueError:
        return Refusal("parse", spec)
    if not words or words[0] != "grep" or len(words) < 2:
        return Refusal("parse", words[0] if words else "|")
    flags = {w for w in words[1:-1] if w.startswith("-")}
    pattern = re.compile(words[-1], re.IGNORECASE if "-i" in flags else 0)
    keep = "-v" not in flags
    return "\n".join(line for line in text.split("\n") if bool(pattern.search(line)) == keep)


class FortiosSession(DeviceSession):
    """One CLI login: the top level, a ``config`` section, or an ``edit`` inside a table section."""

    def __init__(self, device: FortiosDevice, user: str) -> None:
        super().__init__(device, user)
        self.fgt = device
        self.path: str | None = None
        self.key: str | None = None
        self.snapshot: Tree = {}  # the running tree when ``config`` was entered: what ``abort`` restores
        self.changes = 0
        self.asking = False  # "Do you want to continue? (y/n)" of ``execute cfg reload``

    def prompt(self) -> str:
        """``fw-fgt-01 # ``, ``fw-fgt-01 (policy) # ``, ``fw-fgt-01 (3) # `` (or the pending question)."""
        if self.asking:
            return "Do you want to continue? (y/n)"
        where = self.key if self.key is not None else (self.path.split()[-1] if self.path else "")
        return f"{self.fgt.hostname} ({where}) # " if where else f"{self.fgt.hostname} # "

    def handle(self, line: str) -> Reply:
        """Answer one line at the current level."""
        text = line.strip()
        if self.asking:
            self.asking = False
            if text.lower() == "y":
                self.fgt.reload()
                return Reply("Configuration reloaded.")
            return Reply()
        command, bar, filter_spec = text.partition("|")
        try:
            words = shlex.split(command)
        except ValueError:
            return Reply(Refusal("parse", command.split()[-1]).message())
        if not words:
            return Reply()
        if self.path is None:
            return self._top(words, filter_spec if bar else None)
        return self._section(words, filter_spec if bar else None)

    def _filtered(self, text: str, filter_spec: str | None) -> Reply:
        if filter_spec is None:
            return Reply(text)
        result = grep(text, filter_spec)
        return Reply(result.message() if isinstance(result, Refusal) else result)

    def _top(self, words: list[str], filter_spec: str | None) -> Reply:
        verb, rest = words[0], " ".join(words[1:])
        if verb == "config" and rest in self.fgt.running:
            self.path, self.snapshot = rest, copy.deepcopy(self.fgt.running)
            return Reply()
        if verb == "show":
            rest = rest.removeprefix("full-configuration").strip()
            if not rest:
                return self._filtered(self.fgt.show(), filter_spec)
            if rest in self.fgt.running:
                return self._filtered(self.fgt.show([rest]), filter_spec)
        if verb == "get" and rest in _GETTERS:
            return self._filtered(_GETTERS[rest](self.fgt), filter_spec)
        if words == ["execute", "cfg", "save"]:
            self.fgt.save()
            return Reply()
        if words == ["execute", "cfg", "reload"]:
            self.asking = True
            return Reply(RELOAD_WARNING)
        if words == ["exit"]:
            return Reply(close=True)
        bad = words[1] if len(words) > 1 and verb in ("config", "show", "get", "execute") else verb
        return Reply(Refusal("parse", bad).message())

    def _section(self, words: list[str], filter_spec: str | None) -> Reply:
        assert self.path is not None
        section = self.fgt.running[self.path]
        verb = words[0]
        if verb == "show":
            text = "\n".join(render(section, self.key))
            return self._filtered(text, filter_spec)
        if verb == "end":
            self.path = self.key = None
            if self.fgt.global_setting("cfg-save") == "automatic":
                self.fgt.save()
            return Reply()
        if verb == "abort":
            self.path = self.key = None
            if self.fgt.running != self.snapshot:
                self.fgt.running = self.snapshot
                self.fgt.changed()
            return Reply()
        if verb == "next" and section.table:
            self.key = None
            return Reply()
        if verb == "edit" and section.table and self.key is None and len(words) == 2:
            return self._edit(section, words[1])
        if verb == "delete" and section.table and self.key is None and len(words) == 2:
            return self._change(lambda: self._delete(section, words[1]), words[1])
        if verb in ("set", "unset") and len(words) >= 2 and (self.key is not None or not section.table):
            return self._change(lambda: self._set(section, words), words[1])
        return Reply(
            Refusal("parse", words[1] if verb in ("set", "unset") and len(words) > 1 else verb).message()
        )

    def _settings(self, section: Section) -> Settings:
        if self.key is None:
            return section.settings
        # a revert may have taken the entry away under this session: FortiOS would recreate it
        return section.entries.setdefault(self.key, {})

    def _edit(self, section: Section, key: str) -> Reply:
        if section.path in NUMBERED:
            if not key.isdigit():
                return Reply(Refusal("parse", key).message())
            if key == "0":
                key = str(max((int(k) for k in section.entries), default=0) + 1)
        if key in section.entries:
            self.key = key
            return Reply()

        def create() -> None:
            section.entries[key] = new_entry(section.path, key)[1]
            self.key = key

        return self._change(create, key)

    def _delete(self, section: Section, key: str) -> Refusal | None:
        if key not in section.entries:
            return Refusal("datasource", key)
        if referrers(self.fgt.running, section.path, key):
            return Refusal("used", key)
        del section.entries[key]
        return None

    def _set(self, section: Section, words: list[str]) -> Refusal | None:
        settings = self._settings(section)
        key, values = words[1], words[2:]
        if words[0] == "unset":
            if key not in KEYS.get(section.path, {}) or len(words) != 2:
                return Refusal("parse", key)
            settings.pop(key, None)
            return None
        if section.path == "system admin" and key == "password" and values[:1] != ["ENC"]:
            digest = hashlib.sha256(" ".join(values).encode()).hexdigest()[:60]
            values = ["ENC", f"SH2{digest}"]
        stored = check_setting(self.fgt.running, section.path, key, values)
        if isinstance(stored, Refusal):
            return stored
        settings[key] = stored
        ordered = in_schema_order(section.path, settings)
        settings.clear()
        settings.update(ordered)
        return None

    def _change(self, apply: Callable[[], Refusal | None], word: str) -> Reply:
        """Count a configuration line for the faults, apply it, and record the change."""
        self.changes += 1
        if self.changes == 2 and self.fgt.fire(REJECT_SECOND_LINE):
            return Reply(Refusal("parse", word).message())
        refusal = apply()
        if refusal is not None:
            return Reply(refusal.message())
        first_unsaved = self.fgt.changed()
        if self.changes == 1 and self.fgt.fire(DROP_AFTER_FIRST_LINE):
            return Reply(close=True)
        if first_unsaved and self.fgt.fire(NO_RETURN_AFTER_COMMIT):
            self.fgt.accepting = False
            return Reply(close=True)
        return Reply()


def _aligned(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{key:<20}: {value}" for key, value in pairs)


def _status(device: FortiosDevice) -> str:
    return "\n".join(
        [
            f"Version: FortiGate-VM64 v7.2.5,build{BUILD},230606 (GA.F)",
            "Virus-DB: 1.00000(2018-04-09 18:07)",
            "IPS-DB: 6.00741(2015-12-01 02:30)",
            "Serial-Number: FGVMEVLAB0000001",
            "License Status: Valid",
            "VM Resources: 1 CPU/1 allowed, 2007 MB RAM",
            "Log hard disk: Available",
            f"Hostname: {device.hostname}",
            "Private Encryption: Disable",
            "Operation Mode: NAT",
            "Current virtual domain: root",
            "Max number of virtual domains: 1",
            "Virtual domains status: 1 in NAT mode, 0 in TP mode",
            "Virtual domain configuration: disable",
            "FIPS-CC mode: disable",
            "Current HA mode: standalone",
            f"Branch point: {BUILD}",
            "Release Version Information: GA",
            "FortiOS x86-64: Yes",
            time.strftime("System time: %a %b %d %H:%M:%S %Y"),
            "Last reboot reason: warm reboot",
        ]
    )


def _global(device: FortiosDevice) -> str:
    settings = device.running["system global"].settings
    defaults = {"admintimeout": ["5"], "language": ["english"]}
    return _aligned([(k, " ".join(v)) for k, v in (defaults | settings).items()])


def _console(device: FortiosDevice) -> str:
    settings = device.running["system console"].settings
    values = {"mode": ["line"], "baudrate": ["9600"], "output": ["more"], "login": ["enable"]} | settings
    return _aligned([(k, " ".join(v)) for k, v in values.items()])


def _static_routes(device: FortiosDevice) -> str:
    """``get router info routing-table static``: the enabled static routes whose gateway is on their
    device's subnet (FortiOS leaves any other out of the routing table), by destination."""
    interfaces = device.running["system interface"].entries
    routes = []
    for settings in device.running["router static"].entries.values():
        dst = ipaddress.IPv4Network("/".join(settings.get("dst", ["0.0.0.0", "0.0.0.0"])))
        gateway, name = settings.get("gateway", ["0.0.0.0"])[0], settings.get("device", [""])[0]
        ip = interfaces.get(name, {}).get("ip")
        subnet = ipaddress.IPv4Interface("/".join(ip)).network if ip else None
        if (
            settings.get("status") == ["disable"]
            or subnet is None
            or ipaddress.IPv4Address(gateway) not in subnet
        ):
            continue
        distance = settings.get("distance", ["10"])[0]
        code = "S*" if dst.prefixlen == 0 else "S"
        routes.append((dst, f"{code:<8}{dst} [{distance}/0] via {gateway}, {name}, [1/0]"))
    return "\n".join(["Routing table for VRF=0", *(line for _, line in sorted(routes, key=lambda r: r[0]))])


_GETTERS: dict[str, Callable[[FortiosDevice], str]] = {
    "system status": _status,
    "system global": _global,
    "system console": _console,
    "router info routing-table static": _static_routes,
}
