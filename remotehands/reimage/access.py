"""What a reimage step needs around the host: an SSH session with the pinned key (or, after the install,
taking the new key for this job only), and the image it installs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import paramiko

from remotehands import secrets
from remotehands.errors import DeviceRefused, DeviceUnreachable, InvalidRequest
from remotehands.inventory.models import Host
from remotehands.jobs.steps import StepContext
from remotehands.reimage.settings import ImageConfig
from remotehands.ssh import keys
from remotehands.ssh.client import HostSsh

if TYPE_CHECKING:
    from remotehands.runtime import Runtime


def image_of(ctx: StepContext) -> tuple[str, ImageConfig]:
    """The job's image (params ``image``), from the settings. Raises ``InvalidRequest`` naming the fix."""
    name = str(ctx.params.get("image") or "")
    images = ctx.runtime.settings.images
    if name not in images:
        raise InvalidRequest(
            f"image {name!r} is not configured" if name else "the request names no image",
            fix="configured images: "
            + (", ".join(sorted(images)) or "none; add [images.<name>] to remotehands.toml"),
        )
    return name, images[name]


def pinned_ssh(runtime: Runtime, host: Host, *, timeout: float = 10.0) -> HostSsh:
    """An SSH session to ``host`` whose key must be the pinned one (the DB's pin, else the inventory's).

    Raises ``DeviceRefused`` (no SSH access in the inventory, refused login, changed key) or
    ``DeviceUnreachable``."""
    if host.ssh is None:
        raise DeviceRefused(
            f"{host.name} has no ssh access in the inventory", fix="add ssh: {username, password: env:NAME}"
        )
    return HostSsh(
        host.name,
        host.mgmt_address,
        host.ssh_port,
        host.ssh.username,
        password=secrets.resolve(host.ssh.password, field=f"{host.name}.ssh.password"),
        expected=keys.pinned(runtime.db, host.name, host.ssh_host_key),
        timeout=timeout,
    )


def ssh_to(
    ctx: StepContext, *, take_new_key: bool = False, timeout: float = 10.0, host: Host | None = None
) -> HostSsh:
    """An SSH session to the job's host (or to ``host``, e.g. a controller Mac, with its pinned key). With ``take_new_key`` (after its OS was reinstalled by this job)
    the key the host presents is pinned for it, recorded on the ticket; otherwise the pinned key must match.

    Raises ``DeviceRefused`` (no SSH access in the inventory, refused login, changed key) or
    ``DeviceUnreachable``."""
    host = host or ctx.host()
    if not take_new_key:
        return pinned_ssh(ctx.runtime, host, timeout=timeout)
    if host.ssh is None:
        raise DeviceRefused(
            f"{host.name} has no ssh access in the inventory", fix="add ssh: {username, password: env:NAME}"
        )
    password = secrets.resolve(host.ssh.password, field=f"{host.name}.ssh.password")
    db = ctx.runtime.db

    def pin(key: paramiko.PKey) -> None:
        if keys.fingerprint(key.asbytes()) == ctx.data.get("old_key"):
            # Still the OS that was to be erased (the install has not begun): never pin the old key as the
            # new one.
            raise DeviceUnreachable(f"{host.name} still presents the old OS's host key")
        printed = keys.pin(db, host.name, key, by=f"job-{ctx.job_id} (reimage)")
        ctx.data["pinned_key"] = printed
        ctx.tell_ticket(f"new SSH host key of {host.name} pinned on first use after the reinstall: {printed}")

    return HostSsh(
        host.name,
        host.mgmt_address,
        host.ssh_port,
        host.ssh.username,
        password=password,
        accept_new=pin,
        timeout=timeout,
    )
