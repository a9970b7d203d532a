"""The ESXi stand-in: ``esxcli``, printing what ESXi 7/8 print, for the namespaces the playbooks use.

``system version get``, ``system maintenanceMode get|set``, ``system shutdown reboot``, ``system settings
advanced list|set``, ``software profile get|update`` and ``software sources profile list``. As on a real
host, ``software profile update`` refuses outside maintenance mode, the new profile runs only after
``system shutdown reboot`` (which also wants maintenance mode), and maintenance mode survives the reboot.
"""

from __future__ import annotations

import re
from typing import Any

VENDOR = "VMware, Inc."
# ESXi-8.0U3b-24280767-standard: version 8.0, update 3 (patch letter b), build 24280767.
_PROFILE = re.compile(
    r"^ESXi-(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:U(?P<update>\d+))?[a-z]?-(?P<build>\d+)-"
)
_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_FLAGS = {"--dry-run", "--no-hardware-warning", "--allow-downgrades", "--ok-to-remove", "--no-sig-check"}


class Usage(Exception):
    """An esxcli invocation the real one would reject; the message is what it prints."""


def esxcli(args: list[str], state: dict[str, Any]) -> int:
    """Run ``esxcli NAMESPACE... COMMAND [options]`` against ``state``; returns the exit status."""
    esxi = state["esxi"]
    words = [a for a in args if not a.startswith("-")]
    handlers = {
        ("system", "version", "get"): _version_get,
        ("system", "maintenanceMode", "get"): _mm_get,
        ("system", "maintenanceMode", "set"): _mm_set,
        ("system", "shutdown", "reboot"): _reboot,
        ("system", "settings", "advanced", "list"): _advanced_list,
        ("system", "settings", "advanced", "set"): _advanced_set,
        ("software", "profile", "get"): _profile_get,
        ("software", "profile", "update"): _profile_update,
        ("software", "sources", "profile", "list"): _sources_profile_list,
    }
    for path, handler in handlers.items():
        if tuple(words[: len(path)]) == path:
            try:
                return handler(esxi, _options(args[len(path) :]))
            except Usage as exc:
                print(str(exc))
                return 1
    print(f"Error: Unknown command or namespace {' '.join(words)}")
    return 1


def _options(args: list[str]) -> dict[str, str]:
    # esxcli takes --name=value, --name value and -x value; the canonical name is the long one.
    short = {
        "e": "enable",
        "p": "profile",
        "d": "depot",
        "o": "option",
        "i": "int-value",
        "s": "string-value",
    }
    short |= {"r": "reason", "m": "vsanmode", "t": "timeout"}
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _FLAGS:
            found[arg[2:]] = "true"
        elif arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            found[name] = value
        elif arg.startswith("-") and i + 1 < len(args):
            found[short.get(arg[1:], arg.lstrip("-"))] = args[i + 1]
            i += 1
        elif arg.startswith("-"):
            raise Usage(f"Error: Missing value for option {arg}")
        i += 1
    return found


def _require(options: dict[str, str], name: str) -> str:
    if name not in options:
        raise Usage(f"Error: Missing required parameter -{name[0]}|--{name}")
    return options[name]


def _version_get(esxi: dict[str, Any], options: dict[str, str]) -> int:
    print(f"   Product: VMware ESXi\n   Version: {esxi['version']}\n   Build: Releasebuild-{esxi['build']}")
    print(f"   Update: {esxi['update']}\n   Patch: {esxi['patch']}")
    return 0


def _mm_get(esxi: dict[str, Any], options: dict[str, str]) -> int:
    print("Enabled" if esxi["maintenance_mode"] else "Disabled")
    return 0


def _mm_set(esxi: dict[str, Any], options: dict[str, str]) -> int:
    value = _require(options, "enable").lower()
    if value not in _BOOL:
        raise Usage(
            f"Error: Invalid data constraint for parameter 'enable'. Expected a boolean, got '{value}'"
        )
    if esxi["maintenance_mode"] == _BOOL[value]:
        print(f"Maintenance mode is already {'enabled' if _BOOL[value] else 'disabled'}.")
        return 1
    esxi["maintenance_mode"] = _BOOL[value]
    return 0


def _reboot(esxi: dict[str, Any], options: dict[str, str]) -> int:
    _require(options, "reason")
    if not esxi["maintenance_mode"]:
        print("This operation requires the host to be in maintenance mode.")
        return 1
    if esxi["pending"]:
        esxi.update(_release(esxi["pending"]))
        esxi["pending"] = None
    esxi["boots"] += 1
    return 0


def _release(profile: str) -> dict[str, str]:
    found = _PROFILE.match(profile)
    if not found:
        return {}
    update = found["update"] or "0"
    version = f"{found['major']}.{found['minor']}.{update}"
    return {"version": version, "build": found["build"], "update": update, "patch": "0"}


def _advanced_list(esxi: dict[str, Any], options: dict[str, str]) -> int:
    path = options.get("option")
    settings: dict[str, dict[str, Any]] = esxi["advanced"]
    for name, setting in settings.items():
        if path in (None, name):
            _print_setting(name, setting)
    if path is not None and path not in settings:
        print(f"Unable to find option {path.rsplit('/', 1)[-1]}")
        return 1
    return 0


def _print_setting(name: str, setting: dict[str, Any]) -> None:
    integer = setting["type"] == "integer"
    print(f"   Path: {name}\n   Type: {setting['type']}")
    print(
        f"   Int Value: {setting['value'] if integer else 0}\n   Default Int Value: {setting['default'] if integer else 0}"
    )
    print(f"   Min Value: 0\n   Max Value: {setting['max']}")
    print(f"   String Value: {'' if integer else setting['value']}")
    print(f"   Default String Value: {'' if integer else setting['default']}")
    print(f"   Valid Characters: \n   Description: {setting['description']}\n")


def _advanced_set(esxi: dict[str, Any], options: dict[str, str]) -> int:
    path = _require(options, "option")
    setting = esxi["advanced"].get(path)
    if setting is None:
        print(f"Unable to find option {path.rsplit('/', 1)[-1]}")
        return 1
    if setting["type"] == "integer":
        raw = options.get("int-value")
        if raw is None or not raw.lstrip("-").isdigit():
            raise Usage(f"Option {path} is of type integer: give its value with -i|--int-value")
        if not 0 <= int(raw) <= setting["max"]:
            print(f"Invalid value {raw} for option {path}: must be between 0 and {setting['max']}")
            return 1
        setting["value"] = int(raw)
    else:
        if "string-value" not in options:
            raise Usage(f"Option {path} is of type string: give its value with -s|--string-value")
        setting["value"] = options["string-value"]
    return 0


def _profile_name(esxi: dict[str, Any]) -> str:
    return f"(Updated) {esxi['profile']}" if esxi["profile_updated"] else esxi["profile"]


def _profile_get(esxi: dict[str, Any], options: dict[str, str]) -> int:
    name = _profile_name(esxi)
    print(f"{name}\n   Name: {name}\n   Vendor: {VENDOR}\n   Creation Time: 2024-09-17T00:00:00")
    print("   Modification Time: 2024-09-17T00:00:00\n   Stateless Ready: True\n   Description: ")
    print(
        f"      {esxi['profile']}\n\n   VIBs: VMware_bootbank_esx-base_{esxi['version']}-0.0.{esxi['build']}"
    )
    return 0


def _depot_profiles(esxi: dict[str, Any], depot: str) -> list[str]:
    profiles: list[str] | None = esxi["depots"].get(depot)
    if profiles is None:
        url = depot if "://" in depot else f"zip:{depot}?index.xml"
        raise Usage(
            f" [MetadataDownloadError]\n Could not download from depot at {url}, skipping (('{url}', '',"
            f" \"Error extracting index.xml from {depot}: [Errno 2] No such file or directory: '{depot}'\"))\n"
            f"        url = {url}\n Please refer to the log file for more details."
        )
    return profiles


def _sources_profile_list(esxi: dict[str, Any], options: dict[str, str]) -> int:
    profiles = _depot_profiles(esxi, _require(options, "depot"))
    width = max(len("Name"), *(len(p) for p in profiles))
    print(f"{'Name':<{width}}  Vendor        Acceptance Level  Creation Time        Modification Time")
    print(f"{'-' * width}  ------------  ----------------  -------------------  -------------------")
    for profile in profiles:
        print(f"{profile:<{width}}  {VENDOR}  PartnerSupported  2024-09-17T00:00:00  2024-09-17T00:00:00")
    return 0


def _profile_update(esxi: dict[str, Any], options: dict[str, str]) -> int:
    profile, depot = _require(options, "profile"), _require(options, "depot")
    if profile not in _depot_profiles(esxi, depot):
        raise Usage(
            f" [NoMatchError]\n No image profile found with name '{profile}'\n        id = {profile}\n"
            " Please refer to the log file for more details."
        )
    release = _release(profile)
    new = f"{release.get('version', '0.0.0')}-0.0.{release.get('build', '0')}"
    if profile == esxi["profile"] and esxi["pending"] is None:
        print("Update Result\n   Message: Host is not changed.\n   Reboot Required: false")
        print("   VIBs Installed: \n   VIBs Removed: \n   VIBs Skipped: ")
        return 0
    if "dry-run" in options:
        print(
            "Update Result\n   Message: Dryrun only, host not changed. The following installers will be applied:"
        )
        print(f"   Reboot Required: true\n   VIBs Installed: VMware_bootbank_esx-base_{new}")
        return 0
    if not esxi["maintenance_mode"]:
        raise Usage(
            " [MaintenanceMode]\n MaintenanceMode error: The following VIBs on the host require maintenance"
            f" mode: VMware_bootbank_esx-base_{new}. Please put the host in maintenance mode to proceed.\n"
            " Please refer to the log file for more details."
        )
    print(
        "Update Result\n   Message: The update completed successfully, but the system needs to be rebooted"
        " for the changes to be effective.\n   Reboot Required: true"
    )
    print(
        f"   VIBs Installed: VMware_bootbank_esx-base_{new}\n"
        f"   VIBs Removed: VMware_bootbank_esx-base_{esxi['version']}-0.0.{esxi['build']}\n   VIBs Skipped: "
    )
    esxi["profile"], esxi["profile_updated"], esxi["pending"] = profile, True, profile
    return 0
