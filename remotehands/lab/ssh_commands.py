"""What the simulated lab hosts of ``remotehands.lab.ssh_host`` answer over SSH ``exec``: the dispatcher
(``sudo``, "command not found") and the commands that report what a host is and how it is set.

Macs: ``sw_vers``, ``ioreg -c IOPlatformExpertDevice``, ``system_profiler SPHardwareDataType [-json]``,
``pmset -g`` / ``pmset -a autorestart 1`` (root), ``profiles status -type enrollment``, plus the commands of
``remotehands.lab.ssh_mac_install`` (softwareupdate, ls /Applications, startosinstall, bless, macvdmtool,
cfgutil). ESXi: ``esxcli system version get``, ``esxcli hardware platform get``, ``vim-cmd
hostsvc/hostsummary``, ``vmware -v[l]``. Linux: ``cat /etc/os-release``, ``cat
/sys/class/dmi/id/product_serial`` (root), ``uname -r``. The SAN storage commands of both (``esxcli
storage``, partedUtil, vmkfstools; multipath, LVM, resize2fs, ...) are ``remotehands.lab.ssh_storage``'s.
Everywhere: ``echo``, ``true``, ``hostname``, ``whoami``, ``uname``. Anything else exits 127 with "command not found", as the host's shell says it.
``sudo`` (not on ESXi) is passwordless, as providers configure it for automation: ``-S`` reads nothing.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from remotehands.lab.ssh_host_model import RELEASES, version_key
from remotehands.lab.ssh_mac_install import MAC_INSTALL
from remotehands.lab.ssh_storage import ESXI_STORAGE, esxcli_storage
from remotehands.lab.ssh_storage_linux import LINUX_STORAGE

if TYPE_CHECKING:
    from remotehands.lab.ssh_host import SshHosts
    from remotehands.lab.ssh_host_model import SimHost


_SHELLS = {"macos": "zsh", "esxi": "sh", "linux": "bash"}


class HostDown(Exception):
    """The host went down (power off, install) while a command ran: its connections are gone."""


@dataclass
class Exec:
    """One command being run: the lab, the host, the logged-in user and the channel's streams."""

    lab: SshHosts
    host: SimHost
    user: str
    write: Callable[[str], None]
    write_err: Callable[[str], None]
    read_line: Callable[[float], str | None]  # a line of stdin (without its newline), None at timeout
    root: bool = False
    program: str = ""  # argv[0] as given
    command: str = ""  # its base name, for the command log
    args: list[str] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)  # run once the exit status is sent

    def out(self, *lines: str) -> None:
        """Write ``lines`` to stdout."""
        self.write("".join(line + "\n" for line in lines))

    def fail(self, message: str, code: int = 1) -> int:
        """Write ``message`` to stderr and return ``code``."""
        self.write_err(message + "\n")
        return code

    def option(self, *names: str) -> str | None:
        """The value after the first of ``names`` in the arguments, or None."""
        for i, arg in enumerate(self.args[:-1]):
            if arg in names:
                return self.args[i + 1]
        return None

    def not_found(self) -> int:
        """What the host's shell says for a program it does not have (exit 127)."""
        if self.host.family == "macos":
            return self.fail(f"zsh:1: command not found: {self.program}", 127)
        return self.fail(f"{_SHELLS[self.host.family]}: {self.program}: command not found", 127)


Handler = Callable[[Exec], int]


def run_command(ctx: Exec, line: str) -> int:
    """Run the ``exec`` command ``line`` on ``ctx.host``; returns its exit status."""
    family = ctx.host.family
    try:
        argv = shlex.split(line)
    except ValueError:
        ctx.command = "sh"
        return ctx.fail(f"{_SHELLS[family]}: unmatched quote", 2)
    ctx.root = ctx.user == "root"
    if argv[:1] == ["sudo"] and family != "esxi":
        argv = argv[1:]
        while argv and argv[0].startswith("-"):
            option = argv.pop(0)
            if option in ("-u", "-g", "-h", "-p"):
                argv = argv[1:]  # -u root is the only user there is; the others change nothing here
        ctx.root = True
        if not argv:
            ctx.command = "sudo"
            return ctx.fail("usage: sudo [-nS] [-u user] command")
    if not argv:
        return 0
    ctx.program, ctx.command, ctx.args = argv[0], argv[0].rsplit("/", 1)[-1], argv[1:]
    handler = _HANDLERS[family].get(ctx.command) or _COMMON.get(ctx.command)
    if handler is None or ("/" in ctx.program and ctx.command != "startosinstall"):
        return ctx.not_found()
    return handler(ctx)


# -- everywhere ----------------------------------------------------------------------------------------------


def _uname(ctx: Exec) -> int:
    h = ctx.host
    if h.family == "macos":
        major, minor = (*version_key(h.version), 0, 0)[:2]
        system, release = "Darwin", f"{major + 9}.{minor}.0" if major >= 11 else "19.6.0"
        machine = "arm64" if h.model == "apple-silicon" else "x86_64"
    else:
        system, release = ("VMkernel", h.version) if h.family == "esxi" else ("Linux", h.build)
        machine = "x86_64"
    fields = {"-s": system, "-n": h.name, "-r": release, "-m": machine}
    if "-a" in ctx.args:
        ctx.out(f"{system} {h.name} {release} {machine}")
    else:
        ctx.out(" ".join(fields[a] for a in ctx.args if a in fields) or system)
    return 0


def _say(text: Callable[[Exec], str]) -> Handler:
    def handler(ctx: Exec) -> int:
        ctx.out(text(ctx))
        return 0

    return handler


_COMMON: dict[str, Handler] = {
    "true": lambda ctx: 0,
    "echo": _say(lambda ctx: " ".join(ctx.args)),
    "hostname": _say(lambda ctx: ctx.host.name),
    "whoami": _say(lambda ctx: "root" if ctx.root else ctx.user),
    "uname": _uname,
}


# -- Macs ----------------------------------------------------------------------------------------------------


def _sw_vers(ctx: Exec) -> int:
    h = ctx.host
    values = {"-productName": "macOS", "-productVersion": h.version, "-buildVersion": h.build}
    if not ctx.args:
        ctx.out("ProductName:\t\tmacOS", f"ProductVersion:\t\t{h.version}", f"BuildVersion:\t\t{h.build}")
    elif len(ctx.args) == 1 and ctx.args[0] in values:
        ctx.out(values[ctx.args[0]])
    else:
        return ctx.fail("usage: sw_vers [-productName|-productVersion|-buildVersion]")
    return 0


def _ioreg(ctx: Exec) -> int:
    h, hw = ctx.host, ctx.host.hardware
    if ctx.option("-c") != "IOPlatformExpertDevice":
        ctx.out("+-o Root  <class IORegistryEntry, id 0x100000100, retain 30>")
        return 0
    pad = "" if any(a.startswith("-r") for a in ctx.args) else "  "
    if pad:
        ctx.out("+-o Root  <class IORegistryEntry, id 0x100000100, retain 30>")
    ctx.out(
        f"{pad}+-o {hw.board}  <class IOPlatformExpertDevice, id 0x100000110, registered, matched, active, "
        "busy 0 (4822 ms), retain 42>",
        f"{pad}  {{",
        f'{pad}    "IOPlatformSerialNumber" = "{h.reported_serial}"',
        f'{pad}    "model" = <"{hw.machine_model}">',
        f'{pad}    "IOPlatformUUID" = "{_platform_uuid(h)}"',
        f'{pad}    "manufacturer" = <"Apple Inc.">',
        f'{pad}    "product-name" = <"{hw.machine_name}">',
        f"{pad}  }}",
        "",
    )
    return 0


def _platform_uuid(host: SimHost) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host.name}.{host.serial}.lab")).upper()


def _system_profiler(ctx: Exec) -> int:
    h, hw = ctx.host, ctx.host.hardware
    if "SPHardwareDataType" not in ctx.args:
        return 0  # like the real tool for a data type it does not know
    apple = h.model == "apple-silicon"
    data: dict[str, str] = {"_name": "hardware_overview", "boot_rom_version": "10151.121.1"}
    data |= (
        {"chip_type": hw.processor}
        if apple
        else {"cpu_type": hw.processor, "current_processor_speed": hw.speed}
    )
    data |= {"machine_model": hw.machine_model, "machine_name": hw.machine_name, "physical_memory": hw.memory}
    data |= {"platform_UUID": _platform_uuid(h), "serial_number": h.reported_serial}
    if "-json" in ctx.args:
        ctx.out(json.dumps({"SPHardwareDataType": [data]}, indent=2, separators=(",", " : ")))
        return 0
    chip = f"Chip: {hw.processor}" if apple else f"Processor Name: {hw.processor}"
    ctx.out("Hardware:", "", "    Hardware Overview:", "", f"      Model Name: {hw.machine_name}")
    ctx.out(f"      Model Identifier: {hw.machine_model}", f"      {chip}", f"      Memory: {hw.memory}")
    ctx.out(
        f"      Serial Number (system): {h.reported_serial}", f"      Hardware UUID: {_platform_uuid(h)}", ""
    )
    return 0


_PMSET = (
    ("standby", "0"),
    ("Sleep On Power Button", "1"),
    ("autorestart", None),
    ("hibernatefile", "/var/vm/sleepimage"),
    ("powernap", "0"),
    ("disksleep", "0"),
    ("sleep", "0"),
    ("hibernatemode", "0"),
    ("ttyskeepawake", "1"),
    ("displaysleep", "10"),
    ("tcpkeepalive", "1"),
    ("womp", "1"),
)


def _pmset(ctx: Exec) -> int:
    args = ctx.args
    if args[:1] == ["-g"]:
        ctx.out("System-wide power settings:", "Currently in use:")
        for key, value in _PMSET:
            ctx.out(f" {key:<20} {int(ctx.host.autorestart) if value is None else value}")
        return 0
    pairs = args[1:] if args[:1] in (["-a"], ["-b"], ["-c"], ["-u"]) else args
    if not pairs or len(pairs) % 2 or any(not v.isdigit() for v in pairs[1::2]):
        return ctx.fail("Usage: pmset <-a|-b|-c|-u> <setting> <value> ... | pmset -g")
    if not ctx.root:
        return ctx.fail("pmset: Must be run as root.")
    with ctx.lab.lock:
        for key, value in zip(pairs[::2], pairs[1::2], strict=True):
            if key == "autorestart":
                ctx.host.autorestart = value != "0"
    return 0


def _profiles(ctx: Exec) -> int:
    if ctx.args[:1] != ["status"] or ctx.option("-type") != "enrollment":
        return ctx.fail("usage: profiles status -type enrollment")
    h = ctx.host
    ctx.out(f"Enrolled via DEP: {'Yes' if h.dep_enrolled else 'No'}")
    ctx.out("MDM enrollment: Yes (User Approved)" if h.mdm_enrolled else "MDM enrollment: No")
    return 0


_MAC: dict[str, Handler] = {
    **MAC_INSTALL,
    "sw_vers": _sw_vers,
    "ioreg": _ioreg,
    "system_profiler": _system_profiler,
    "pmset": _pmset,
    "profiles": _profiles,
}


# -- ESXi and Linux ------------------------------------------------------------------------------------------

ESXI_PLATFORM = ("PowerEdge R650", "Dell Inc.")


def _esxcli(ctx: Exec) -> int:
    h, what = ctx.host, " ".join(ctx.args)
    if what == "system version get":
        update = h.version.split(".")[2] if h.version.count(".") >= 2 else "0"
        ctx.out("   Product: VMware ESXi", f"   Version: {h.version}", f"   Build: Releasebuild-{h.build}")
        ctx.out(f"   Update: {update}", "   Patch: 0")
    elif what == "hardware platform get":
        ctx.out(
            "Platform Information", f"   UUID: {_platform_uuid(h)}", f"   Product Name: {ESXI_PLATFORM[0]}"
        )
        ctx.out(f"   Vendor Name: {ESXI_PLATFORM[1]}", f"   Serial Number: {h.reported_serial}")
        ctx.out(
            f"   Enclosure Serial Number: {h.reported_serial}",
            "   BIOS Asset Tag: ",
            "   IPMI Supported: true",
        )
    elif ctx.args[:1] == ["storage"]:
        return esxcli_storage(ctx)
    else:
        return ctx.fail(f"Error: Unknown command or namespace {what}")
    return 0


def _vim_cmd(ctx: Exec) -> int:
    h = ctx.host
    if ctx.args != ["hostsvc/hostsummary"]:
        return ctx.fail("usage: vim-cmd hostsvc/hostsummary")
    ctx.out(
        "(vim.host.Summary) {",
        "   host = 'vim.HostSystem:ha-host',",
        "   hardware = (vim.host.Summary.HardwareSummary) {",
        f'      vendor = "{ESXI_PLATFORM[1]}",',
        f'      model = "{ESXI_PLATFORM[0]}",',
        f'      uuid = "{_platform_uuid(h).lower()}",',
        "      otherIdentifyingInfo = (vim.host.SystemIdentificationInfo) [",
        "         (vim.host.SystemIdentificationInfo) {",
        f'            identifierValue = "{h.reported_serial}",',
        '            identifierType = (vim.ElementDescription) { key = "ServiceTag" }',
        "         }",
        "      ],",
        "   },",
        "   config = (vim.host.Summary.ConfigSummary) {",
        f'      name = "{h.name}",',
        "      product = (vim.AboutInfo) {",
        f'         fullName = "VMware ESXi {h.version} build-{h.build}",',
        f'         version = "{h.version}",',
        f'         build = "{h.build}",',
        "      },",
        "   },",
        '   overallStatus = "green",',
        "}",
    )
    return 0


def _vmware(ctx: Exec) -> int:
    h = ctx.host
    if ctx.args not in (["-v"], ["-vl"], ["-l"]):
        return ctx.fail("usage: vmware -v | -l | -vl")
    if "l" not in ctx.args[0]:
        ctx.out(f"VMware ESXi {h.version} build-{h.build}")
    else:
        major, minor, update = (*version_key(h.version), 0, 0, 0)[:3]
        ctx.out(f"VMware ESXi {h.version} build-{h.build}", f"VMware ESXi {major}.{minor} Update {update}")
    return 0


def _cat(ctx: Exec) -> int:
    h = ctx.host
    release = next((r for r in RELEASES if r.family == "linux" and r.version == h.version), None)
    label = release.label if release is not None else h.version
    files = {
        "/etc/hostname": h.name,
        "/etc/os-release": "\n".join(
            (
                f'PRETTY_NAME="Ubuntu {label.split(" (")[0]}"',
                'NAME="Ubuntu"',
                f'VERSION_ID="{h.version}"',
                f'VERSION="{label}"',
                f"VERSION_CODENAME={label.split('(')[-1].split()[0].lower() if '(' in label else 'ubuntu'}",
                "ID=ubuntu",
                "ID_LIKE=debian",
                'HOME_URL="https://www.ubuntu.com/"',
            )
        ),
        "/sys/class/dmi/id/product_serial": h.reported_serial,
    }
    for path in ctx.args:
        if path not in files:
            return ctx.fail(f"cat: {path}: No such file or directory")
        if path.endswith("product_serial") and not ctx.root:
            return ctx.fail(f"cat: {path}: Permission denied")
        ctx.out(files[path])
    return 0


_HANDLERS: dict[str, dict[str, Handler]] = {
    "macos": _MAC,
    "esxi": {"esxcli": _esxcli, "vim-cmd": _vim_cmd, "vmware": _vmware, **ESXI_STORAGE},
    "linux": {"cat": _cat, **LINUX_STORAGE},
}
