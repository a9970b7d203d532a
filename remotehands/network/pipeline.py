"""The one change pipeline every firewall platform runs (``net.firewall_rule``); the platform differences are
data (``platforms``) and syntax (``templates``).

1. ``net-precheck``: inputs valid, the device's change window open, the rule not already there (then every
   later step does nothing and the job succeeds with "already present");
2. ``net-backup``: the running config read, its fingerprint kept, a masked copy attached to the ticket, the
   exact lines to send (and their inverses) rendered from the unmasked config and kept in the job;
3. ``net-apply``: the lines sent one by one under the platform's safety net; a rejected line, a dropped
   session or a silent device rolls the device back and proves it equals the backup (``rollback``);
4. ``net-verify``: the running config shows the change (and ASA's packet-tracer, or the routing table for
   routes, agrees); otherwise roll back;
5. ``net-confirm``: keep and save the change, read it back once more; the diff and the session logs go to the
   ticket.

A failure whose rollback is proven ends the job as failed, saying so; one whose rollback cannot be proven,
or a device that stops answering once the change is live, ends it as needs_operator with what is known.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    NeedsOperator,
    NotPermitted,
    RemoteHandsError,
    VerificationFailed,
)
from remotehands.inventory.models import ChangeWindow, NetworkDevice
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.store import now
from remotehands.network.kinds import NetChange, kind_of
from remotehands.network.platforms import Platform, platform
from remotehands.network.recovery import (
    attach_diff,
    await_revert,
    live_and_unreachable,
    proven,
    recover,
    sent_change,
    timer_undid,
)
from remotehands.network.rollback import diff, fingerprint, leave_config, restore, shown
from remotehands.network.session import NetSession, open_session

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _device(ctx: StepContext) -> NetworkDevice:
    return ctx.runtime.inventory().network_device(ctx.target)


def _change(ctx: StepContext, device: NetworkDevice) -> NetChange:
    return kind_of(ctx.action).change(ctx, device)


def _noop(ctx: StepContext) -> Done | None:
    if ctx.data.get("noop"):
        return Done(f"nothing to do: {ctx.data['noop']}", quiet=True)
    return None


def check_window(window: ChangeWindow | None, timezone: str, at: datetime) -> str | None:
    """None when ``at`` is inside ``window`` (in the site's ``timezone``), else why not, for the ticket."""
    if window is None:
        return None
    local = at.astimezone(ZoneInfo(timezone))
    minute = local.hour * 60 + local.minute
    start = int(window.start[:2]) * 60 + int(window.start[3:])
    end = int(window.end[:2]) * 60 + int(window.end[3:])
    today, yesterday = WEEKDAYS[local.weekday()], WEEKDAYS[(local.weekday() - 1) % 7]
    if start <= end:
        inside = today in window.days and start <= minute < end
    else:  # spans midnight: opened today in the evening, or yesterday and not yet closed
        inside = (today in window.days and minute >= start) or (yesterday in window.days and minute < end)
    if inside:
        return None
    return (
        f"outside the change window ({','.join(window.days)} {window.start}-{window.end} {timezone}); "
        f"it is {local:%a %H:%M} there"
    )


def _require_window(ctx: StepContext, device: NetworkDevice) -> None:
    timezone = ctx.runtime.inventory().sites[device.site].timezone
    closed = check_window(device.change_window, timezone, now())
    if closed:
        raise NotPermitted(
            f"{device.name}: {closed}; nothing was sent",
            fix="run the job inside the window, or change change_window in the inventory for an emergency",
        )


class NetPrecheck(Step):
    name = "net-precheck"
    description = "check the request, the change window and whether the rule is already there"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``InvalidRequest`` for a bad rule, ``NotPermitted`` outside the change window,
        ``DeviceRefused`` when the device is not set up for a safe change."""
        device = _device(ctx)
        kind = kind_of(ctx.action)
        spec = platform(device.platform)
        _require_window(ctx, device)
        kind.change(ctx, device)  # the request parses before anything is taken from the IP plan
        prepared = kind.prepare(ctx, device)
        rule = kind.change(ctx, device)
        try:
            with open_session(device) as session:
                for command, expected, fix in spec.preflight:
                    if not re.search(expected, session.show(command)):
                        raise DeviceRefused(f"{device.name} is not ready for a safe change", fix=fix)
                config = session.running_config()
            rule.render(device, config)  # renders now: a change the platform cannot express fails here
        except RemoteHandsError as exc:
            if not exc.retryable:  # the job ends here: give back what prepare took (a retry takes it again)
                kind.abandoned(ctx, device)
            raise
        said = f"; {prepared}" if prepared else ""
        if rule.is_done(device, config):
            where = "already present on" if rule.op == "add" else "not on"
            ctx.data["noop"] = f"{rule.name} ({rule.describe()}) is {where} {device.name}"
            kept = kind.kept(ctx, device)
            said += f"; {kept}" if kept else ""
            return Done(f"{ctx.data['noop']}: already in the wanted state, nothing to change{said}")
        return Done(f"{rule.op} {rule.name}: {rule.describe()} on {device.name} ({device.platform}){said}")


class NetBackup(Step):
    name = "net-backup"
    description = "read the running config, keep its fingerprint and attach it (secrets masked)"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Also renders the change from the unmasked config: the lines and their inverses are kept in the
        job, so a rollback after a crash never re-renders them from the masked copy."""
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        spec = platform(device.platform)
        with open_session(device) as session:
            config = session.running_config()
        change = _change(ctx, device).render(device, config)
        ctx.data["backup_sha"] = fingerprint(spec, config)
        ctx.data["backup"] = shown(spec, config)
        ctx.data["lines"] = list(change.lines)
        ctx.data["inverse"] = list(change.inverse)
        ctx.attach(f"{device.name}-running-before.cfg", ctx.data["backup"].encode())
        lines = ctx.data["backup"].count("\n")
        return Done(f"backup of {device.name}: {lines} lines, sha256 {ctx.data['backup_sha'][:12]}")


class NetApply(Step):
    name = "net-apply"
    description = "send the change under the platform's safety net; on any failure roll back and prove it"
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done | Wait:
        """Raises ``DeviceRefused`` (rejected, rolled back and proven), ``NeedsOperator`` (not proven);
        waits while a device that stopped answering after the change may still be reverting by itself."""
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        spec = platform(device.platform)
        if ctx.data.get("revert_by"):
            return await_revert(ctx, device)
        _require_window(ctx, device)  # a retry after a crash may come late
        values = {"minutes": device.confirm_minutes, "ticket": ctx.ticket_id}
        change = sent_change(ctx)
        sent = 0
        session: NetSession | None = None
        sending = False  # until the first line goes out, a failure is a plain retry
        try:
            with open_session(device) as session:
                if fingerprint(spec, session.running_config()) != ctx.data["backup_sha"]:
                    raise DeviceRefused(
                        f"the running config of {device.name} changed since the backup (someone else is "
                        "changing it); nothing was sent",
                        fix="find out who, then retry the job (it takes a new backup)",
                    )
                sending = True
                try:
                    if spec.config_enter:
                        _checked(session, spec.config_enter.format(**values), "entering configuration")
                    for sent, line in enumerate(change.lines, start=1):
                        _checked(session, line, f"line {sent} of {len(change.lines)}")
                    for command in (*spec.check, *spec.commit):
                        _checked(session, command.format(**values), command.split()[0], commit=True)
                    session.exit_config()
                except _Rejected as rejected:
                    ctx.attach(f"{device.name}-session-apply.log", session.log())
                    leave_config(session)
                    outcome = restore(session, ctx.data["backup_sha"], change, ctx.ticket_id)
                    what = f"{rejected.where} {rejected.line!r} was rejected: {rejected.error}"
                    proven(ctx, device, outcome, what)
                ctx.attach(f"{device.name}-session-apply.log", session.log())
        except DeviceUnreachable as exc:
            if not sending:
                raise
            if session is not None:
                ctx.attach(f"{device.name}-session-apply.log", session.log())
            return recover(
                ctx, device, change, f"the session failed at line {sent} of {len(change.lines)} ({exc})"
            )
        return Done(f"sent {len(change.lines)} line(s) to {device.name} under {spec.safety}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        """A worker died while sending: the backup, the full change, or half of it (rolled back now)."""
        if ctx.data.get("noop"):
            return Reconciled(Verdict.DONE, "nothing to do")
        device = _device(ctx)
        rule = _change(ctx, device)
        spec = platform(device.platform)
        with open_session(device) as session:
            config = session.running_config()
            if fingerprint(spec, config) == ctx.data["backup_sha"]:
                return Reconciled(
                    Verdict.RETRY, f"{device.name} still equals the backup: nothing took effect"
                )
            if rule.is_done(device, config):
                return Reconciled(Verdict.DONE, f"{device.name} shows the whole change")
            leave_config(session)
            outcome = restore(session, ctx.data["backup_sha"], sent_change(ctx), ctx.ticket_id)
            ctx.attach(f"{device.name}-session-recovery.log", session.log())
        if outcome.equal:
            return Reconciled(
                Verdict.RETRY,
                f"half of the change was on {device.name}; {outcome.how}; config equals the backup",
            )
        attach_diff(ctx, device, spec, outcome.config)
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"half of the change is on {device.name} and the rollback did not restore the backup; the diff is "
            "on the ticket",
        )


class NetVerify(Step):
    name = "net-verify"
    description = (
        "read the change back (ASA: packet-tracer; routes: the routing table); roll back if it does not show"
    )
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``VerificationFailed`` (rolled back and proven) or ``NeedsOperator``."""
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        rule = _change(ctx, device)
        try:
            with open_session(device) as session:
                config = session.running_config()
                problem = None
                if not rule.is_done(device, config):
                    problem = f"the running config of {device.name} does not show the change"
                probes = rule.probes(device)
                for command, expected in probes if problem is None else []:
                    output = session.show(command)
                    if not re.search(expected, output, re.MULTILINE):
                        last = output.strip().splitlines()[-1:] or ["nothing"]
                        problem = f"'{command}' does not show it (it ends: {last[0]})"
                        break
                if problem is None:
                    ctx.attach(f"{device.name}-session-verify.log", session.log())
                    how = f" and {len(probes)} show command(s) prove it" if probes else ""
                    if rule.op == "add":
                        return Done(f"{device.name} shows {rule.name}{how}")
                    return Done(f"{rule.name} is gone from {device.name}")
                outcome = restore(session, ctx.data["backup_sha"], sent_change(ctx), ctx.ticket_id)
                ctx.attach(f"{device.name}-session-verify.log", session.log())
        except DeviceUnreachable as exc:
            live_and_unreachable(device, f"verifying the change failed: {exc}")
        assert problem is not None
        proven(ctx, device, outcome, problem, error=VerificationFailed)


class NetConfirm(Step):
    name = "net-confirm"
    description = "keep and save the change, read it back; attach the diff and the session log"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``VerificationFailed`` when the device's timer undid the change first (proven back at the
        backup), ``NeedsOperator`` when confirming or saving fails with the change live."""
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        rule = _change(ctx, device)
        spec = platform(device.platform)
        values = {"minutes": device.confirm_minutes, "ticket": ctx.ticket_id}
        try:
            with open_session(device) as session:
                if not rule.is_done(device, session.running_config()):
                    timer_undid(ctx, device, session)
                try:
                    _confirm_and_save(session, spec, values)
                except _Rejected as rejected:
                    ctx.attach(f"{device.name}-session-confirm.log", session.log())
                    raise NeedsOperator(
                        f"{device.name} refused {rejected.line!r} ({rejected.error}) with the change live",
                        fix=f"confirm or undo the change on {device.name} by hand against the attached backup",
                    ) from None
                after = session.running_config()
                if not rule.is_done(device, after):
                    timer_undid(ctx, device, session)
                ctx.attach(f"{device.name}-session-confirm.log", session.log())
        except DeviceUnreachable as exc:
            live_and_unreachable(device, f"confirming the change failed: {exc}")
        kept = kind_of(ctx.action).kept(ctx, device)
        changes = diff(ctx.data["backup"], shown(spec, after), device.name)
        ctx.attach(f"{device.name}-change.diff", changes.encode())
        added = sum(1 for line in changes.splitlines() if line.startswith("+") and not line.startswith("+++"))
        removed = sum(
            1 for line in changes.splitlines() if line.startswith("-") and not line.startswith("---")
        )
        said = f"; {kept}" if kept else ""
        return Done(
            f"{rule.op} {rule.name} confirmed and saved on {device.name} (+{added} -{removed} lines){said}"
        )


def _confirm_and_save(session: NetSession, spec: Platform, values: dict[str, object]) -> None:
    if spec.confirm_in_config and spec.config_enter:
        _checked(session, spec.config_enter.format(**values), "entering configuration")
    for command in spec.confirm:
        output = session.send(command.format(**values), timeout=spec.commit_timeout)
        error = spec.errors(output)
        # "nothing pending" is fine only because the change was just read back as present
        if error and not (spec.nothing_pending and spec.nothing_pending in output):
            raise _Rejected("confirm", command, error)
    if spec.confirm_in_config:
        session.exit_config()
    for command in spec.save:
        output = session.send(command, timeout=spec.commit_timeout)
        error = spec.errors(output)
        if error:
            raise _Rejected("save", command, error)


class _Rejected(Exception):
    def __init__(self, where: str, line: str, error: str) -> None:
        super().__init__(error)
        self.where, self.line, self.error = where, line, error


def _checked(session: NetSession, line: str, where: str, *, commit: bool = False) -> str:
    spec = session.platform
    output = session.send(line, timeout=spec.commit_timeout if commit else None)
    error = spec.errors(output)
    if error:
        raise _Rejected(where, line, error)
    return output


def change_steps() -> list[Step]:
    """The steps of every network action (the kind of change follows the job's action)."""
    return [CheckApproval(), NetPrecheck(), NetBackup(), NetApply(), NetVerify(), NetConfirm()]
