"""``remotehands ssh``: show and pin the SSH host keys remotehands checks hosts against."""

from __future__ import annotations

import typer

from remotehands.cli.common import current_user, runtime
from remotehands.cli.output import JsonOption, emit, say
from remotehands.errors import DeviceRefused, DeviceUnreachable
from remotehands.ssh import keys

app = typer.Typer(help="SSH host keys: show what is pinned, pin a checked key.", no_args_is_help=True)


def _presented(address: str, port: int, name: str) -> tuple[str, object]:
    import paramiko

    try:
        transport = paramiko.Transport((address, port))
        try:
            transport.start_client(timeout=10)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    except (OSError, EOFError, paramiko.SSHException):
        raise DeviceUnreachable(
            f"{name} ({address}:{port}) does not answer on SSH", fix="is it up?"
        ) from None
    return keys.fingerprint(key.asbytes()), key


@app.command()
def show(host: str = typer.Argument(..., help="Inventory name."), as_json: bool = JsonOption) -> None:
    """The key pinned for HOST (database, else inventory) and the one it presents now."""
    rt = runtime()
    target = rt.inventory().host(host)
    pinned = keys.pinned(rt.db, target.name, target.ssh_host_key)
    try:
        presented: str | None = _presented(target.mgmt_address, target.ssh_port, target.name)[0]
    except DeviceUnreachable:
        presented = None
    data = {
        "host": target.name,
        "pinned": pinned.fingerprint if pinned else None,
        "pinned_from": pinned.source if pinned else None,
        "presented": presented,
        "match": bool(pinned and presented == pinned.fingerprint),
    }

    def render() -> None:
        say(f"{target.name}: pinned {data['pinned'] or 'nothing'} ({data['pinned_from'] or '-'})")
        say(f"{target.name}: presents {presented or 'nothing (no answer)'}")

    emit(data, as_json, render)


@app.command()
def pin(
    host: str = typer.Argument(..., help="Inventory name."),
    fingerprint: str = typer.Option(
        ..., "--fingerprint", help="SHA256:... as read at the host's console (ssh-keygen -lf on its key)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Pin the key HOST presents, only if its fingerprint is the one you checked out of band."""
    rt = runtime()
    target = rt.inventory().host(host)
    presented, key = _presented(target.mgmt_address, target.ssh_port, target.name)
    if presented != fingerprint.strip():
        raise DeviceRefused(
            f"{target.name} presents {presented}, not the {fingerprint.strip()} you checked; nothing was pinned",
            fix="check the fingerprint at the host's console again; a mismatch may be another machine",
        )
    import paramiko

    assert isinstance(key, paramiko.PKey)
    keys.pin(rt.db, target.name, key, by=f"{current_user()} (ssh pin)")
    emit(
        {"host": target.name, "pinned": presented}, as_json, lambda: say(f"{target.name}: pinned {presented}")
    )
