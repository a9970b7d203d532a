"""What the change pipeline can change: a firewall rule, or customers' additional IPs (routes plus the IP
plan). Each kind builds the change for a job and says what happens around it: addresses taken from the IP
plan before the device is touched (``prepare``), released again when the device is proven untouched
(``abandoned``), or released from the plan once their routes are gone (``kept``)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from typing import Protocol

from remotehands.errors import InvalidRequest
from remotehands.inventory.models import NetworkDevice
from remotehands.jobs.steps import StepContext
from remotehands.network import templates
from remotehands.network.addresses import RouteChange, parse_ip_request
from remotehands.network.plan import AddressPlan, plan_for
from remotehands.network.rules import FirewallRule, parse_rule
from remotehands.network.templates import Change


class NetChange(Protocol):
    """One change the pipeline applies: rendered per platform, found in a running config, proven."""

    @property
    def op(self) -> str: ...

    @property
    def ticket_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    def describe(self) -> str: ...

    def render(self, device: NetworkDevice, config: str) -> Change: ...

    def is_done(self, device: NetworkDevice, config: str) -> bool: ...

    def probes(self, device: NetworkDevice) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class RuleChange:
    """A ``FirewallRule`` as a pipeline change (``templates`` renders and finds it)."""

    rule: FirewallRule

    @property
    def op(self) -> str:
        return self.rule.op

    @property
    def ticket_id(self) -> str:
        return self.rule.ticket_id

    @property
    def name(self) -> str:
        return self.rule.name

    def describe(self) -> str:
        return self.rule.describe()

    def render(self, device: NetworkDevice, config: str) -> Change:
        return templates.change(self.rule, device, config)

    def is_done(self, device: NetworkDevice, config: str) -> bool:
        return templates.is_done(self.rule, device, config)

    def probes(self, device: NetworkDevice) -> list[tuple[str, str]]:
        """ASA's packet-tracer must say allow for a permit (drop for a deny)."""
        trace = templates.packet_trace(self.rule, device)
        if trace is None:
            return []
        return [(trace, r"^Action:\s*allow" if self.rule.action == "permit" else r"^Action:\s*drop")]


class NetKind(Protocol):
    """One network action's change and what surrounds it."""

    def change(self, ctx: StepContext, device: NetworkDevice) -> NetChange: ...

    def prepare(self, ctx: StepContext, device: NetworkDevice) -> str | None: ...

    def kept(self, ctx: StepContext, device: NetworkDevice) -> str | None: ...

    def abandoned(self, ctx: StepContext, device: NetworkDevice) -> None: ...


class RuleKind:
    """``net.firewall_rule``: nothing around the change."""

    def change(self, ctx: StepContext, device: NetworkDevice) -> NetChange:
        return RuleChange(parse_rule(ctx.params, device, ctx.ticket_id))

    def prepare(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        return None

    def kept(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        return None

    def abandoned(self, ctx: StepContext, device: NetworkDevice) -> None:
        return None


def _plan(ctx: StepContext) -> AddressPlan:
    return plan_for(ctx.runtime, f"job-{ctx.job_id}")


def _key(ctx: StepContext) -> str:
    return f"job-{ctx.job_id}"


def _addresses(ctx: StepContext) -> tuple[IPv4Address, ...]:
    found = tuple(ip_address(a) for a in ctx.data.get("addresses", ()))
    return tuple(a for a in found if isinstance(a, IPv4Address))


class AddIpKind:
    """``net.add_ip``: addresses taken from the site's IP plan (under the job's key, so a retried precheck
    gets the same ones), then routed; released again when the device is proven untouched."""

    def change(self, ctx: StepContext, device: NetworkDevice) -> NetChange:
        request = parse_ip_request(ctx.params, device, "add")
        return RouteChange(
            "add",
            _addresses(ctx),
            request.next_hop,
            request.zone,
            ctx.ticket_id,
            request.mode,
            request.public_zone,
        )

    def prepare(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        """Raises ``InvalidRequest`` (outside the plan, reserved), ``AddressInUse``, ``PrefixExhausted``."""
        request = parse_ip_request(ctx.params, device, "add")
        plan = _plan(ctx)
        if request.addresses:
            held = [
                plan.assign(
                    device.site,
                    a,
                    customer=request.customer,
                    ticket_id=ctx.ticket_id,
                    key=_key(ctx),
                    device=device.name,
                )
                for a in request.addresses
            ]
        else:
            held = plan.allocate(
                device.site,
                request.count,
                customer=request.customer,
                ticket_id=ctx.ticket_id,
                key=_key(ctx),
                device=device.name,
                prefix=request.prefix,
            )
        ctx.data["addresses"] = [str(a.address) for a in held]
        return f"{', '.join(ctx.data['addresses'])} assigned to {request.customer} from the IP plan of {device.site}"

    def kept(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        return None

    def abandoned(self, ctx: StepContext, device: NetworkDevice) -> None:
        """The device is back at its backup: give the addresses back to the plan."""
        addresses = list(_addresses(ctx))
        held = {str(a.address) for a in _plan(ctx).assignments(device.site, key=_key(ctx))}
        mine = [a for a in addresses if str(a) in held]
        if mine:
            _plan(ctx).release(device.site, list(mine), ticket_id=ctx.ticket_id)


class ReleaseIpKind:
    """``net.release_ip``: the routes removed, then the addresses released in the IP plan."""

    def change(self, ctx: StepContext, device: NetworkDevice) -> NetChange:
        request = parse_ip_request(ctx.params, device, "remove")
        return RouteChange(
            "remove", request.addresses, None, request.zone, ctx.ticket_id, request.mode, request.public_zone
        )

    def prepare(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        """Every address must be assigned to the ticket's customer; raises ``InvalidRequest`` otherwise."""
        request = parse_ip_request(ctx.params, device, "remove")
        held = {str(a.address) for a in _plan(ctx).assignments(device.site, customer=request.customer)}
        missing = [str(a) for a in request.addresses if str(a) not in held]
        if missing:
            raise InvalidRequest(
                f"request.params.addresses: {', '.join(missing)} not assigned to {request.customer} at "
                f"{device.site}; nothing was changed",
                fix="see the customer's addresses with: remotehands ipam show " + device.site,
            )
        return None

    def kept(self, ctx: StepContext, device: NetworkDevice) -> str | None:
        request = parse_ip_request(ctx.params, device, "remove")
        _plan(ctx).release(device.site, list(request.addresses), ticket_id=ctx.ticket_id)
        return f"{', '.join(str(a) for a in request.addresses)} released in the IP plan of {device.site}"

    def abandoned(self, ctx: StepContext, device: NetworkDevice) -> None:
        return None


KINDS: dict[str, NetKind] = {
    "net.firewall_rule": RuleKind(),
    "net.add_ip": AddIpKind(),
    "net.release_ip": ReleaseIpKind(),
}


def kind_of(action: str) -> NetKind:
    """The kind of a network action (``net.add_ip``)."""
    return KINDS[action]
