"""The commands that reinstall a simulated lab Mac (``remotehands.lab.ssh_host``) or change how it boots:
``softwareupdate --fetch-full-installer``, ``ls /Applications``, ``startosinstall``, ``bless --netboot``, and on
a controller Mac paired with a target over USB-C, ``macvdmtool dfu`` and ``cfgutil list|restore``.

Durations are simulated seconds (``SshHosts.time_scale`` makes them real ones); an install itself is
``SshHosts.begin_install``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from remotehands.lab.ssh_host_model import MACOS_NAMES, RELEASES, Release, installer_app, version_key

if TYPE_CHECKING:
    from remotehands.lab.ssh_commands import Exec
    from remotehands.lab.ssh_host_model import SimHost

STDIN_TIMEOUT_S = 5.0  # real seconds a command waits for a line on stdin (startosinstall --stdinpass)
FETCH_SECONDS = 600.0  # simulated: softwareupdate downloading a full installer
PREPARE_SECONDS = 120.0  # simulated: startosinstall preparing before the restart


def _softwareupdate(ctx: Exec) -> int:
    h = ctx.host
    supported = [
        r for r in RELEASES if r.family == "macos" and version_key(r.version)[0] <= h.hardware.max_macos
    ]
    if "--list-full-installers" in ctx.args:
        ctx.out("Finding available software", "Software Update found the following full installers:")
        for r in reversed(supported):
            ctx.out(
                f"* Title: macOS {MACOS_NAMES[r.version.split('.')[0]]}, Version: {r.version}, Build: {r.build}"
            )
        return 0
    if "--fetch-full-installer" not in ctx.args:
        return ctx.fail("usage: softwareupdate --fetch-full-installer [--full-installer-version VERSION]")
    wanted = ctx.option("--full-installer-version")
    ctx.out(f"Scanning for {wanted} installer" if wanted else "Scanning for installers")
    release = next((r for r in supported if r.version == wanted), None) if wanted else supported[-1]
    if release is None or "installer_missing" in h.faults:
        return ctx.fail("Install failed with error: Update not found")
    for step in range(11):
        ctx.lab.sim_sleep(h, FETCH_SECONDS / 11)
        ctx.out(f"Installing: {step * 10:.2f}%")
    with ctx.lab.lock:
        h.installers[installer_app(release.version)] = release
    ctx.out("Install finished successfully")
    return 0


_APPS = ("App Store.app", "Automator.app", "Calculator.app", "Safari.app", "System Settings.app", "Utilities")


def _ls(ctx: Exec) -> int:
    paths = [a.rstrip("/") or "/" for a in ctx.args if not a.startswith("-")]
    if paths != ["/Applications"]:
        return ctx.fail(f"ls: {paths[0] if paths else '.'}: No such file or directory")
    ctx.out(*sorted([*_APPS, *_installers(ctx.host)]))
    return 0


def _installers(host: SimHost) -> dict[str, Release]:
    return {} if "installer_missing" in host.faults else dict(host.installers)


_OSINSTALL_FLAGS = {"--eraseinstall", "--agreetolicense", "--nointeraction", "--stdinpass", "--passprompt"}
_OSINSTALL_FLAGS |= {"--forcequitapps", "--preservecontainer"}
_OSINSTALL_VALUES = {
    "--user",
    "--installpackage",
    "--volume",
    "--newvolumename",
    "--rebootdelay",
    "--pidtosignal",
}


def _startosinstall(ctx: Exec) -> int:
    h, installers = ctx.host, _installers(ctx.host)
    match = re.fullmatch(
        r"/Applications/(Install macOS [^/]+\.app)/Contents/Resources/startosinstall", ctx.program
    )
    if match is not None and match.group(1) in installers:
        release = installers[match.group(1)]
    elif ctx.program == "startosinstall" and installers:
        release = max(installers.values(), key=lambda r: version_key(r.version))
    elif "/" in ctx.program:
        return ctx.fail(f"zsh:1: no such file or directory: {ctx.program}", 127)
    else:
        return ctx.not_found()
    flags: set[str] = set()
    args = list(ctx.args)
    while args:
        arg = args.pop(0)
        if arg in _OSINSTALL_VALUES and args:
            args.pop(0)
        elif arg in _OSINSTALL_FLAGS:
            flags.add(arg)
        else:
            return ctx.fail(f"Error: unrecognized option: {arg}")
    if not ctx.root:
        return ctx.fail("startosinstall: This tool must be run as root.")
    if "--agreetolicense" not in flags:
        return ctx.fail("Error: you must agree to the license to install macOS: add --agreetolicense.")
    if h.model == "apple-silicon":
        user = ctx.option("--user")
        if not user or not flags & {"--stdinpass", "--passprompt"}:
            return ctx.fail(
                "Error: could not get authorization: this Mac needs a volume owner's credentials; "
                "pass --user NAME and --stdinpass (or --passprompt)."
            )
        password = ctx.read_line(STDIN_TIMEOUT_S)
        if password is None or not ctx.lab.check_password(h, user, password):
            return ctx.fail(
                f"Error: could not get authorization: the password for volume owner {user} is incorrect."
            )
    erase = "--eraseinstall" in flags
    if not erase and version_key(release.version) < version_key(h.version):
        return ctx.fail("Error: this installer is older than the installed macOS: add --eraseinstall.")
    ctx.out(
        "By using the agreetolicense option, you are agreeing that you have run this tool with the license only "
        "option and have read and agreed to the terms.",
        "If you do not agree, press CTRL-C and cancel this process immediately.",
        "Preparing to run macOS Installer...",
    )
    for step in range(5):
        ctx.lab.sim_sleep(h, PREPARE_SECONDS / 5)
        ctx.out(f"Preparing: {(step + 1) * 20:.1f}%")
    ctx.out("Waiting to restart...")
    method = "startosinstall" if erase else "upgrade"
    ctx.after.append(
        lambda: ctx.lab.begin_install(
            h.name, release.build, version=release.version, erase=erase, method=method
        )
    )
    return 0


def _bless(ctx: Exec) -> int:
    server = ctx.option("--server") or ""
    if "--netboot" not in ctx.args or not server.startswith("bsdp://"):
        return ctx.fail("usage: bless --netboot --server bsdp://ADDRESS [--nextonly]")
    if not ctx.root:
        return ctx.fail("bless: must be run as root")
    if ctx.host.model == "apple-silicon":
        return ctx.fail("bless: NetBoot is not supported on Mac computers with Apple silicon", 3)
    if ctx.host.model == "t2":
        return ctx.fail(
            "Could not set boot device property: 0xe00002e2\n"
            "bless: NetBoot is not supported on Mac computers with the Apple T2 Security Chip",
            3,
        )
    with ctx.lab.lock:
        ctx.host.next_boot, ctx.host.netboot_server = "netboot", server
    return 0


def _macvdmtool(ctx: Exec) -> int:
    if ctx.args != ["dfu"]:
        return ctx.fail("usage: macvdmtool dfu")
    if not ctx.root:
        return ctx.fail("macvdmtool: must be run as root")
    if ctx.host.model != "apple-silicon":
        return ctx.fail("macvdmtool: this tool needs a Mac with Apple silicon")
    ctx.out(f"Mac type: {ctx.host.hardware.board}", "Looking for HPM devices...")
    target = ctx.lab.paired_target(ctx.host)
    if target is None or target.model != "apple-silicon" or not target.powered():
        return ctx.fail("No connected Mac with Apple silicon found on the DFU port")
    ctx.out(
        "Found: IOService:/AppleARMPE/arm-io/AppleT811xIO/i2c0/hpmBusManager/hpm0/AppleHPMARM",
        "Connection: Source",
        "Status: DFP",
        "Unlocking... OK",
        "Entering DBMa mode... Status: DBMa",
        "Rebooting target into DFU mode... OK",
        "Exiting DBMa mode... OK",
    )
    ctx.lab.enter_dfu(target.name)
    return 0


def _cfgutil(ctx: Exec) -> int:
    target = ctx.lab.paired_target(ctx.host)
    in_dfu = target is not None and target.phase == "dfu"
    wanted = ctx.option("-e", "--ecid")
    if in_dfu and target is not None and wanted is not None and _number(wanted) != target.ecid:
        in_dfu = False  # a device with another ECID was asked for
    if "list" in ctx.args:
        if in_dfu and target is not None:
            model, ecid = target.hardware.machine_model, f"0x{target.ecid:X}"
            ctx.out(f"Type: {model}\tECID: {ecid}\tUDID: N/A\tLocation: 0x100000\tName: N/A")
        return 0
    if "restore" not in ctx.args:
        return ctx.fail("usage: cfgutil [--ecid ECID] list | restore -i IPSW")
    ipsw = ctx.option("-i", "-I") or ""
    image = re.search(r"_(\d+(?:\.\d+)+)_(\d{2}[A-Z]\d+[a-z]?)_Restore\.ipsw$", ipsw)
    if image is None:
        return ctx.fail(f"cfgutil: error: {ipsw or 'no IPSW given'}: not a restore image")
    if not in_dfu or target is None:
        return ctx.fail("cfgutil: error: No devices found.")
    ctx.out(f"Restoring {ipsw.rsplit('/', 1)[-1]} to device 0x{target.ecid:X}...")
    done = threading.Event()
    ctx.lab.begin_install(target.name, image.group(2), done.set, version=image.group(1), method="dfu-restore")
    if not done.wait(2 * ctx.lab.install_seconds * ctx.lab.time_scale + 1.0):
        return ctx.fail("cfgutil: error: The device did not finish restoring.")
    ctx.out("Restore succeeded.")
    return 0


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


MAC_INSTALL: dict[str, Callable[[Exec], int]] = {
    "softwareupdate": _softwareupdate,
    "ls": _ls,
    "startosinstall": _startosinstall,
    "bless": _bless,
    "macvdmtool": _macvdmtool,
    "cfgutil": _cfgutil,
}
