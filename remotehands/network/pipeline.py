"""The one change pipeline every firewall platform runs (``net.firewall_rule``); the platform differences are
data (``platforms``) and syntax (``templates``).

1. ``net-precheck``: inputs valid, the device's change window open, the rule not already there (then every
   later step does nothing and the job succeeds with "already present");
2. ``net-backup``: the running config read, its fingerprint kept, a masked copy attached to the ticket;
3. ``net-apply``: the lines sent one by one under the platform's safety net; a rejected line or a dropped
   session rolls the device back and proves it equals the backup (``rollback``);
4. ``net-verify``: the running config shows the rule (and ASA's packet-tracer agrees); otherwise roll back;
5. ``net-confirm``: keep and save the change; the diff and the session log go to the ticket.

A failure whose rollback is proven ends the job as failed, saying so; one whose rollback cannot be proven
ends it as needs_operator with the diff on the ticket.
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
    VerificationFailed,
)
from remotehands.inventory.models import ChangeWindow, NetworkDevice
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict
from remotehands.jobs.store import now
from remotehands.network import templates
from remotehands.network.platforms import platform
from remotehands.network.rollback import Outcome, diff, fingerprint, leave_config, restore, shown
from remotehands.network.rules import FirewallRule, parse_rule
from remotehands.network.session import NetSession, SessionDropped, open_session
from remotehands.network.templates import Change

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _device(ctx: StepContext) -> NetworkDevice:
    return ctx.runtime.inventory().network_device(ctx.target)


def _rule(ctx: StepContext, device: NetworkDevice) -> FirewallRule:
    return parse_rule(ctx.params, device, ctx.ticket_id)


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


class NetPrecheck(Step):
    name = "net-precheck"
    description = "check the request, the change window and whether the rule is already there"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        device = _device(ctx)
        rule = _rule(ctx, device)
        spec = platform(device.platform)
        timezone = ctx.runtime.inventory().sites[device.site].timezone
        closed = check_window(device.change_window, timezone, now())
        if closed:
            raise NotPermitted(
                f"{device.name}: {closed}",
                fix="run the job inside the window, or change change_window in the inventory for an emergency",
            )
        with open_session(device) as session:
            for command, expected, fix in spec.preflight:
                if not re.search(expected, session.show(command)):
                    raise DeviceRefused(f"{device.name} is not ready for a safe change", fix=fix)
            config = session.running_config()
        templates.change(rule, device, config)  # renders now: a rule the platform cannot express fails here
        if rule.op == "add" and templates.is_present(rule, device, config):
            ctx.data["noop"] = f"{rule.name} ({rule.describe()}) is already present on {device.name}"
        elif rule.op == "remove" and templates.is_absent(rule, device, config):
            ctx.data["noop"] = f"{rule.name} ({rule.describe()}) is not on {device.name}"
        if ctx.data.get("noop"):
            return Done(f"{ctx.data['noop']}: already in the wanted state, nothing to change")
        return Done(f"{rule.op} {rule.name}: {rule.describe()} on {device.name} ({device.platform})")


class NetBackup(Step):
    name = "net-backup"
    description = "read the running config, keep its fingerprint and attach it (secrets masked)"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        spec = platform(device.platform)
        with open_session(device) as session:
            config = session.running_config()
        ctx.data["backup_sha"] = fingerprint(spec, config)
        ctx.data["backup"] = shown(spec, config)
        ctx.attach(f"{device.name}-running-before.cfg", ctx.data["backup"].encode())
        lines = ctx.data["backup"].count("\n")
        return Done(f"backup of {device.name}: {lines} lines, sha256 {ctx.data['backup_sha'][:12]}")


class NetApply(Step):
    name = "net-apply"
    description = "send the change under the platform's safety net; on any failure roll back and prove it"
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        rule = _rule(ctx, device)
        spec = platform(device.platform)
        values = {"minutes": device.confirm_minutes, "ticket": ctx.ticket_id}
        sent = 0
        change = Change((), ())
        try:
            with open_session(device) as session:
                config = session.running_config()
                if fingerprint(spec, config) != ctx.data["backup_sha"]:
                    raise DeviceRefused(
                        f"the running config of {device.name} changed since the backup (someone else is "
                        "changing it); nothing was sent",
                        fix="find out who, then retry the job (it takes a new backup)",
                    )
                change = templates.change(rule, device, config)
                ctx.data["lines"] = list(change.lines)
                try:
                    session.enter_config(**values)
                    for sent, line in enumerate(change.lines, start=1):
                        _checked(session, line, f"line {sent} of {len(change.lines)}")
                    for command in (*spec.check, *spec.commit):
                        _checked(session, command.format(**values), command.split()[0], commit=True)
                    session.exit_config()
                except _Rejected as rejected:
                    ctx.attach(f"{device.name}-session-apply.log", session.log())
                    leave_config(session)
                    outcome = restore(session, ctx.data["backup_sha"], change, ctx.ticket_id)
                    _proven(
                        ctx,
                        device,
                        outcome,
                        f"{rejected.where} {rejected.line!r} was rejected: {rejected.error}",
                    )
                ctx.attach(f"{device.name}-session-apply.log", session.log())
        except SessionDropped as exc:
            _after_drop(
                ctx, device, change, f"the session dropped at line {sent} of {len(change.lines)} ({exc})"
            )
        return Done(f"sent {len(change.lines)} line(s) to {device.name} under {spec.safety}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        """A worker died while sending: the backup, the full change, or half of it (rolled back now)."""
        if ctx.data.get("noop"):
            return Reconciled(Verdict.DONE, "nothing to do")
        device = _device(ctx)
        rule = _rule(ctx, device)
        spec = platform(device.platform)
        with open_session(device) as session:
            config = session.running_config()
            if fingerprint(spec, config) == ctx.data["backup_sha"]:
                return Reconciled(
                    Verdict.RETRY, f"{device.name} still equals the backup: nothing took effect"
                )
            done = templates.is_done(rule, device, config)
            if done:
                return Reconciled(Verdict.DONE, f"{device.name} shows the whole change")
            change = _sent_change(ctx, rule, device)
            leave_config(session)
            outcome = restore(session, ctx.data["backup_sha"], change, ctx.ticket_id)
        if outcome.equal:
            return Reconciled(
                Verdict.RETRY,
                f"half of the change was on {device.name}; {outcome.how}; config equals the backup",
            )
        ctx.attach(
            f"{device.name}-diff-unresolved.txt",
            diff(ctx.data["backup"], shown(spec, outcome.config), device.name).encode(),
        )
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"half of the change is on {device.name} and the rollback did not restore the backup; the diff is on the ticket",
        )


class NetVerify(Step):
    name = "net-verify"
    description = "read the change back (and trace a packet on ASA); roll back if it does not show"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        rule = _rule(ctx, device)
        with open_session(device) as session:
            config = session.running_config()
            shows = templates.is_done(rule, device, config)
            problem = None if shows else f"the running config of {device.name} does not show the change"
            trace = templates.packet_trace(rule, device)
            if problem is None and trace is not None:
                allowed = templates.trace_allowed(session.show(trace))
                if allowed is not (rule.action == "permit"):
                    problem = (
                        f"'{trace}' says {'allow' if allowed else 'drop' if allowed is False else 'nothing'}"
                    )
            if problem is None:
                ctx.attach(f"{device.name}-session-verify.log", session.log())
                how = " and packet-tracer allows it" if trace else ""
                return Done(
                    f"{device.name} shows {rule.name}{how}"
                    if rule.op == "add"
                    else f"{rule.name} is gone from {device.name}"
                )
            outcome = restore(session, ctx.data["backup_sha"], _sent_change(ctx, rule, device), ctx.ticket_id)
            ctx.attach(f"{device.name}-session-verify.log", session.log())
        _proven(ctx, device, outcome, problem, error=VerificationFailed)
        raise AssertionError("unreachable")  # _proven always raises


class NetConfirm(Step):
    name = "net-confirm"
    description = "keep and save the change; attach the diff and the session log"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done:
        if (skip := _noop(ctx)) is not None:
            return skip
        device = _device(ctx)
        rule = _rule(ctx, device)
        spec = platform(device.platform)
        values = {"minutes": device.confirm_minutes, "ticket": ctx.ticket_id}
        with open_session(device) as session:
            config = session.running_config()
            shows = templates.is_done(rule, device, config)
            if not shows:
                raise VerificationFailed(
                    f"the change was gone from {device.name} before it could be confirmed: its "
                    f"{device.confirm_minutes}-minute revert timer ran out and the device rolled it back",
                    fix="retry the job; if the device is slow, raise confirm_minutes in the inventory",
                )
            if spec.confirm_in_config:
                session.enter_config(**values)
            for command in spec.confirm:
                output = session.send(command.format(**values), timeout=spec.commit_timeout)
                error = spec.errors(output)
                if error and not (spec.nothing_pending and spec.nothing_pending in output):
                    raise DeviceRefused(f"{device.name} refused {command!r}: {error}", fix="check the device")
            if spec.confirm_in_config:
                session.exit_config()
            for command in spec.save:
                output = session.send(command, timeout=spec.commit_timeout)
                if spec.errors(output):
                    raise DeviceRefused(
                        f"{device.name} could not save: {spec.errors(output)}", fix="check its storage"
                    )
            after = session.running_config()
            ctx.attach(f"{device.name}-session-confirm.log", session.log())
        changes = diff(ctx.data["backup"], shown(spec, after), device.name)
        ctx.attach(f"{device.name}-change.diff", changes.encode())
        added = sum(1 for line in changes.splitlines() if line.startswith("+") and not line.startswith("+++"))
        removed = sum(
            1 for line in changes.splitlines() if line.startswith("-") and not line.startswith("---")
        )
        return Done(f"{rule.op} {rule.name} confirmed and saved on {device.name} (+{added} -{removed} lines)")


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


def _sent_change(ctx: StepContext, rule: FirewallRule, device: NetworkDevice) -> Change:
    """The change as the apply step rendered it from the backup (its inverse lines are what ASA undoes)."""
    lines = tuple(ctx.data.get("lines", ()))
    rendered = templates.change(rule, device, ctx.data.get("backup", ""))
    if rendered.lines == lines or not lines:
        return rendered
    return Change(lines, tuple(None for _ in lines))


def _proven(
    ctx: StepContext,
    device: NetworkDevice,
    outcome: Outcome,
    what: str,
    *,
    error: type[Exception] = DeviceRefused,
) -> None:
    """Raise the failure: ``error`` when the device is proven back at the backup, else ``NeedsOperator``."""
    spec = platform(device.platform)
    if outcome.equal:
        raise error(  # type: ignore[call-arg]
            f"{what}; {outcome.how}: the running config of {device.name} equals the backup "
            f"(sha256 {ctx.data['backup_sha'][:12]})",
            fix="correct the request and open a new ticket" if error is DeviceRefused else "check the device",
        )
    ctx.attach(
        f"{device.name}-diff-unresolved.txt",
        diff(ctx.data["backup"], shown(spec, outcome.config), device.name).encode(),
    )
    raise NeedsOperator(
        f"{what}; {outcome.how}, but the running config of {device.name} still differs from the backup "
        "(the diff is on the ticket)",
        fix="compare the device with the attached backup and put it right by hand, then cancel or retry the job",
    )


def _after_drop(ctx: StepContext, device: NetworkDevice, change: Change, what: str) -> None:
    """The session dropped mid-change: log in again, roll back, prove (always raises)."""
    rule = _rule(ctx, device)
    sent = change if change.lines else _sent_change(ctx, rule, device)
    try:
        with open_session(device) as session:
            outcome = restore(session, ctx.data["backup_sha"], sent, ctx.ticket_id)
            ctx.attach(f"{device.name}-session-recovery.log", session.log())
    except SessionDropped as exc:
        raise NeedsOperator(
            f"{what}, and the session to roll back dropped too ({exc})",
            fix=f"check {device.name} at its console against the attached backup",
        ) from exc
    except DeviceRefused:
        raise
    except DeviceUnreachable as exc:  # the device is gone after the change
        spec = platform(device.platform)
        timer = spec.safety != "inverse-lines"
        raise NeedsOperator(
            f"{what}, and {device.name} does not answer since"
            + (
                f"; its {device.confirm_minutes}-minute revert timer will undo an unconfirmed change"
                if timer
                else ""
            ),
            fix=f"reach {device.name} out of band and compare it with the attached backup",
        ) from exc
    _proven(ctx, device, outcome, what)


def firewall_steps() -> list[Step]:
    return [CheckApproval(), NetPrecheck(), NetBackup(), NetApply(), NetVerify(), NetConfirm()]
