"""What the change pipeline does when something goes wrong mid-change: put the device back (``rollback``),
prove it, and say so on the job; or, for a device that stopped answering, wait for its own revert timer
before calling an operator. Every function here raises the job's outcome (or returns the ``Wait``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NoReturn

from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    NeedsOperator,
    RemoteHandsError,
    VerificationFailed,
)
from remotehands.inventory.models import NetworkDevice
from remotehands.jobs.steps import StepContext, Wait
from remotehands.jobs.store import now
from remotehands.network.kinds import kind_of
from remotehands.network.platforms import Platform, platform
from remotehands.network.rollback import Outcome, diff, fingerprint, leave_config, restore, shown
from remotehands.network.session import NetSession, open_session
from remotehands.network.templates import Change

REVERT_POLL = timedelta(seconds=10)  # how often a device that stopped answering is tried again
REVERT_MARGIN = timedelta(minutes=1)  # past its revert timer before an operator is called


def timer_undid(ctx: StepContext, device: NetworkDevice, session: NetSession) -> NoReturn:
    """The change is gone before it was kept: the device's revert timer ran out. Prove where it is."""
    spec = platform(device.platform)
    config = session.running_config()
    ctx.attach(f"{device.name}-session-confirm.log", session.log())
    if fingerprint(spec, config) == ctx.data["backup_sha"]:
        why = (
            f"its {device.confirm_minutes}-minute revert timer ran out and the device rolled it back"
            if spec.safety != "inverse-lines"
            else "someone removed it"
        )
        raise VerificationFailed(
            f"the change was gone from {device.name} before it could be kept: {why}; the running config "
            "equals the backup",
            fix="retry the job; if the device is slow, raise confirm_minutes in the inventory",
        )
    attach_diff(ctx, device, spec, config)
    raise NeedsOperator(
        f"the change is not on {device.name} any more and its config differs from the backup (diff attached)",
        fix=f"compare {device.name} with the attached backup and put it right by hand",
    )


def sent_change(ctx: StepContext) -> Change:
    """The change as the backup step rendered it from the unmasked config."""
    lines = tuple(str(line) for line in ctx.data.get("lines", ()))
    inverse = tuple(ctx.data.get("inverse", (None,) * len(lines)))
    return Change(lines, inverse)


def attach_diff(ctx: StepContext, device: NetworkDevice, spec: Platform, config: str) -> None:
    text = diff(ctx.data["backup"], shown(spec, config), device.name)
    ctx.attach(f"{device.name}-diff-unresolved.txt", text.encode())


def proven(
    ctx: StepContext,
    device: NetworkDevice,
    outcome: Outcome,
    what: str,
    *,
    error: type[RemoteHandsError] = DeviceRefused,
) -> NoReturn:
    """Raise the failure: ``error`` when the device is proven back at the backup, else ``NeedsOperator``."""
    if outcome.equal:
        kind_of(ctx.action).abandoned(ctx, device)
        raise error(
            f"{what}; {outcome.how}: the running config of {device.name} equals the backup "
            f"(sha256 {ctx.data['backup_sha'][:12]})",
            fix="correct the request and open a new ticket" if error is DeviceRefused else "check the device",
        )
    attach_diff(ctx, device, platform(device.platform), outcome.config)
    raise NeedsOperator(
        f"{what}; {outcome.how}, but the running config of {device.name} still differs from the backup "
        "(the diff is on the ticket)",
        fix="compare the device with the attached backup and put it right by hand, then cancel or retry the job",
    )


def recover(ctx: StepContext, device: NetworkDevice, change: Change, what: str) -> Wait:
    """The session failed mid-change: log in again, roll back, prove. A device with a revert timer that
    does not answer is waited for until its timer must have fired (a change that cut its management path
    is undone by the device itself); any other failure on the way is for an operator."""
    try:
        with open_session(device) as session:
            leave_config(session)
            outcome = restore(session, ctx.data["backup_sha"], change, ctx.ticket_id)
            ctx.attach(f"{device.name}-session-recovery.log", session.log())
    except DeviceUnreachable as exc:
        if platform(device.platform).safety == "inverse-lines":
            live_and_unreachable(device, f"{what}, and {device.name} does not answer since ({exc})")
        by = now() + timedelta(minutes=device.confirm_minutes) + REVERT_MARGIN
        ctx.data["revert_by"], ctx.data["lost"] = by.isoformat(), what
        return Wait(by if by < now() + REVERT_POLL else now() + REVERT_POLL, waiting_for_revert(device, by))
    except RemoteHandsError as exc:
        live_and_unreachable(device, f"{what}, and rolling back failed too ({exc})")
    proven(ctx, device, outcome, what)


def waiting_for_revert(device: NetworkDevice, by: datetime) -> str:
    return (
        f"{device.name} stopped answering after the change; waiting for its {device.confirm_minutes}-minute "
        f"revert timer (until {by:%H:%M:%S} UTC) to prove the rollback"
    )


def await_revert(ctx: StepContext, device: NetworkDevice) -> Wait:
    """Poll a device that stopped answering after the change until it answers (then roll back if its timer
    has not, and prove) or its timer must long have fired (then an operator)."""
    by = datetime.fromisoformat(ctx.data["revert_by"])
    what = f"{ctx.data.get('lost', 'the session failed')}; {device.name} stopped answering"
    try:
        with open_session(device) as session:
            leave_config(session)
            outcome = restore(session, ctx.data["backup_sha"], sent_change(ctx), ctx.ticket_id)
            ctx.attach(f"{device.name}-session-recovery.log", session.log())
    except DeviceUnreachable as exc:
        if now() < by:
            return Wait(min(by, now() + REVERT_POLL), waiting_for_revert(device, by))
        live_and_unreachable(device, f"{what} and still does not answer ({exc})")
    except RemoteHandsError as exc:
        live_and_unreachable(device, f"{what}, and rolling back failed ({exc})")
    proven(ctx, device, outcome, f"{what} until its revert timer ran")


def live_and_unreachable(device: NetworkDevice, what: str) -> NoReturn:
    """The change may be live on a device we cannot read: what the device will do by itself, for the ticket."""
    spec = platform(device.platform)
    if spec.safety == "inverse-lines":
        then = "an ASA has no revert timer: the change may be live and unsaved"
    else:
        then = f"its {device.confirm_minutes}-minute revert timer undoes a change that was not confirmed"
    raise NeedsOperator(
        f"{what}; {then}",
        fix=f"reach {device.name} (out of band if need be) and compare it with the attached backup, then retry "
        "or cancel the job",
    )
