"""``remotehands reimage HOST --ticket ID``: reinstall a host's OS as a journaled, verified job."""

from __future__ import annotations

import typer

from remotehands.cli.common import current_user, runtime
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import NotApproved, NotPermitted
from remotehands.inventory.fields import REIMAGE_METHODS
from remotehands.reimage import methods

METHOD_HELP = {
    "erase-install": "Macs with a running OS: startosinstall --eraseinstall",
    "mdm-erase": "T2 and Apple silicon Macs: EraseDevice through the MDM server",
    "dfu-restore": "Apple silicon, last resort: cfgutil restore from the paired controller Mac",
    "netboot": "legacy Intel Macs: bless --netboot, then a PDU power cycle",
    "pxe": "ESXi/Linux: boot PXE once, cycle, wait for the installer's callback",
    "virtual-media": "ESXi/Linux with Redfish: insert the ISO, boot CD once, cycle, callback, eject",
}
METHODS_TEXT = "; ".join(f"{name} ({METHOD_HELP[name]})" for name in REIMAGE_METHODS)


def reimage(
    host: str = typer.Argument(..., help="Inventory name of the host to reinstall."),
    ticket: str = typer.Option(None, "--ticket", help="The approved ticket asking for it (not for --plan)."),
    method: str = typer.Option(
        None,
        "--method",
        help=f"One of: {METHODS_TEXT}. Default: the host's reimage_method in the inventory, else "
        "erase-install (Macs) or pxe.",
    ),
    image: str = typer.Option(
        None, "--image", help="Image name: an images.<name> table in remotehands.toml."
    ),
    plan: bool = typer.Option(
        False, "--plan", help="Print the steps this host's reimage would take; act on nothing."
    ),
    timeout: float = typer.Option(4 * 3600, "--timeout", help="Seconds to follow the job before returning."),
    as_json: bool = JsonOption,
) -> None:
    """Reinstall a host's OS: identity checked before anything is erased, progress live, result verified."""
    rt = runtime()
    target = rt.inventory().host(host)
    chosen = methods.choose(target, method)
    if plan:
        steps = [
            {"index": i, "name": s.name, "description": s.description}
            for i, s in enumerate(chosen.steps(), 1)
        ]

        def render() -> None:
            say(f"reimage {target.name} by {chosen.name} ({chosen.summary}):", style="bold")
            for s in steps:
                say(f"  {s['index']}. {s['name']}: {s['description']}")

        emit({"host": target.name, "method": chosen.name, "image": image, "steps": steps}, as_json, render)
        return
    if not ticket:
        raise NotPermitted(
            "reimaging needs an approved ticket", fix="pass --ticket RH-n (or use --plan to look)"
        )
    from remotehands.cli.jobs_cmd import _exit_code, run_jobs
    from remotehands.jobs import store

    t = rt.tickets.get(ticket)
    request = t.wanted()
    if request.action != "reimage" or target.name not in request.targets:
        raise NotPermitted(
            f"{t.id} does not ask to reimage {target.name} (it asks for {request.action} on "
            f"{', '.join(request.targets)})",
            fix=f"open a ticket for reimage on {target.name}",
        )
    for flag, value in (("method", method), ("image", image)):
        asked = request.params.get(flag)
        if flag == "method":
            asked = methods.choose(target, str(asked) if asked else None).name
        if value and value != asked:
            raise NotPermitted(
                f"{t.id} was approved for {flag} {asked!r}, not {value!r}",
                fix=f"run it as approved, or open a ticket with {flag}: {value}",
            )
    approval = rt.tickets.approval(t.id)
    if not approval.approved:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    ids = store.create_jobs_for_ticket(
        rt.db, t, approval.approver, current_user(), only=frozenset({target.name}), inventory=rt.inventory()
    )
    data = run_jobs(rt, ids, quiet=as_json, timeout=timeout)
    emit({"ticket": t.id, "jobs": data}, as_json, lambda: None)
    raise typer.Exit(_exit_code(rt, ids))
