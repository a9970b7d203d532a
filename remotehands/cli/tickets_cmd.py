"""``remotehands tickets``: create, approve, show, list and queue builtin tickets."""

from __future__ import annotations

import json

import typer

from remotehands.cli.common import current_user, print_table, queue_table, runtime, ticket_table
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import InvalidRequest
from remotehands.inventory.models import PROVIDER
from remotehands.tickets.base import Severity, TaskRequest, TicketType
from remotehands.tickets.builtin import NewTicket
from remotehands.tickets.views import ticket_dict

app = typer.Typer(
    help="Builtin tickets: create, approve, show, list, and the work queue.", no_args_is_help=True
)


@app.command()
def create(
    title: str = typer.Option(..., "--title", help="One line saying what is wrong or wanted."),
    action: str = typer.Option(..., "--action", help="What to do, e.g. power.cycle."),
    target: list[str] = typer.Option(
        ..., "--target", "-t", help="Host name from the inventory (repeatable)."
    ),
    severity: int = typer.Option(
        3, "--severity", "-s", min=1, max=5, help="1 outage for many ... 5 false alarm."
    ),
    ticket_type: TicketType = typer.Option(TicketType.REMOTE_HANDS, "--type", help="Ticket type."),
    customer: str = typer.Option(PROVIDER, "--customer", help="Customer who asks ('provider' for staff)."),
    subscription: str = typer.Option(PROVIDER, "--subscription", help="The customer's subscription id."),
    requester: str = typer.Option(None, "--requester", help="Who asks (default: $RH_USER or your login)."),
    description: str = typer.Option("", "--description", help="Longer text."),
    params: str = typer.Option("{}", "--params", help="Action parameters as a JSON object."),
    sensitive: bool = typer.Option(False, "--sensitive", help="Encrypt the ticket's content at rest."),
    as_json: bool = JsonOption,
) -> None:
    """Open a ticket. Its request is validated now: unknown hosts or another customer's hosts are refused."""
    try:
        parsed = json.loads(params)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"--params is not valid JSON: {exc.msg}", fix='e.g. --params \'{"key": "value"}\''
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("--params must be a JSON object", fix='e.g. --params \'{"key": "value"}\'')
    try:
        request = TaskRequest(action=action, targets=tuple(target), params=parsed)
    except ValueError as exc:
        raise InvalidRequest(f"request is invalid: {exc}") from None
    rt = runtime()
    ticket_id = rt.tickets.create(
        NewTicket(
            type=ticket_type,
            severity=Severity(severity),
            title=title,
            requester=requester or current_user(),
            customer=customer,
            subscription=subscription,
            request=request,
            description=description,
            sensitive=sensitive,
        ),
        rt.inventory(),
    )
    emit({"id": ticket_id}, as_json, lambda: say(f"created {ticket_id}"))


@app.command()
def approve(
    ticket_id: str = typer.Argument(..., help="Ticket id, e.g. RH-12."),
    approver: str = typer.Option(None, "--approver", help="Who approves (default: $RH_USER or your login)."),
    as_json: bool = JsonOption,
) -> None:
    """Approve a ticket. The approver must not be its requester."""
    who = approver or current_user()
    runtime().tickets.approve(ticket_id, who)
    emit({"id": ticket_id, "approver": who}, as_json, lambda: say(f"{ticket_id} approved by {who}"))


@app.command()
def revoke(
    ticket_id: str = typer.Argument(..., help="Ticket id, e.g. RH-12."),
    reason: str = typer.Option("revoked", "--reason", help="Why, for the audit log."),
    as_json: bool = JsonOption,
) -> None:
    """Withdraw a ticket's approval: its jobs stop (cancelled) before their next change to the equipment."""
    who = current_user()
    runtime().tickets.revoke(ticket_id, who, reason=reason)
    emit(
        {"id": ticket_id, "revoked_by": who},
        as_json,
        lambda: say(f"{ticket_id}: approval withdrawn by {who}"),
    )


@app.command()
def show(
    ticket_id: str = typer.Argument(..., help="Ticket id, e.g. RH-12."),
    reveal: bool = typer.Option(False, "--reveal", help="Show a sensitive ticket's content."),
    as_json: bool = JsonOption,
) -> None:
    """Show a ticket, its trail of comments and its attachments."""
    from remotehands.jobs import store

    rt = runtime()
    ticket = rt.tickets.get(ticket_id, reveal=reveal)
    comments = rt.tickets.comments(ticket_id, reveal=reveal)
    jobs = store.jobs_of_ticket(rt.db, ticket.id)
    data = ticket_dict(ticket) | {
        "comments": [{"author": c.author, "body": c.body, "at": c.at.isoformat()} for c in comments],
        "attachments": [{"name": a.name, "size": a.size} for a in rt.tickets.attachments(ticket_id)],
        "jobs": [{"id": j.id, "target": j.target, "state": j.state, "reason": j.reason} for j in jobs],
    }

    def render() -> None:
        say(
            f"{ticket.id}  Sev{int(ticket.severity)} ({ticket.severity.meaning})  {ticket.type.value}  "
            f"status: {ticket.status.value}",
            style="bold",
        )
        say(f"title: {ticket.title}")
        say(f"customer: {ticket.customer} / {ticket.subscription}   site: {ticket.site}")
        say(f"requested by {ticket.requester}; approved by {ticket.approver or '-'}")
        if ticket.request is not None:
            say(f"request: {ticket.request.action} on {', '.join(ticket.request.targets)}")
        else:
            say("request: none (nothing for remotehands to do)")
        for j in jobs:
            say(f"job {j.id}: {j.target} {j.state}" + (f" ({j.reason})" if j.reason else ""))
        say("trail:", style="bold")
        for c in comments:
            say(f"  {c.at.strftime('%H:%M:%S')} {c.author}: {c.body}")

    emit(data, as_json, render)


@app.command("list")
def list_(
    all_: bool = typer.Option(False, "--all", help="Include resolved and closed tickets."),
    as_json: bool = JsonOption,
) -> None:
    """List tickets in queue order."""
    tickets = runtime().tickets.queue(include_done=all_)
    emit([ticket_dict(t) for t in tickets], as_json, lambda: print_table(ticket_table(tickets, "tickets")))


@app.command()
def queue(as_json: bool = JsonOption) -> None:
    """The work queue: open tickets by severity (Sev1 first), then in the order received."""
    tickets = runtime().tickets.queue()
    emit([ticket_dict(t) for t in tickets], as_json, lambda: print_table(queue_table(tickets)))
