"""Which reimage method may reimage which host, and the steps each declares (``reimage --plan``)."""

from __future__ import annotations

import pytest

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import Host
from remotehands.jobs import actions
from remotehands.reimage import methods
from remotehands.reimage.action import resolve


def host(
    name: str, kind: str, model: str | None = None, method: str | None = None, power: str = "pdu-outlet"
) -> Host:
    profile: dict[str, object] = {"type": power}
    if power == "pdu-outlet":
        profile.update(pdu="pdu-1", outlet=1)
    if power in ("ipmi", "redfish"):
        profile.update(address="10.0.0.9", credentials={"username": "admin", "password": "env:X"})
    return Host.model_validate(
        {
            "name": name,
            "kind": kind,
            "site": "lab1",
            "rack": "r1",
            "serial_number": "SER1",
            "mgmt_address": "10.0.0.1",
            "subscription": "provider",
            "power": profile,
            "model": model,
            "reimage_method": method,
        }
    )


def test_a_mac_defaults_to_erase_install_and_the_inventory_can_say_otherwise() -> None:
    assert methods.choose(host("mac-1", "mac-mini", "apple-silicon"), None).name == "erase-install"
    assert (
        methods.choose(host("mac-1", "mac-mini", "apple-silicon", method="mdm-erase"), None).name
        == "mdm-erase"
    )
    assert methods.choose(host("esx-1", "esxi", power="ipmi"), None).name == "pxe"  # servers default to pxe


@pytest.mark.parametrize(
    ("target", "method", "why"),
    [
        (host("mac-2", "mac-mini", "t2"), "netboot", "t2; this method needs intel-legacy"),
        (
            host("mac-3", "mac-studio", "apple-silicon"),
            "netboot",
            "apple-silicon; this method needs intel-legacy",
        ),
        (host("mac-4", "mac-pro", "intel-legacy"), "mdm-erase", "needs apple-silicon or t2"),
        (host("mac-5", "mac-mini", "t2"), "dfu-restore", "needs apple-silicon"),
        (host("mac-6", "mac-mini"), "erase-install", "no model in the inventory"),
        (host("esx-1", "esxi", power="ipmi"), "erase-install", "not a Mac"),
        (host("mac-7", "mac-mini", "t2"), "pxe", "is a Mac"),
        (host("esx-2", "esxi", power="ipmi"), "virtual-media", "no Redfish BMC"),
        (host("lin-1", "linux", power="manual"), "pxe", "no BMC to set the boot device"),
    ],
)
def test_methods_refuse_hosts_they_cannot_reimage(target: Host, method: str, why: str) -> None:
    assert methods.REFUSALS[method](target) is not None
    assert why in str(methods.REFUSALS[method](target))


def test_an_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(
        InvalidRequest, match="erase-install, mdm-erase, dfu-restore, netboot, pxe, virtual-media"
    ):
        methods.choose(host("mac-1", "mac-mini", "t2"), "reinstall")


def test_erase_install_declares_its_guarded_steps_in_order() -> None:
    names = [s.name for s in methods.choose(host("mac-1", "mac-mini", "t2"), None).steps()]
    assert names == [
        "check-approval",
        "check-identity",
        "ensure-installer",
        "start-install",
        "wait-new-os",
        "verify",
    ]
    # Identity is checked before the only step that erases.
    assert names.index("check-identity") < names.index("start-install")


def test_a_reimage_ticket_resolves_to_the_hosts_method() -> None:
    assert "reimage" in actions.names()
    assert resolve(host("mac-1", "mac-mini", "t2"), {"image": "x"}) == "reimage.erase-install"
    assert actions.get("reimage.erase-install").steps()[3].name == "start-install"
    with pytest.raises(InvalidRequest):
        resolve(host("mac-1", "mac-mini", "t2"), {"method": "netboot"})
