"""``remotehands serve`` (the HTTP server) and ``remotehands tokens`` (API tokens bound to roles)."""

from __future__ import annotations

import typer

from remotehands.cli.common import current_user, print_table, runtime
from remotehands.cli.output import JsonOption, SafeTable, emit, say
from remotehands.server import tokens as api_tokens

tokens = typer.Typer(help="API tokens for the server: each bound to a role.", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    no_engine: bool = typer.Option(
        False, "--no-engine", help="Serve HTTP only; leave processing to other processes."
    ),
) -> None:
    """Serve webhooks, alerts, callbacks, the API and /metrics (FastAPI on uvicorn). With the local executor
    the server also runs the jobs."""
    import uvicorn

    from remotehands.server.app import create_app

    app = create_app(runtime(), engine=not no_engine)
    # Open event streams (the console's job pages) would hold a shutdown forever: give them 5 s.
    uvicorn.run(
        app, host=host, port=port, log_level="warning", proxy_headers=False, timeout_graceful_shutdown=5
    )


@tokens.command("create")
def create(
    name: str = typer.Argument(..., help="Who uses it (a person or a system), for the audit log."),
    role: str = typer.Option(..., "--role", help="technician, approver or admin."),
    as_json: bool = JsonOption,
) -> None:
    """Make a token. It is printed once and never stored; keep it in your secret store."""
    token = api_tokens.create(runtime().db, name, role, created_by=current_user())
    emit({"name": name, "role": role, "token": token}, as_json, lambda: say(token))


@tokens.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="Whose tokens to revoke."), as_json: bool = JsonOption
) -> None:
    """Revoke every live token of NAME."""
    count = api_tokens.revoke(runtime().db, name, actor=current_user())
    emit({"name": name, "revoked": count}, as_json, lambda: say(f"revoked {count} token(s) of {name}"))


@tokens.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """Tokens: name, role, who made them, whether revoked (never the token)."""
    rows = api_tokens.listing(runtime().db)

    def render() -> None:
        table = SafeTable(title="API tokens")
        for col in ("name", "role", "created by", "created", "revoked"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                str(r["name"]), str(r["role"]), str(r["created_by"]), str(r["created_at"]), str(r["revoked"])
            )
        print_table(table)

    emit(rows, as_json, render)
