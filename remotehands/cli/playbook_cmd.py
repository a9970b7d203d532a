"""``remotehands playbook run NAME --ticket ID [--limit HOST,...]``: the ticket's ``playbook.run`` jobs (one
per host), followed live; ``--plan`` runs the playbook in check mode (``--check --diff``) on the hosts and
prints what it would change, creating no job. ``playbook list`` shows the playbooks there are."""

from __future__ import annotations

import typer

from remotehands import secrets
from remotehands.ansible.runner import playbook_path, run_playbook
from remotehands.cli.common import current_user, runtime
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import InvalidRequest, NotApproved, NotPermitted
from remotehands.ssh import keys

ACTION = "playbook.run"

app = typer.Typer(help="Ansible playbooks for configuration changes.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """The playbooks in the playbooks directory, with the first line of each one's header comment."""
    rt = runtime()
    books = []
    for path in sorted(rt.settings.playbooks.glob("*.yml")):
        first = next(
            (line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), ""
        )
        books.append({"name": path.stem, "about": first})

    def render() -> None:
        for b in books:
            say(f"{b['name']:<24} {b['about']}")

    emit({"playbooks": books}, as_json, render)


@app.command()
def run(
    name: str = typer.Argument(..., help="Playbook name in the playbooks directory."),
    ticket: str = typer.Option(
        None, "--ticket", help="The approved ticket asking for it (not needed for --plan)."
    ),
    limit: str = typer.Option(
        None, "--limit", help="Hosts, comma-separated: a subset of the ticket's targets."
    ),
    plan: bool = typer.Option(False, "--plan", help="Check mode (--check --diff): report, change nothing."),
    var: list[str] = typer.Option(None, "--var", help="KEY=VALUE extra variable for --plan (repeatable)."),
    as_json: bool = JsonOption,
) -> None:
    """Run a playbook for an approved ticket (one job per host), or with --plan in check mode."""
    rt = runtime()
    book = playbook_path(rt.settings.playbooks, name)
    hosts = [h.strip() for h in (limit or "").split(",") if h.strip()]
    extravars: dict[str, object] = {}
    for item in var or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--var {item!r} is not KEY=VALUE", fix="e.g. --var target_version=14.4.1")
        extravars[key.strip()] = value
    if ticket:
        t = rt.tickets.get(ticket)
        request = t.wanted()
        if (
            request.action != ACTION
            or str(request.params.get("playbook", "")).removesuffix(".yml") != book.stem
        ):
            raise NotPermitted(
                f"{t.id} asks for {request.action} {request.params.get('playbook', '')}, not playbook {book.stem}",
                fix=f"open a ticket for playbook.run with params {{playbook: {book.stem}}}",
            )
        outside = sorted(set(hosts) - set(request.targets))
        if outside:
            raise NotPermitted(
                f"{t.id} does not cover {', '.join(outside)}", fix="limit to: " + ", ".join(request.targets)
            )
        hosts = hosts or list(request.targets)
        extravars = {**dict(request.params.get("vars", {})), **extravars}
        for key, ref in dict(request.params.get("secret_vars", {})).items():
            extravars[key] = secrets.resolve(str(ref), field=f"params.secret_vars.{key}")
    if not hosts:
        raise InvalidRequest(
            "no hosts", fix="pass --limit HOST,... (or --ticket, whose targets are the hosts)"
        )
    if plan:
        inventory = rt.inventory()
        results = {}
        for host_name in hosts:
            host = inventory.host(host_name)
            pin = keys.pinned(rt.db, host.name, host.ssh_host_key)
            where = host.mgmt_address if host.ssh_port == 22 else f"[{host.mgmt_address}]:{host.ssh_port}"
            known = f"{where} {pin.key_type} {pin.key_base64}\n" if pin else ""
            result = run_playbook(
                book,
                rt.settings.inventory,
                limit=host.name,
                known_hosts=known,
                extravars=extravars,
                check=True,
            )
            results[host.name] = {"status": result.status, "recap": result.recap(), "output": result.stdout}

        def render() -> None:
            for host_name, r in results.items():
                say(f"{book.stem} on {host_name} (check mode): {r['status']}; {r['recap']}", style="bold")
                say(r["output"].rstrip())

        emit({"playbook": book.stem, "check": True, "hosts": results}, as_json, render)
        raise typer.Exit(0 if all(r["status"] == "successful" for r in results.values()) else 1)
    if not ticket:
        raise NotPermitted(
            "a playbook run needs an approved ticket", fix="pass --ticket RH-n (or --plan to look)"
        )
    from remotehands.cli.jobs_cmd import _exit_code, run_jobs
    from remotehands.jobs import store

    approval = rt.tickets.approval(t.id)
    if not approval.approved:
        raise NotApproved(
            f"{t.id} is not approved (status {t.status.value}); nothing was done",
            fix=f"someone other than {t.requester} runs: remotehands tickets approve {t.id}",
        )
    ids = store.create_jobs_for_ticket(
        rt.db, t, approval.approver, current_user(), only=frozenset(hosts), inventory=rt.inventory()
    )
    data = run_jobs(rt, ids, quiet=as_json, timeout=4 * 3600)
    emit({"ticket": t.id, "jobs": data}, as_json, lambda: None)
    raise typer.Exit(_exit_code(rt, ids))
