"""``storage.expand_lun``: grow a LUN on its array, then rescan and grow on every host that uses it.

1. ``storage-precheck``: the request parses; every host the inventory maps to the LUN sees it; the LUN grows
   (never shrinks, never stays equal, unless an earlier job grew it on the array and left hosts behind: then
   this job finishes the hosts); its container has the room (free space, the array's maximum size for it).
   Which host grows what is decided here (ESXi: a host where the shared datastore is mounted grows it, the
   others refresh; Linux: the one host where the filesystem is mounted grows it) and kept in the job with the
   LUN's identity (its naa) and what the inventory said the hosts keep on it, so a resumed job does exactly
   what this one decided even if the inventory changes meanwhile;
2. ``storage-resize``: the array resizes the LUN (after a crash it is read first: never resized twice); the
   step is the job's point of no return (``Step.irreversible``): a LUN is never shrunk back, so from here on a
   failure stops the job as needs_operator, never as failed;
3. ``storage-verify-array``: the array reports the new size (kept: the hosts must see exactly that);
4. ``host-rescan:<host>`` per host, then ``host-grow:<host>`` per host: each its own journaled step, so a
   crash resumes at the host where it stopped;
5. ``storage-verify-hosts``: every host sees the new size, and what was grown shows it.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import closing
from typing import TYPE_CHECKING, Any

from remotehands.errors import (
    DeviceRefused,
    DeviceUnreachable,
    InvalidRequest,
    NeedsOperator,
    RemoteHandsError,
    VerificationFailed,
)
from remotehands.inventory.models import Host, LunUse, StorageArray
from remotehands.jobs.approval import CheckApproval
from remotehands.jobs.steps import Done, Reconciled, Step, StepContext, Verdict
from remotehands.reimage.access import pinned_ssh
from remotehands.ssh.client import HostSsh
from remotehands.storage import hostside
from remotehands.storage.arrays import driver_for
from remotehands.storage.base import ArrayDriver, Lun, gib
from remotehands.storage.request import ExpandRequest, parse_expand

if TYPE_CHECKING:
    from remotehands.runtime import Runtime

# What the host side grows (hostside): refused in the precheck otherwise, before the LUN is resized.
GROWABLE = frozenset({"vmfs", "ext4", "xfs"})
# A filesystem this much smaller than its LUN was not grown (ext4 keeps about 1.6% for its inode tables).
GROWN_SHARE = 0.975


def _array(ctx: StepContext) -> StorageArray:
    return ctx.runtime.inventory().array(ctx.target)


def check_room(request: ExpandRequest, array: StorageArray, driver: ArrayDriver, lun: Lun) -> str:
    """A line on the room ``lun`` has to grow to the requested size; raises ``InvalidRequest`` (field
    ``size``) for a shrink, an equal size, or a size the array cannot give, with the numbers."""
    if request.size <= lun.size:
        what = "shrink it" if request.size < lun.size else "leave it as it is"
        raise InvalidRequest(
            f"size {gib(request.size)} would {what}: {request.lun} is {gib(lun.size)} on {array.name} and every "
            "host sees that",
            fix="a LUN is only ever grown; ask for more than its size",
        )
    room = driver.room(lun)
    grow = request.size - lun.size
    if room.max_size is not None and request.size > room.max_size:
        raise InvalidRequest(
            f"size {gib(request.size)} is more than {array.name} allows for {request.lun} "
            f"({gib(room.max_size)})",
            fix=f"ask for at most {gib(room.max_size)}, or make a new LUN",
        )
    if grow > room.free:
        raise InvalidRequest(
            f"size: growing {request.lun} from {gib(lun.size)} to {gib(request.size)} needs {gib(grow)} "
            f"but {room.container} has {gib(room.free)} free",
            fix=f"free or add space in {room.container} first, or ask for at most {gib(lun.size + room.free)}",
        )
    return f"+{gib(grow)}; {room.container} has {gib(room.free)} free"


def lagging(size: int, views: dict[str, hostside.HostView]) -> list[str]:
    """The hosts that do not yet show a LUN of ``size`` bytes: the device, or what is mounted on it."""
    return [
        name
        for name, view in views.items()
        if view.device_size < size or (view.fs_size is not None and view.fs_size < size * GROWN_SHARE)
    ]


def refuse_ungrowable(views: dict[str, hostside.HostView]) -> None:
    """``DeviceRefused`` when a host has something mounted on the LUN that the host side cannot grow: found
    before the resize, not after it."""
    for name, view in views.items():
        if view.fstype is not None and view.fstype not in GROWABLE:
            raise DeviceRefused(
                f"{name}: {view.where}: remotehands grows {', '.join(sorted(GROWABLE))}, not {view.fstype}; "
                "nothing was resized",
                fix="grow it by hand after resizing the LUN on the array, or leave the mount out of luns:",
            )


def _kind(host: Host) -> hostside.HostKind:
    return "esxi" if host.kind == "esxi" else "linux"


def look_at_hosts(runtime: Runtime, use: LunUse, naa: str) -> dict[str, hostside.HostView]:
    """What every host of the LUN sees of it (read only); ``DeviceRefused`` when one does not see it."""
    views = {}
    for name in use.hosts:
        host = runtime.inventory().host(name)
        with pinned_ssh(runtime, host) as ssh:
            views[name] = hostside.look(ssh, _kind(host), naa, use)
    return views


class StoragePrecheck(Step):
    name = "storage-precheck"
    description = "check the new size, the array's room, and that every host of the LUN sees it"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``InvalidRequest`` (shrink, equal, no room, unknown LUN), ``DeviceRefused`` (a host does
        not see the LUN; the datastore or filesystem is mounted on no host, or a filesystem on two)."""
        array = _array(ctx)
        request = parse_expand(ctx.params, array)
        with closing(driver_for(array)) as driver:
            lun = driver.lun(request.lun)
            views = look_at_hosts(ctx.runtime, request.use, lun.naa)
            behind = lagging(lun.size, views)
            if request.size == lun.size and behind:
                room = f"already {gib(lun.size)} on the array; finishing {', '.join(behind)}"
            else:
                room = check_room(request, array, driver, lun)
        refuse_ungrowable(views)
        inventory = ctx.runtime.inventory()
        hosts = [
            {"name": n, "kind": _kind(inventory.host(n)), "fs_before": v.fs_size, "where": v.where}
            for n, v in views.items()
        ]
        _assign_roles(hosts, request, array)
        ctx.data.update(
            old_size=lun.size,
            size=request.size,
            naa=lun.naa,
            lun=request.lun,
            use=request.use.model_dump(mode="json"),
            hosts=hosts,
        )
        roles = ", ".join(f"{h['name']} ({h['role']})" for h in hosts)
        return Done(
            f"grow {request.lun} on {array.name} from {gib(lun.size)} to {gib(request.size)} ({room}); "
            f"hosts: {roles}"
        )


def _assign_roles(hosts: list[dict[str, Any]], request: ExpandRequest, array: StorageArray) -> None:
    """ESXi: the first host where the shared datastore is mounted grows it, the others refresh. Linux: the
    host where the filesystem is mounted grows it, the others only rescan. Mounted nowhere (or a Linux
    filesystem on two hosts) is refused: the LUN would grow and nothing on it could."""
    for kind, what in (("esxi", f"datastore {request.use.datastore}"), ("linux", request.use.mount)):
        group = [h for h in hosts if h["kind"] == kind]
        mounted = [h for h in group if h["fs_before"] is not None]
        if not group:
            continue
        if not mounted or (kind == "linux" and len(mounted) > 1):
            where = ", ".join(h["name"] for h in mounted) or "no host"
            raise DeviceRefused(
                f"{request.lun} of {array.name}: {what} is mounted on {where} of "
                + ", ".join(h["name"] for h in group),
                fix="mount it on exactly one host (two hosts mounting one non-cluster filesystem corrupt it)"
                if mounted
                else "mount it where it belongs before growing the LUN, or correct luns: in the inventory",
            )
        for h in group:
            if h is mounted[0]:
                h["role"] = "grows the datastore" if kind == "esxi" else "grows the filesystem"
            else:
                h["role"] = (
                    "rescans, refreshes the datastore" if kind == "esxi" else "rescans (not mounted here)"
                )


def _same_lun(ctx: StepContext, driver: ArrayDriver) -> Lun:
    """The LUN the precheck read, by name and identity; ``NeedsOperator`` when the name now means another
    LUN (replaced or renamed on the array since)."""
    lun = driver.lun(ctx.data["lun"])
    if lun.naa != ctx.data["naa"]:
        raise NeedsOperator(
            f"{ctx.data['lun']} on {driver.name} is now {lun.naa}, not the {ctx.data['naa']} the precheck read: "
            "it was replaced or renamed on the array",
            fix="find out what happened to the LUN; then cancel this job and open a new request",
        )
    return lun


class StorageResize(Step):
    name = "storage-resize"
    description = "resize the LUN on the array (read first: never twice)"
    changes_equipment = True
    irreversible = True

    def baseline(self, ctx: StepContext) -> dict[str, Any]:
        with closing(driver_for(_array(ctx))) as driver:
            return {"size": _same_lun(ctx, driver).size}

    def run(self, ctx: StepContext) -> Done:
        """Raises ``DeviceRefused`` (the array refused: nothing changed), ``DeviceUnreachable`` (it failed and
        still shows the old size: retried), ``NeedsOperator`` (it failed and the size cannot be read back)."""
        array, size = _array(ctx), int(ctx.data["size"])
        with closing(driver_for(array)) as driver:
            lun = _same_lun(ctx, driver)
            if lun.size >= size:
                return Done(f"{lun.name} is already {gib(lun.size)} on {array.name}")
            try:
                driver.resize(lun, size)
            except (DeviceUnreachable, VerificationFailed) as exc:
                return self._after_error(ctx, driver, lun, size, exc)
        return Done(f"{lun.name} resized on {array.name}: {gib(lun.size)} -> {gib(size)}")

    def _after_error(
        self, ctx: StepContext, driver: ArrayDriver, lun: Lun, size: int, error: RemoteHandsError
    ) -> Done:
        try:
            now = _same_lun(ctx, driver).size
        except RemoteHandsError as again:
            raise NeedsOperator(
                f"{driver.name} answered the resize of {lun.name} with an error ({error.message}) and its size "
                f"cannot be read back ({again.message}): it is not known whether it is {gib(lun.size)} or "
                f"{gib(size)}",
                fix=f"look at {lun.name} on {driver.name}; then 'remotehands jobs retry {ctx.job_id}' (it "
                "reads the size first and never resizes twice) or cancel the job",
            ) from None
        if now >= size:
            return Done(
                f"{lun.name} resized on {driver.name}: {gib(lun.size)} -> {gib(now)} (the array answered "
                f"{error.message}, but reads back the new size)"
            )
        if isinstance(error, DeviceUnreachable):
            raise error  # still the old size: the resize did not happen; retried
        raise NeedsOperator(
            f"{driver.name} answered the resize of {lun.name} in a way that cannot be read ({error.message}) "
            f"and reads back {gib(now)}",
            fix=f"look at {lun.name} on {driver.name}, then retry or cancel the job",
        ) from None

    def reconcile(self, ctx: StepContext, baseline: dict[str, Any]) -> Reconciled:
        """A worker died while resizing: the array's size tells whether it happened."""
        array, size = _array(ctx), int(ctx.data["size"])
        with closing(driver_for(array)) as driver:
            now = _same_lun(ctx, driver).size
        if now >= size:
            return Reconciled(Verdict.DONE, f"{ctx.data['lun']} is {gib(now)} on {array.name}")
        if now == int(ctx.data["old_size"]):
            return Reconciled(
                Verdict.RETRY, f"{ctx.data['lun']} is still {gib(now)}: the resize did not happen"
            )
        return Reconciled(
            Verdict.NEEDS_OPERATOR,
            f"{ctx.data['lun']} is {gib(now)} on {array.name}: neither the old {gib(ctx.data['old_size'])} nor "
            f"the asked {gib(size)}",
        )


class StorageVerifyArray(Step):
    name = "storage-verify-array"
    description = "read the LUN back from the array"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``NeedsOperator`` when the array does not report at least the new size. Keeps the size it
        reports: that is what every host must see (an array may round up, or someone grew it further)."""
        array, size = _array(ctx), int(ctx.data["size"])
        with closing(driver_for(array)) as driver:
            now = _same_lun(ctx, driver).size
        if now < size:
            raise NeedsOperator(
                f"{array.name} reports {ctx.data['lun']} at {gib(now)} after resizing it to {gib(size)}",
                fix="look at the LUN on the array, then retry or cancel the job",
            )
        ctx.data["array_size"] = now
        return Done(f"{array.name} reports {ctx.data['lun']} at {gib(now)}")


def _use(ctx: StepContext) -> LunUse:
    return LunUse.model_validate(ctx.data["use"])


def _entry(ctx: StepContext, host: str) -> dict[str, Any]:
    return next(h for h in ctx.data["hosts"] if h["name"] == host)


def _on_host(ctx: StepContext, step: str, host: str, exc: RemoteHandsError) -> NeedsOperator:
    said = exc.message if exc.message.startswith(f"{host}:") else f"{host}: {exc.message}"
    return NeedsOperator(
        f"{said}; the LUN is already {gib(ctx.data['array_size'])} on {ctx.target} (a LUN is never shrunk back)",
        fix=f"fix {host}, then 'remotehands jobs retry {ctx.job_id}': it resumes at {step}",
    )


class _HostStep(Step):
    """A step on one host of the LUN. A host that does not answer is retried; any other failure stops the
    job as needs_operator (the array side is done and cannot be undone)."""

    idempotent = True
    long = True  # a rescan may take 10 minutes, a filesystem grow 30 (hostside_shell's timeouts)
    verb = ""

    def __init__(self, host: str) -> None:
        self.host = host
        self.name = f"{self.verb}:{host}"

    def run(self, ctx: StepContext) -> Done:
        try:
            host = ctx.runtime.inventory().host(self.host)
            with pinned_ssh(ctx.runtime, host) as ssh:
                return self.on_host(ctx, ssh, _entry(ctx, self.host)["kind"])
        except DeviceUnreachable:
            raise
        except NeedsOperator:
            raise
        except RemoteHandsError as exc:
            raise _on_host(ctx, self.name, self.host, exc) from None

    @abstractmethod
    def on_host(self, ctx: StepContext, ssh: HostSsh, kind: hostside.HostKind) -> Done:
        """Act on the host over ``ssh``; raise a ``RemoteHandsError``."""


class HostRescan(_HostStep):
    description = "rescan the host's paths to the LUN and check it sees the new size"
    verb = "host-rescan"

    def on_host(self, ctx: StepContext, ssh: HostSsh, kind: hostside.HostKind) -> Done:
        seen, size = hostside.rescan(ssh, kind, ctx.data["naa"]), int(ctx.data["array_size"])
        if seen != size:
            raise VerificationFailed(f"after the rescan it sees {gib(seen)}, not {gib(size)}")
        return Done(f"{self.host} rescanned: sees {gib(seen)}")


class HostGrow(_HostStep):
    description = "grow what the host keeps on the LUN (or refresh its view of it)"
    verb = "host-grow"
    changes_equipment = True

    def on_host(self, ctx: StepContext, ssh: HostSsh, kind: hostside.HostKind) -> Done:
        if _entry(ctx, self.host)["role"].startswith("grows"):
            said = hostside.grow(ssh, kind, ctx.data["naa"], _use(ctx))
        else:
            said = hostside.refresh(ssh, kind, ctx.data["naa"], _use(ctx))
        return Done(f"{self.host}: {said}")


class StorageVerifyHosts(Step):
    name = "storage-verify-hosts"
    description = "every host sees the new size, and the grown datastore or filesystem shows it"
    idempotent = True

    def run(self, ctx: StepContext) -> Done:
        """Raises ``NeedsOperator`` naming the host that does not show it."""
        size, use, said = int(ctx.data["array_size"]), _use(ctx), []
        for entry in ctx.data["hosts"]:
            try:
                host = ctx.runtime.inventory().host(entry["name"])
                with pinned_ssh(ctx.runtime, host) as ssh:
                    view = hostside.look(ssh, entry["kind"], ctx.data["naa"], use)
                before = entry["fs_before"]
                if view.device_size != size:
                    raise VerificationFailed(f"sees the LUN at {gib(view.device_size)}, not {gib(size)}")
                if before is not None and (view.fs_size is None or view.fs_size < size * GROWN_SHARE):
                    raise VerificationFailed(f"{view.where} did not grow (it was {gib(before)})")
            except DeviceUnreachable:
                raise
            except RemoteHandsError as exc:
                raise _on_host(ctx, self.name, entry["name"], exc) from None
            grown = f", {view.where} {gib(before)} -> {gib(view.fs_size)}" if view.fs_size and before else ""
            said.append(f"{entry['name']} sees {gib(view.device_size)}{grown}")
        return Done("; ".join(said))


def expand_steps(data: dict[str, Any]) -> list[Step]:
    """The steps of a LUN expansion; the host steps follow the hosts its precheck found."""
    names = [h["name"] for h in data.get("hosts", [])]
    return [
        CheckApproval(),
        StoragePrecheck(),
        StorageResize(),
        StorageVerifyArray(),
        *(HostRescan(name) for name in names),
        *(HostGrow(name) for name in names),
        StorageVerifyHosts(),
    ]
