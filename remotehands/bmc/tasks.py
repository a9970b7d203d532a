"""Power actions as journaled steps: ``power.cycle``, ``power.on``, ``power.off``.

A power cycle must happen exactly once per job, even when a worker dies mid-step. Two ways:

- **native**, when the chosen power path keeps an event log we can read (IPMI SEL): the cycle step records
  the log position in its ``started`` journal row; after a crash, the next worker reads the log and sends
  the cycle only if the BMC never received it;
- **off, dwell, on** otherwise (PDU outlets, Redfish): every step reads the state before it acts, so
  repeating one after a crash repeats nothing ("off" on an off outlet, "on" on an on outlet do nothing).

A manual path (nothing to drive) asks a technician on the ticket and waits for ``remotehands jobs confirm``.
Outlets of one PDU strip are switched on at least ``stagger_seconds`` apart, across all workers.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from remotehands.bmc.base import PowerAction, PowerDriver, PowerEvidence, PowerState
from remotehands.bmc.paths import describe, open_first, open_index
from remotehands.bmc.reachable import WaitReachable
from remotehands.errors import RemoteHandsError, VerificationFailed
from remotehands.inventory.models import Pdu, PowerProfile
from remotehands.jobs import actions, slots
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.store import now

CONFIRM_TIMEOUT_S = 120.0
OFF_SECONDS = 5.0  # how long an outlet or host stays off during an off-on cycle (PSU capacitors drain)
MANUAL_POLL_S = 30.0
NATIVE, OFF_ON, DIRECT, MANUAL = "native", "off-on", "direct", "manual"


def _profile(ctx: StepContext) -> PowerProfile:
    return ctx.host().power_paths[int(ctx.data.get("path", 0))]


def _driver(ctx: StepContext) -> PowerDriver:
    driver = open_index(ctx.runtime, ctx.host(), int(ctx.data.get("path", 0)))
    assert driver is not None, "a manual path has no driver"
    return driver


def _read(ctx: StepContext) -> PowerState:
    driver = _driver(ctx)
    try:
        return driver.state()
    finally:
        driver.close()


def _strip(ctx: StepContext) -> Pdu | None:
    """The PDU strip whose outlets are staggered, when the host is powered through an outlet."""
    profile = _profile(ctx)
    if profile.type != "pdu-outlet" or profile.pdu is None:
        return None
    return ctx.runtime.inventory().pdu(profile.pdu)


def _stagger(ctx: StepContext, pdu: Pdu) -> Wait | None:
    """Take the strip's next switching slot; a Wait when another outlet just went on."""
    retry_at = slots.claim_device_slot(ctx.runtime.db, f"pdu:{pdu.name}", pdu.stagger_seconds)
    if retry_at is None:
        return None
    return Wait(retry_at, f"staggering outlets of {pdu.name} ({pdu.stagger_seconds:g}s apart)")


class ReadPower(Step):
    """Chooses the power path (first that answers, in inventory order) and reads the state through it."""

    name = "read-power"
    description = "choose the power path and read the host's power state before acting"
    idempotent = True

    def __init__(self, action: PowerAction | None) -> None:
        self.action = action  # None: only read (power.status)

    def run(self, ctx: StepContext) -> Done:
        opened = open_first(ctx.runtime, ctx.host())
        # A native cycle only where the BMC both has an event log and is declared to record power actions
        # in it: a log that records nothing would read as "never received" after a crash, and cycle twice.
        evidence = isinstance(opened.driver, PowerEvidence) and opened.profile.event_log
        if opened.driver is not None:
            opened.driver.close()
        ctx.data["path"] = opened.index
        ctx.data["power_before"] = opened.state.value
        ctx.data["attempts"] = [a.__dict__ for a in opened.attempts]
        if opened.profile.type == "manual":
            ctx.data["mode"] = MANUAL
            return Done(
                f"{ctx.target} has no power path to drive; a technician will act ({opened.summary()})"
            )
        if self.action is PowerAction.CYCLE:
            ctx.data["mode"] = NATIVE if evidence else OFF_ON
        elif self.action is not None:
            ctx.data["mode"] = DIRECT
        return Done(f"{ctx.target} power is {opened.state.value} {opened.summary()}")


class ManualStep(Step):
    """Asks a technician on the ticket and waits for ``remotehands jobs confirm``."""

    idempotent = True

    def __init__(self, action: PowerAction, name: str) -> None:
        self.action = action
        self.name = name
        self.description = f"ask a technician to {action.value} the host and wait for their confirmation"

    def manual(self, ctx: StepContext) -> Done | Wait:
        if ctx.confirmed_by:
            return Done(f"{ctx.confirmed_by} confirmed: {ctx.target} was {self.action.value} by hand")
        if not ctx.data.get("asked"):
            host = ctx.host()
            ctx.tell_ticket(
                f"TECHNICIAN NEEDED: {self.action.value.replace('_', ' ')} {host.name} by hand "
                f"(site {host.site}, rack {host.rack}, serial {host.serial_number}), then run: "
                f"remotehands jobs confirm {ctx.job_id}"
            )
            ctx.data["asked"] = True
        return Wait(
            now() + timedelta(seconds=MANUAL_POLL_S), f"waiting for a technician to confirm job {ctx.job_id}"
        )

    def run(self, ctx: StepContext) -> Done | Wait:
        return self.manual(ctx)


class SendCycle(ManualStep):
    """native: one cycle command, exactly once (SEL evidence). off-on: the off half. manual: ask."""

    description = "send the power cycle once (or its off half)"
    idempotent = False

    def __init__(self) -> None:
        super().__init__(PowerAction.CYCLE, "send-cycle")

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        if ctx.data.get("mode") != NATIVE:
            return {}
        driver = _driver(ctx)
        try:
            return {"event_marker": driver.event_marker()} if isinstance(driver, PowerEvidence) else {}
        finally:
            driver.close()

    def run(self, ctx: StepContext) -> Done | Wait:
        mode = ctx.data.get("mode")
        if mode == MANUAL:
            return self.manual(ctx)
        if mode == OFF_ON:
            return _switch(ctx, PowerAction.OFF, "the off half of the cycle")
        effective = (
            PowerAction.ON if ctx.data.get("power_before") == PowerState.OFF.value else PowerAction.CYCLE
        )
        driver = _driver(ctx)
        try:
            driver.cycle() if effective is PowerAction.CYCLE else driver.set_state(effective)
        finally:
            driver.close()
        ctx.data["sent"], ctx.data["sent_at"] = effective.value, time.time()
        note = "" if effective is PowerAction.CYCLE else " (the host was off, so it is powered on instead)"
        return Done(f"{effective.value} sent to {ctx.target} via {describe(_profile(ctx))}{note}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        if ctx.data.get("mode") != NATIVE:
            return Reconciled(Verdict.RETRY, "this step reads the power state before acting; safe to repeat")
        effective = (
            PowerAction.ON if ctx.data.get("power_before") == PowerState.OFF.value else PowerAction.CYCLE
        )
        marker = baseline.get("event_marker")
        driver = _driver(ctx)
        try:
            if marker is None or not isinstance(driver, PowerEvidence):
                return Reconciled(
                    Verdict.NEEDS_OPERATOR,
                    f"the worker stopped while sending {effective.value} to {ctx.target} and its BMC's event "
                    "log cannot tell whether it arrived; check the host, then retry or cancel the job",
                )
            if driver.event_marker() < int(marker):
                return Reconciled(
                    Verdict.NEEDS_OPERATOR,
                    f"the event log of {ctx.target}'s BMC was cleared since the attempt began, so it cannot "
                    f"tell whether {effective.value} arrived; check the host, then retry or cancel the job",
                )
            events = [e for e in driver.events_since(int(marker)) if e.action is effective]
        finally:
            driver.close()
        if events:
            # Our clock, not the BMC's: BMC clocks are often hours off, and confirm times itself from this.
            ctx.data["sent"], ctx.data["sent_at"] = effective.value, time.time()
            return Reconciled(
                Verdict.DONE,
                f"{effective.value} was received by {ctx.target} (BMC event record {events[0].marker})",
            )
        return Reconciled(
            Verdict.RETRY, f"the BMC of {ctx.target} never received {effective.value}; sending it"
        )


def _switch(ctx: StepContext, action: PowerAction, what: str) -> Done | Wait:
    """Read, then send ``action`` only if the host is not already there.

    ON through a PDU outlet is staggered: the strip's slot is claimed just before the command and pushed
    on again once it returned, so outlets reach the strip ``stagger_seconds`` apart however slow a command."""
    strip = _strip(ctx) if action is PowerAction.ON else None
    driver = _driver(ctx)
    try:
        state = driver.state()
        want = PowerState.ON if action is PowerAction.ON else PowerState.OFF
        if state is want:
            ctx.data["sent"] = None
            return Done(f"{ctx.target} already {state.value}; nothing sent ({what})")
        if strip is not None and (wait := _stagger(ctx, strip)) is not None:
            return wait
        try:
            driver.set_state(action)
        finally:
            if strip is not None:
                slots.hold_device_slot(ctx.runtime.db, f"pdu:{strip.name}", strip.stagger_seconds)
    finally:
        driver.close()
    ctx.data["sent"], ctx.data["sent_at"] = action.value, time.time()
    return Done(f"{action.value} sent to {ctx.target} via {describe(_profile(ctx))} ({what})")


def _poll(ctx: StepContext, want: PowerState, key: str) -> Done | Wait:
    """Read the state until it is ``want`` (polling by waiting, so the worker is free meanwhile)."""
    state = _read(ctx)
    polls = int(ctx.data.get(key, 0)) + 1
    ctx.data[key] = polls
    if state is PowerState.OFF:
        ctx.data["seen_off"] = True
    if state is want:
        return Done(f"confirmed: {ctx.target} is {state.value} (read back {polls}x)")
    started = float(ctx.data.get("sent_at") or time.time())
    waited = time.time() - started
    if waited > float(ctx.params.get("confirm_timeout", CONFIRM_TIMEOUT_S)):
        raise VerificationFailed(
            f"{ctx.target} reads {state.value} {waited:.0f}s after {ctx.data.get('sent')}, expected {want.value}"
            + _attach_event_log(ctx),
            fix="check the host at the console or the outlet at the strip; a BMC may be hung",
        )
    delay = min(0.25 * 2 ** min(polls, 4), 4.0)
    return Wait(now() + timedelta(seconds=delay), f"waiting for {ctx.target} to read {want.value}")


def _attach_event_log(ctx: StepContext) -> str:
    """Attach the BMC's event log (IPMI SEL) to the ticket when the path has one; a note for the message."""
    driver = _driver(ctx)
    try:
        read = getattr(driver, "sel_entries", None)
        if read is None:
            return ""
        records = [r.as_dict() for r in read()]
    except RemoteHandsError as exc:
        return f" (its event log could not be read: {exc})"
    finally:
        driver.close()
    name = f"sel-{ctx.target}-job{ctx.job_id}.json"
    ctx.attach(name, json.dumps(records, indent=2).encode())
    last = records[-1] if records else None
    newest = f", newest: {last['sensor_type']} {last['event']} at {last['timestamp']}" if last else ""
    return f" (BMC event log attached as {name}: {len(records)} records{newest})"


class ConfirmOff(Step):
    name = "confirm-off"
    description = "off-on cycle: read back until the host is off"
    idempotent = True

    def run(self, ctx: StepContext) -> Done | Wait:
        if ctx.data.get("mode") != OFF_ON:
            return Done("not needed on this power path", quiet=True)
        result = _poll(ctx, PowerState.OFF, "off_polls")
        if isinstance(result, Done):
            ctx.data["off_at"] = time.time()
        return result


class SendOn(Step):
    name = "send-on"
    description = "off-on cycle: after the dwell, power the host back on"
    idempotent = True
    changes_equipment = True

    def run(self, ctx: StepContext) -> Done | Wait:
        if ctx.data.get("mode") != OFF_ON:
            return Done("not needed on this power path", quiet=True)
        dwell = float(ctx.params.get("off_seconds", OFF_SECONDS))
        ready = float(ctx.data.get("off_at", 0)) + dwell
        if time.time() < ready:
            return Wait(now() + timedelta(seconds=ready - time.time()), f"{ctx.target} stays off {dwell:g}s")
        return _switch(ctx, PowerAction.ON, "the on half of the cycle")


class SendPower(ManualStep):
    """power.on / power.off: read, and send only when the host is not already there."""

    description = "send the power command when needed"
    changes_equipment = True

    def __init__(self, action: PowerAction) -> None:
        super().__init__(action, f"send-{action.value.replace('_', '-')}")

    def run(self, ctx: StepContext) -> Done | Wait:
        if ctx.data.get("mode") == MANUAL:
            return self.manual(ctx)
        return _switch(ctx, self.action, "as asked")


class ConfirmPower(Step):
    name = "confirm-power"
    description = "read the power state back until it shows the action took effect"
    idempotent = True

    def __init__(self, action: PowerAction) -> None:
        self.action = action

    def run(self, ctx: StepContext) -> Done | Wait:
        if ctx.data.get("mode") == MANUAL:
            return Done("confirmed by the technician", quiet=True)
        want = PowerState.OFF if self.action in (PowerAction.OFF, PowerAction.SOFT_OFF) else PowerState.ON
        result = _poll(ctx, want, "confirm_polls")
        if isinstance(result, Done) and self.action is PowerAction.CYCLE:
            how = "went off and came back on" if ctx.data.get("seen_off") else "is back on after the cycle"
            return Done(f"confirmed: {ctx.target} {how} (read back {ctx.data['confirm_polls']}x)")
        return result


def cycle_steps() -> list[Step]:
    return [
        CheckApproval(),
        ReadPower(PowerAction.CYCLE),
        SendCycle(),
        ConfirmOff(),
        SendOn(),
        ConfirmPower(PowerAction.CYCLE),
        WaitReachable(),
    ]


def set_steps(action: PowerAction) -> list[Step]:
    steps: list[Step] = [CheckApproval(), ReadPower(action), SendPower(action), ConfirmPower(action)]
    return [*steps, WaitReachable()] if action is PowerAction.ON else steps


DEADLINE_S = 4 * 3600  # a backstop: each step has its own timeout; manual steps wait for people

actions.register(
    actions.Action(
        "power.cycle",
        "hard power-cycle a host and confirm it is back on",
        cycle_steps,
        DEADLINE_S,
        "power cycle",
    )
)
actions.register(
    actions.Action(
        "power.on",
        "power a host on (never reboots a host that is on)",
        lambda: set_steps(PowerAction.ON),
        DEADLINE_S,
        "power on",
    )
)
actions.register(
    actions.Action(
        "power.status",
        "read a host's power state through its first answering power path (changes nothing)",
        lambda: [CheckApproval(), ReadPower(None)],
        DEADLINE_S,
        "power status",
    )
)
actions.register(
    actions.Action(
        "power.off",
        "power a host off hard and confirm",
        lambda: set_steps(PowerAction.OFF),
        DEADLINE_S,
        "power off",
    )
)
