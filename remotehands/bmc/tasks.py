"""Power actions as journaled steps: ``power.cycle``, ``power.on``, ``power.off``.

A power cycle must never be sent twice for one job. Before sending, the cycle step records the BMC's event
log position (IPMI SEL) in its ``started`` journal row; if the worker dies before ``done`` is journaled, the
next worker reads the event log and sends the cycle only if the BMC never received it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from remotehands.bmc.base import PowerAction, PowerDriver, PowerEvidence, PowerState
from remotehands.errors import NotApproved, VerificationFailed
from remotehands.jobs import actions
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict, Wait
from remotehands.jobs.store import now

CONFIRM_TIMEOUT_S = 120.0


def _driver(ctx: StepContext) -> PowerDriver:
    return ctx.runtime.power_driver(ctx.host())


class CheckApproval(Step):
    name = "check-approval"
    description = "re-read the ticket's approval at its own ticket system"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        approval = ctx.runtime.tickets.approval(ctx.ticket_id)
        if not approval.approved:
            raise NotApproved(
                f"{ctx.ticket_id} is no longer approved at its ticket system",
                fix="have it approved again, then re-run the ticket",
            )
        return Done(f"{ctx.ticket_id} approved by {approval.approver}")


class ReadPower(Step):
    name = "read-power"
    description = "read the host's power state before acting"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        driver = _driver(ctx)
        try:
            state = driver.state()
        finally:
            driver.close()
        ctx.data["power_before"] = state.value
        return Done(f"{ctx.target} power is {state.value} (via {driver.name})")


class SendPower(Step):
    """Sends one power command; after a crash, the BMC's event log says whether it was received."""

    description = "send the power command once"

    def __init__(self, action: PowerAction) -> None:
        self.action = action
        self.name = f"send-{action.value.replace('_', '-')}"

    def _effective(self, ctx: StepContext) -> PowerAction | None:
        before = ctx.data.get("power_before")
        if self.action is PowerAction.CYCLE:
            # A cycle of a host that is off would do nothing on most BMCs: power it on instead.
            return PowerAction.ON if before == PowerState.OFF.value else PowerAction.CYCLE
        if before == (PowerState.ON.value if self.action is PowerAction.ON else PowerState.OFF.value):
            return None  # already there: "on" never reboots a host that is on
        return self.action

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        driver = _driver(ctx)
        try:
            if isinstance(driver, PowerEvidence):
                return {"event_marker": driver.event_marker()}
            return {}
        finally:
            driver.close()

    def run(self, ctx: StepContext) -> Done:
        effective = self._effective(ctx)
        if effective is None:
            ctx.data["sent"] = None
            return Done(f"{ctx.target} already {ctx.data.get('power_before')}; nothing sent")
        driver = _driver(ctx)
        try:
            if effective is PowerAction.CYCLE:
                driver.cycle()
            else:
                driver.set_state(effective)
        finally:
            driver.close()
        ctx.data["sent"] = effective.value
        ctx.data["sent_at"] = time.time()
        return Done(f"{effective.value} sent to {ctx.target} via {driver.name}")

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        effective = self._effective(ctx)
        if effective is None:
            return Reconciled(Verdict.RETRY, "nothing to send")
        marker = baseline.get("event_marker")
        driver = _driver(ctx)
        try:
            if marker is None or not isinstance(driver, PowerEvidence):
                return Reconciled(
                    Verdict.NEEDS_OPERATOR,
                    f"the worker stopped while sending {effective.value} to {ctx.target} and its "
                    f"{driver.name} BMC keeps no event log to tell whether it arrived; check the "
                    "host, then retry or cancel the job",
                )
            events = [e for e in driver.events_since(int(marker)) if e.action is effective]
        finally:
            driver.close()
        if events:
            ctx.data["sent"] = effective.value
            ctx.data["sent_at"] = events[0].timestamp
            return Reconciled(
                Verdict.DONE,
                f"{effective.value} was received by {ctx.target} (BMC event record {events[0].marker})",
            )
        return Reconciled(
            Verdict.RETRY, f"the BMC of {ctx.target} never received {effective.value}; sending it"
        )


class ConfirmPower(Step):
    """Reads the power back until it shows the expected state; polls by waiting, so the worker is free."""

    name = "confirm-power"
    description = "read the power state back until it shows the action took effect"
    idempotent = True

    def __init__(self, action: PowerAction) -> None:
        self.action = action

    def run(self, ctx: StepContext) -> Done | Wait:
        sent = ctx.data.get("sent")
        want = PowerState.OFF if self.action in (PowerAction.OFF, PowerAction.SOFT_OFF) else PowerState.ON
        driver = _driver(ctx)
        try:
            state = driver.state()
        finally:
            driver.close()
        polls = int(ctx.data.get("confirm_polls", 0)) + 1
        ctx.data["confirm_polls"] = polls
        if state is PowerState.OFF:
            ctx.data["seen_off"] = True
        if state is want:
            if sent == PowerAction.CYCLE.value:
                how = (
                    "went off and came back on" if ctx.data.get("seen_off") else "is back on after the cycle"
                )
                return Done(f"confirmed: {ctx.target} {how} (read back {polls}x)")
            return Done(f"confirmed: {ctx.target} is {state.value} (read back {polls}x)")
        started = float(ctx.data.get("sent_at") or time.time())
        if time.time() - started > float(ctx.params.get("confirm_timeout", CONFIRM_TIMEOUT_S)):
            raise VerificationFailed(
                f"{ctx.target} reads {state.value} {time.time() - started:.0f}s after {sent}, expected {want.value}",
                fix="check the host at the console; its BMC may be hung",
            )
        delay = min(0.25 * 2 ** min(polls, 4), 4.0)
        return Wait(now() + timedelta(seconds=delay), f"waiting for {ctx.target} to read {want.value}")


def _steps(action: PowerAction) -> list[Step]:
    return [CheckApproval(), ReadPower(), SendPower(action), ConfirmPower(action)]


actions.register(
    actions.Action(
        "power.cycle",
        "hard power-cycle a host and confirm it is back on",
        lambda: _steps(PowerAction.CYCLE),
        deadline_seconds=900,
        purpose="power cycle",
    )
)
actions.register(
    actions.Action(
        "power.on",
        "power a host on (never reboots a host that is on)",
        lambda: _steps(PowerAction.ON),
        deadline_seconds=600,
        purpose="power on",
    )
)
actions.register(
    actions.Action(
        "power.off",
        "power a host off hard and confirm",
        lambda: _steps(PowerAction.OFF),
        deadline_seconds=600,
        purpose="power off",
    )
)
