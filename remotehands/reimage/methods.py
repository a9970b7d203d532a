"""The reimage methods: which hosts each applies to, and its steps (declared per method)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import Host
from remotehands.jobs.steps import Step

MACS = ("mac-mini", "mac-studio", "mac-pro")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    refuses: Callable[[Host], str | None]  # why this method cannot reimage this host, or None
    steps: Callable[[], list[Step]]


def _mac_only(models: tuple[str, ...]) -> Callable[[Host], str | None]:
    def refuses(host: Host) -> str | None:
        if host.kind not in MACS:
            return f"{host.name} is a {host.kind}, not a Mac"
        if host.model is None:
            return f"{host.name} has no model in the inventory (apple-silicon, t2 or intel-legacy)"
        if host.model not in models:
            return f"{host.name} is {host.model}; this method needs {' or '.join(models)}"
        return None

    return refuses


def _x86(needs_redfish: bool) -> Callable[[Host], str | None]:
    def refuses(host: Host) -> str | None:
        if host.kind in MACS:
            return f"{host.name} is a Mac; use erase-install, mdm-erase, dfu-restore or netboot"
        types = {p.type for p in host.power_paths}
        if needs_redfish and "redfish" not in types:
            return f"{host.name} has no Redfish BMC (virtual media needs one)"
        if not needs_redfish and not types & {"ipmi", "redfish"}:
            return f"{host.name} has no BMC to set the boot device"
        return None

    return refuses


_METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    _METHODS[method.name] = method


def all_methods() -> dict[str, Method]:
    _load()
    return dict(_METHODS)


def choose(host: Host, requested: str | None) -> Method:
    """The method for ``host``: the one requested, else the inventory's ``reimage_method``, else the
    default for its kind. Raises ``InvalidRequest`` saying why a method cannot reimage this host."""
    _load()
    name = requested or host.reimage_method or ("erase-install" if host.kind in MACS else "pxe")
    if name not in REFUSALS:
        raise InvalidRequest(f"unknown reimage method {name!r}", fix="one of: " + ", ".join(REFUSALS))
    reason = REFUSALS[name](host)
    if reason:
        raise InvalidRequest(f"{name} cannot reimage {host.name}: {reason}", fix="choose another --method")
    method = _METHODS.get(name)
    if method is None:
        raise InvalidRequest(
            f"reimage method {name} is not available yet in this version of remotehands",
            fix="available: " + ", ".join(sorted(_METHODS)),
        )
    return method


REFUSALS: dict[str, Callable[[Host], str | None]] = {
    "erase-install": _mac_only(("apple-silicon", "t2", "intel-legacy")),
    "mdm-erase": _mac_only(("apple-silicon", "t2")),
    "dfu-restore": _mac_only(("apple-silicon",)),
    "netboot": _mac_only(("intel-legacy",)),
    "pxe": _x86(needs_redfish=False),
    "virtual-media": _x86(needs_redfish=True),
}


def _load() -> None:
    import remotehands.reimage.dfu_restore
    import remotehands.reimage.erase_install
    import remotehands.reimage.mdm_erase
    import remotehands.reimage.netboot
    import remotehands.reimage.x86  # noqa: F401
