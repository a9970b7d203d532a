"""Entry point: builds the Typer app, maps every error to a one-line message and an exit code.

Exit codes: 0 ok, 1 action failed, 2 bad input, 3 not approved / not permitted / blocked.
No traceback reaches the terminal: unexpected errors are logged (with traceback) to the log file.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys

import typer
from typer.exceptions import TyperException

from remotehands import redaction
from remotehands.cli import (
    audit_cmd,
    inventory_cmd,
    ipam_cmd,
    jobs_cmd,
    lab_cmd,
    net_cmd,
    net_ip_cmd,
    playbook_cmd,
    power_cmd,
    reimage_cmd,
    serve_cmd,
    ssh_cmd,
    status_cmd,
    storage_cmd,
    tickets_cmd,
)
from remotehands.cli.output import err_console
from remotehands.config import load_settings
from remotehands.errors import ConfigError, RemoteHandsError
from remotehands.logfile import log_to_file

app = typer.Typer(
    name="remotehands",
    help="Datacenter remote hands: approved tickets become verified, resumable jobs on the equipment, "
    "with every step written back to the ticket.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(tickets_cmd.app, name="tickets")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(power_cmd.app, name="power")
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(ipam_cmd.app, name="ipam")
app.add_typer(lab_cmd.app, name="lab")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(serve_cmd.tokens, name="tokens")
app.add_typer(ssh_cmd.app, name="ssh")
app.add_typer(storage_cmd.app, name="storage")
app.add_typer(playbook_cmd.app, name="playbook")
app.add_typer(status_cmd.app, name="status")
net_cmd.app.add_typer(net_ip_cmd.app, name="ip")
app.add_typer(net_cmd.app, name="net")
app.command("run")(jobs_cmd.run)
app.command("worker")(jobs_cmd.worker)
app.command("demo")(lab_cmd.demo)
app.command("serve")(serve_cmd.serve)
app.command("reimage")(reimage_cmd.reimage)

log = logging.getLogger("remotehands")


def setup_logging() -> str | None:
    """Log to the state dir's log file (rotated), redacted. Returns the path, or None if it can't be opened."""
    try:
        settings = load_settings()
    except ConfigError:
        return None
    return log_to_file(settings)


def _fail(message: str, code: int, as_json: bool = False) -> int:
    message = redaction.redact(message)
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
    else:
        err_console.print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit code."""
    log_path = setup_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    try:
        result = app(args=args, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except RemoteHandsError as exc:
        log.info("command failed: %s", exc)
        code = _fail(str(exc), exc.exit_code, as_json)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = _fail("aborted", 1, as_json)
    except TyperException as exc:
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _fail(exc.format_message(), 2, as_json)
        code = 2
    except KeyboardInterrupt:
        code = _fail("interrupted; jobs keep their journal and resume on the next run or worker", 1, as_json)
    except Exception as exc:
        log.exception("internal error")
        where = f"; the traceback is in {log_path}" if log_path else ""
        code = _fail(f"internal error ({type(exc).__name__}: {exc}){where}", 1, as_json)
    sys.exit(code)
