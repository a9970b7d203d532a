"""macOS stand-ins: ``sw_vers``, ``softwareupdate`` and ``pmset``, printing what the real tools print.

``softwareupdate`` offers, from the state's ``catalog``, the newest release of each major version above the
running one (as Apple's catalog does: a Mac on 14.3 is offered 14.4.1, not 14.4). Installing one with
``--restart`` makes it the running version; without, it waits in ``pending`` for a restart, as a real
macOS update does. Like the real tool it asks Apple silicon Macs (``owner_password`` set) for a volume
owner (``--user NAME --stdinpass``) and major upgrades for ``--agree-to-license``.
"""

from __future__ import annotations

import sys
from typing import Any

MACOS_NAMES = {
    "11": "Big Sur",
    "12": "Monterey",
    "13": "Ventura",
    "14": "Sonoma",
    "15": "Sequoia",
    "26": "Tahoe",
}
UPDATE_KIB = 1_632_464  # what a minor update weighs, roughly; a major upgrade is ten times that
INSTALLER_KIB = 13_298_221


def sw_vers(args: list[str], state: dict[str, Any]) -> int:
    """``sw_vers [-productName|-productVersion|-buildVersion]`` (one or two dashes, as macOS 11+)."""
    mac = state["mac"]
    values = {"productName": "macOS", "productVersion": mac["version"], "buildVersion": mac["build"]}
    if not args:
        print(f"ProductName:\t\tmacOS\nProductVersion:\t\t{mac['version']}\nBuildVersion:\t\t{mac['build']}")
        return 0
    key = args[0].lstrip("-")
    if len(args) != 1 or key not in values:
        print("usage: sw_vers [-productName|-productVersion|-buildVersion]", file=sys.stderr)
        return 1
    print(values[key])
    return 0


def softwareupdate(args: list[str], state: dict[str, Any]) -> int:
    """``softwareupdate -l | -i LABEL... [-R] [--agree-to-license] [--user U --stdinpass] |
    --list-full-installers | --fetch-full-installer [--full-installer-version V]``."""
    mac = state["mac"]
    if "--list-full-installers" in args:
        return _list_installers(mac)
    if "--fetch-full-installer" in args:
        return _fetch_installer(mac, _option(args, "--full-installer-version"))
    if args[:1] in (["-l"], ["--list"]):
        return _list(mac)
    if args[:1] in (["-i"], ["--install"]):
        return _install(mac, args[1:])
    print(
        "usage: softwareupdate <cmd> [<args> ...]\n\n** Manage Updates:\n\t-l | --list\t\tList all appropriate"
        " update\n\t-i | --install\t\tInstall\n\t\t<label> ...\tspecific updates\n\t-R | --restart\t\t"
        "Automatically restart (or shut down) if required to complete installation.",
        file=sys.stderr,
    )
    return 1


def pmset(args: list[str], state: dict[str, Any]) -> int:
    """``pmset -g`` lists the settings; ``pmset [-a|-b|-c|-u] SETTING VALUE ...`` changes them."""
    settings: dict[str, Any] = state["mac"]["pmset"]
    if args[:1] == ["-g"]:
        print("System-wide power settings:\nCurrently in use:")
        for key, value in settings.items():
            print(f" {key:<20} {value}")
        return 0
    pairs = args[1:] if args[:1] in (["-a"], ["-b"], ["-c"], ["-u"]) else args
    if not pairs or len(pairs) % 2 or any(not v.isdigit() for v in pairs[1::2]):
        print("Usage: pmset <-a|-b|-c|-u> <setting> <value> ... | pmset -g", file=sys.stderr)
        return 1
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        settings[key] = int(value)
    return 0


def version_key(version: str) -> tuple[int, ...]:
    """``"14.4.1"`` as ``(14, 4, 1)``, for ordering releases."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _title(release: dict[str, str]) -> str:
    return f"macOS {MACOS_NAMES.get(release['version'].split('.')[0], '')} {release['version']}"


def _label(release: dict[str, str]) -> str:
    return f"{_title(release)}-{release['build']}"


def _available(mac: dict[str, Any]) -> list[dict[str, str]]:
    running = version_key(mac["version"])
    newest: dict[int, dict[str, str]] = {}
    for release in mac["catalog"]:
        key = version_key(release["version"])
        if key > running and (key[0] not in newest or key > version_key(newest[key[0]]["version"])):
            newest[key[0]] = release
    return [newest[major] for major in sorted(newest)]


def _list(mac: dict[str, Any]) -> int:
    print("Software Update Tool\n\nFinding available software", file=sys.stderr)
    offered = _available(mac)
    if not offered:
        print("No new software available.", file=sys.stderr)
        return 0
    print("Software Update found the following new or updated software:")
    major = version_key(mac["version"])[0]
    for release in offered:
        size = UPDATE_KIB if version_key(release["version"])[0] == major else UPDATE_KIB * 10
        print(f"* Label: {_label(release)}")
        print(
            f"\tTitle: {_title(release)}, Version: {release['version']}, Size: {size}KiB, "
            "Recommended: YES, Action: restart, "
        )
    return 0


def _install(mac: dict[str, Any], args: list[str]) -> int:
    flags = {"-R", "--restart", "--agree-to-license", "--stdinpass", "--force", "--no-scan"}
    user = _option(args, "--user")
    labels = [
        a
        for i, a in enumerate(args)
        if a not in flags and not a.startswith("--user") and args[i - 1 : i] != ["--user"]
    ]
    print("Software Update Tool\n\nFinding available software", file=sys.stderr)
    offered = {_label(r): r for r in _available(mac)}
    if not labels or any(label not in offered for label in labels):
        for label in labels:
            if label not in offered:
                print(f"{label}: No such update", file=sys.stderr)
        print("No updates are available.", file=sys.stderr)
        return 1
    release = max((offered[label] for label in labels), key=lambda r: version_key(r["version"]))
    if mac.get("owner_password") is not None:
        password = sys.stdin.readline().rstrip("\n") if "--stdinpass" in args else None
        if user != mac["owner_user"] or password != mac["owner_password"]:
            print("Failed to authenticate", file=sys.stderr)
            return 1
    if (
        version_key(release["version"])[0] > version_key(mac["version"])[0]
        and "--agree-to-license" not in args
    ):
        print(
            "To continue installing the software you must agree to the terms of the software license agreement"
            " (run again with --agree-to-license).",
            file=sys.stderr,
        )
        return 1
    title = _title(release)
    print(f"\nDownloading {title}\nDownloaded: {title}\nInstalling {title}\nDone with {title}")
    mac["pending"] = release
    if "-R" in args or "--restart" in args:
        print("Restarting now.")
        _restart(mac)
    else:
        print(
            "Done.\n\nYou have installed one or more updates that requires that you restart your\ncomputer."
        )
    return 0


def _restart(mac: dict[str, Any]) -> None:
    if mac.get("pending"):
        mac["version"], mac["build"] = mac["pending"]["version"], mac["pending"]["build"]
        mac["pending"] = None
    mac["restarts"] += 1


def _list_installers(mac: dict[str, Any]) -> int:
    print("Finding available software")
    print("Software Update found the following full installers:")
    for release in sorted(mac["catalog"], key=lambda r: version_key(r["version"]), reverse=True):
        name = MACOS_NAMES.get(release["version"].split(".")[0], "")
        print(
            f"* Title: macOS {name}, Version: {release['version']}, Size: {INSTALLER_KIB}KiB, "
            f"Build: {release['build']}, Deferred: NO"
        )
    return 0


def _fetch_installer(mac: dict[str, Any], wanted: str | None) -> int:
    releases = sorted(mac["catalog"], key=lambda r: version_key(r["version"]))
    release = next((r for r in releases if r["version"] == wanted), None) if wanted else releases[-1]
    print(f"Scanning for {wanted} installer" if wanted else "Scanning for installers")
    if release is None:
        print("Install failed with error: Update not found", file=sys.stderr)
        return 1
    for step in range(0, 101, 25):
        print(f"Installing: {step:.2f}%")
    if release["version"] not in mac["installers"]:
        mac["installers"].append(release["version"])
    print("Install finished successfully")
    return 0


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
