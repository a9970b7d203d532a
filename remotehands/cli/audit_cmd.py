"""``remotehands audit``: verify the hash-chained audit log."""

from __future__ import annotations

import typer

from remotehands import audit
from remotehands.cli.common import runtime
from remotehands.cli.output import JsonOption, emit, say

app = typer.Typer(
    help="Audit log: verify that no entry was changed, removed or reordered.", no_args_is_help=True
)


@app.command()
def verify(as_json: bool = JsonOption) -> None:
    """Walk the audit chain; exit 1 and name the first bad entry if it was tampered with."""
    with runtime().db.session() as s:
        verdict = audit.verify(s)
    emit(verdict, as_json, lambda: say(verdict.reason, style="green" if verdict.ok else "red"))
    if not verdict.ok:
        raise typer.Exit(1)
