"""``remotehands status``: the public site status, and the maintenance windows shown on it."""

from __future__ import annotations

import typer

from remotehands.cli.common import current_user, print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit, say
from remotehands.status import maintenance, summary

app = typer.Typer(help="Site status (as the public status page shows it) and maintenance windows.")
windows = typer.Typer(help="Scheduled maintenance windows, shown on the status page.", no_args_is_help=True)
app.add_typer(windows, name="maintenance")


@app.callback(invoke_without_command=True)
def show(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Per site: Operational, Degraded (an open Sev2) or Outage (an open Sev1); as /status.json with --json."""
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime()
    result = summary.summary(rt.db, sorted(rt.inventory().sites))

    def render() -> None:
        say(result.description, style="green" if result.state == "operational" else "red")
        table = SafeTable(title="sites")
        for column in ("site", "status", "open incidents", "maintenance"):
            table.add_column(column)
        for site in result.sites:
            table.add_row(
                site.name, site.label, str(site.open_incidents), "in progress" if site.in_maintenance else "-"
            )
        print_table(table)

    emit(summary.as_json(result), as_json, render)


@windows.command("add")
def add(
    site: str = typer.Option(..., "--site", help="The site, as the inventory names it."),
    start: str = typer.Option(..., "--start", help="ISO 8601, e.g. 2026-12-24T02:00Z (no zone: UTC)."),
    end: str = typer.Option(..., "--end", help="ISO 8601; after --start."),
    title: str = typer.Option(..., "--title", help="Public text, e.g. 'Core switch firmware update'."),
    as_json: bool = JsonOption,
) -> None:
    """Schedule a maintenance window on a site (public: the title is shown as written)."""
    rt = runtime()
    window = maintenance.add(
        rt.db,
        rt.inventory(),
        site=site,
        title=title,
        starts_at=maintenance.parse_time(start, "--start"),
        ends_at=maintenance.parse_time(end, "--end"),
        actor=current_user(),
    )
    emit(_window_dict(window), as_json, lambda: say(f"maintenance {window.id} scheduled on {window.site}"))


@windows.command("list")
def list_(
    include_past: bool = typer.Option(False, "--all", help="Include windows that have ended."),
    as_json: bool = JsonOption,
) -> None:
    """Maintenance windows not yet ended (all with --all), in start order."""
    found = maintenance.listing(runtime().db, include_past=include_past)

    def render() -> None:
        table = SafeTable(title="maintenance windows (UTC)")
        for column in ("id", "site", "start", "end", "state", "title", "by"):
            table.add_column(column)
        at = maintenance.now()
        for w in found:
            table.add_row(
                str(w.id),
                w.site,
                w.starts_at.strftime("%Y-%m-%d %H:%M"),
                w.ends_at.strftime("%Y-%m-%d %H:%M"),
                w.state(at),
                w.title,
                w.created_by,
            )
        print_table(table)

    emit([_window_dict(w) for w in found], as_json, render)


@windows.command("remove")
def remove(
    window_id: int = typer.Argument(..., help="The window's id (remotehands status maintenance list)."),
    as_json: bool = JsonOption,
) -> None:
    """Remove a maintenance window."""
    window = maintenance.remove(runtime().db, window_id, actor=current_user())
    emit(_window_dict(window), as_json, lambda: say(f"maintenance {window.id} on {window.site} removed"))


def _window_dict(window: maintenance.Window) -> dict[str, object]:
    return {
        "id": window.id,
        "site": window.site,
        "title": window.title,
        "start": window.starts_at.isoformat(),
        "end": window.ends_at.isoformat(),
        "created_by": window.created_by,
    }
