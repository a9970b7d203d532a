"""Loads an Ansible YAML inventory directory into a typed ``Inventory``, or reports every problem in it at once.

The directory is an ordinary Ansible inventory: ``hosts.yml`` with ``all:`` at the top, site groups and
rack groups below it (``site`` and ``rack`` set as group vars), ``group_vars/`` and ``host_vars/``.
Variables are resolved with Ansible's own precedence (see ``remotehands.inventory.ansible_dir``), and each
problem names the file its value was written in. ``sites``, ``subscriptions`` and ``rh_ignore_vars`` are
global: they are read from group ``all`` (normally ``group_vars/all.yml``) and refused anywhere else.

Which variables are checked: operators keep their other Ansible variables in the same inventory, so not
every key has to be ours, but a typo in one of ours (``serial_numer``) must not pass silently. So:

- ``ansible_host`` is the management address and ``ansible_port`` the SSH port (default 22); every other
  ``ansible_*`` variable (connection and magic variables, ``ansible_group_priority``) belongs to Ansible and
  is ignored;
- a variable matching an entry of ``rh_ignore_vars`` (a list of names or shell-style patterns such as
  ``monitoring_*``, set in group ``all``) is ignored;
- every other variable must be a remotehands host field, wherever it is written (a group or a host); an
  unknown one is a problem listing the known fields and pointing at ``rh_ignore_vars``;
- a host field that does not apply to the host's kind (``power`` on a firewall) is a problem when written
  for the host itself, and ignored when inherited from a group, where it is a default for other members.
"""

from __future__ import annotations

from collections.abc import Mapping
from difflib import get_close_matches
from fnmatch import fnmatchcase
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from remotehands.errors import InventoryError, InventoryProblem
from remotehands.inventory.ansible_dir import AnsibleDir, Sourced, VarMap, read_ansible_dir
from remotehands.inventory.checks import Spot, problems_from_validation_error, text, type_name, unknown_keys
from remotehands.inventory.fields import HOST_FIELDS, Catalogue, Equipment, build_equipment
from remotehands.inventory.ip_plan import SiteIpPlan
from remotehands.inventory.models import (
    PROVIDER,
    Host,
    Inventory,
    NetworkDevice,
    Pdu,
    Site,
    StorageArray,
    Subscription,
)

GLOBAL_FIELDS = ("sites", "subscriptions", "rh_ignore_vars")
_SiteDecl = tuple[str, str, SiteIpPlan | None]  # description, time zone, IP plan
_IGNORE_HINT = "a variable for your own playbooks can be listed in rh_ignore_vars in group_vars/all.yml"


def load_inventory(path: Path) -> Inventory:
    """Load the inventory directory ``path`` into an ``Inventory``.

    Raises ``InventoryError`` holding every problem found (each with file, host and field) when there is
    at least one; never raises a YAML or pydantic error.
    """
    inventory, problems = _read(path)
    if problems or inventory is None:
        raise InventoryError(problems)
    return inventory


def check_inventory(path: Path) -> list[InventoryProblem]:
    """Every problem in the inventory directory ``path``; an empty list when it loads. Raises nothing."""
    return _read(path)[1]


def _read(path: Path) -> tuple[Inventory | None, list[InventoryProblem]]:
    problems: list[InventoryProblem] = []
    ansible = read_ansible_dir(path, problems)
    if ansible is None:
        return None, problems
    everyone = ansible.group_vars("all")
    ignore = _ignore_patterns(everyone.get("rh_ignore_vars"), problems)
    _check_variable_names(ansible, ignore, problems)
    sites = _read_sites(everyone.get("sites"), problems)
    subscriptions = _read_subscriptions(everyone.get("subscriptions"), problems)
    catalogue = Catalogue(ansible.hosts_file, frozenset(sites), frozenset(subscriptions))
    resolved = {name: ansible.host_vars(name) for name in ansible.hosts}
    equipment: dict[str, Equipment] = {}
    for name, entry in ansible.hosts.items():
        written = {str(key) for _, key in entry.written()}
        item = build_equipment(name, resolved[name], written, catalogue, problems)
        if item is not None:
            equipment[name] = item
    _check_one_site_per_host(ansible, problems)
    _check_duplicate_serials(resolved, problems)
    declared_pdus = {n for n, v in resolved.items() if (k := v.get("kind")) is not None and k.value == "pdu"}
    _check_outlets(equipment, declared_pdus, ansible.hosts_file, problems)
    _check_lun_hosts(equipment, ansible.hosts_file, problems)
    if problems:
        return None, problems
    try:
        return _assemble(path, sites, subscriptions, equipment), []
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, None, lambda _: str(path))


def _ignore_patterns(source: Sourced | None, problems: list[InventoryProblem]) -> tuple[str, ...]:
    if source is None:
        return ()
    value = source.value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(
            InventoryProblem(
                source.file,
                None,
                "rh_ignore_vars",
                "rh_ignore_vars must be a list of variable names or shell-style patterns, "
                "e.g. [monitoring_*, backup_policy]",
            )
        )
        return ()
    return tuple(value)


def _check_variable_names(
    ansible: AnsibleDir, ignore: tuple[str, ...], problems: list[InventoryProblem]
) -> None:
    for group in ansible.groups.values():
        for file, key in group.written():
            _check_name(file, None, group.name, key, ignore, problems)
    for host in ansible.hosts.values():
        for file, key in host.written():
            _check_name(file, host.name, None, key, ignore, problems)


def _check_name(
    file: str,
    host: str | None,
    group: str | None,
    key: object,
    ignore: tuple[str, ...],
    problems: list[InventoryProblem],
) -> None:
    name = str(key)
    if name.startswith("ansible_") or any(fnmatchcase(name, pattern) for pattern in ignore):
        return
    if name in GLOBAL_FIELDS:
        if group != "all":
            problems.append(
                InventoryProblem(
                    file,
                    host,
                    name,
                    f"{name} is global: declare it in group all (group_vars/all.yml), not "
                    + (f"in group {group}" if group else "on a host"),
                )
            )
        return
    if name not in HOST_FIELDS:
        where = f" in group {group}" if group else ""
        known = (*HOST_FIELDS, *GLOBAL_FIELDS)
        close = get_close_matches(name, known, n=1, cutoff=0.85)
        guess = f" (did you mean {close[0]}?)" if close else ""
        message = f"unknown field {name}{where}{guess}; known fields are {', '.join(known)}; {_IGNORE_HINT}"
        problems.append(InventoryProblem(file, host, name, message))


def _entries(
    source: Sourced | None, field: str, example: str, problems: list[InventoryProblem]
) -> list[tuple[Spot, str, Mapping[object, object]]]:
    """The (spot, name, body) entries of a global mapping such as ``sites``, reporting malformed ones."""
    if source is None:
        return []
    spot = Spot(source.file, None, field, problems)
    if not isinstance(source.value, Mapping):
        spot.report(f"{field} must be a mapping of name to {example}, not {type_name(source.value)}")
        return []
    entries: list[tuple[Spot, str, Mapping[object, object]]] = []
    for name, body in source.value.items():
        entry = spot.child(str(name))
        if not isinstance(name, str) or not name.strip():
            entry.report(f"names in {field} must be text")
        elif body is not None and not isinstance(body, Mapping):
            entry.report(f"{name} must be a mapping like {example}, not {type_name(body)}")
            entries.append((entry, name, {}))
        else:
            entries.append((entry, name, body or {}))
    return entries


def _read_sites(source: Sourced | None, problems: list[InventoryProblem]) -> dict[str, _SiteDecl]:
    """name -> (description, time zone, IP plan). The time zone sets the site's working day for SLA clocks."""
    sites: dict[str, _SiteDecl] = {}
    for spot, name, body in _entries(source, "sites", "{description: ..., timezone: ...}", problems):
        # Racks are not declared: they are derived from the hosts' rack values.
        unknown_keys(spot, body, ("description", "timezone", "ip_plan"))
        zone = text(spot.child("timezone"), body.get("timezone"), None) or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            spot.child("timezone").report(
                f"{zone!r} is not a time zone; use an IANA name such as Europe/Amsterdam"
            )
            zone = "UTC"
        description = text(spot.child("description"), body.get("description"), None) or ""
        sites[name] = (description, zone, _ip_plan(spot.child("ip_plan"), body.get("ip_plan")))
    return sites


def _ip_plan(spot: Spot, value: object) -> SiteIpPlan | None:
    """The site's IP plan, each problem reported at its field path (``ip_plan.prefixes.0.gateway``)."""
    if value is None:
        return None
    try:
        return SiteIpPlan.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            where = spot
            for part in error["loc"]:
                where = where.child(str(part))
            message = error["msg"].removeprefix("Value error, ")
            where.report(f"{message}; correct the IP plan in group_vars/all.yml")
        return None


def _read_subscriptions(source: Sourced | None, problems: list[InventoryProblem]) -> dict[str, str]:
    subscriptions: dict[str, str] = {}
    for spot, sub_id, body in _entries(source, "subscriptions", "{customer: ...}", problems):
        if sub_id == PROVIDER:
            spot.report(
                f"{PROVIDER} is reserved for the provider's own equipment; choose another subscription id"
            )
            continue
        unknown_keys(spot, body, ("customer",))
        customer = text(spot.child("customer"), body.get("customer"), "missing customer; name the customer")
        subscriptions[sub_id] = customer or ""
    return subscriptions


def _check_one_site_per_host(ansible: AnsibleDir, problems: list[InventoryProblem]) -> None:
    for host in ansible.hosts:
        groups = [g for g in ansible.groups_of(host) if "site" in ansible.group_vars(g)]
        # A group setting site below another one that does is overriding a default, not a second listing.
        listed = [g for g in groups if not any(g in ansible.ancestors(other) for other in groups)]
        by_site: dict[str, list[str]] = {}
        for group in listed:
            site = ansible.group_vars(group)["site"].value
            if isinstance(site, str):
                by_site.setdefault(site, []).append(group)
        if len(by_site) > 1:
            where = "; ".join(
                f"{site} (group {', '.join(groups)})" for site, groups in sorted(by_site.items())
            )
            problems.append(
                InventoryProblem(
                    ansible.hosts_file,
                    host,
                    "site",
                    f"host is listed under groups of different sites: {where}; a machine is in one place, "
                    "remove it from the other site's groups",
                )
            )


def _check_duplicate_serials(resolved: dict[str, VarMap], problems: list[InventoryProblem]) -> None:
    owners: dict[str, list[str]] = {}
    for host, variables in resolved.items():
        written = variables.get("serial_number")
        if written is not None and isinstance(written.value, str) and written.value.strip():
            owners.setdefault(written.value.strip().upper(), []).append(host)
    for serial, hosts in owners.items():
        for host in hosts if len(hosts) > 1 else ():
            others = ", ".join(h for h in hosts if h != host)
            problems.append(
                InventoryProblem(
                    resolved[host]["serial_number"].file,
                    host,
                    "serial_number",
                    f"serial number {serial} is also used by {others}; every machine has its own serial number, "
                    "check the chassis label",
                )
            )


def _assemble(
    path: Path,
    sites: dict[str, _SiteDecl],
    subscriptions: dict[str, str],
    equipment: dict[str, Equipment],
) -> Inventory:
    racks: dict[str, set[str]] = {}
    for item in equipment.values():
        if item.rack:
            racks.setdefault(item.site, set()).add(item.rack)
    return Inventory(
        source=str(path),
        sites={
            name: Site(
                name=name,
                description=description,
                timezone=zone,
                racks=tuple(sorted(racks.get(name, ()))),
                ip_plan=plan,
            )
            for name, (description, zone, plan) in sites.items()
        },
        subscriptions={
            sub_id: Subscription(id=sub_id, customer=customer) for sub_id, customer in subscriptions.items()
        },
        hosts={name: item for name, item in equipment.items() if isinstance(item, Host)},
        network_devices={name: item for name, item in equipment.items() if isinstance(item, NetworkDevice)},
        arrays={name: item for name, item in equipment.items() if isinstance(item, StorageArray)},
        pdus={name: item for name, item in equipment.items() if isinstance(item, Pdu)},
    )


def _check_lun_hosts(
    equipment: dict[str, Equipment], hosts_file: str, problems: list[InventoryProblem]
) -> None:
    """Every host an array's LUN names is an ESXi or Linux host of the inventory with SSH access, and has
    what that kind keeps on the LUN: a datastore (ESXi) or a mount point (Linux)."""
    for name, item in sorted(equipment.items()):
        if not isinstance(item, StorageArray):
            continue
        for lun, use in item.luns.items():
            field = f"luns.{lun}"
            twice = sorted({h for h in use.hosts if use.hosts.count(h) > 1})
            kinds = {h.kind for n in use.hosts if isinstance(h := equipment.get(n), Host)}
            if twice or {"esxi", "linux"} <= kinds:
                said = (
                    f"lists {', '.join(twice)} twice"
                    if twice
                    else "mixes ESXi and Linux hosts; one LUN holds either a VMFS datastore or a Linux filesystem"
                )
                problems.append(InventoryProblem(hosts_file, name, f"{field}.hosts", said))
                continue
            for host_name in use.hosts:
                host = equipment.get(host_name)
                problem = None
                if not isinstance(host, Host):
                    problem = (
                        f"host {host_name!r} is not in the inventory (hosts: a list of ESXi/Linux hosts)"
                    )
                elif host.kind not in ("esxi", "linux"):
                    problem = f"host {host_name} is a {host.kind}; only esxi and linux hosts are rescanned"
                elif host.ssh is None:
                    problem = f"host {host_name} has no ssh access; add ssh: {{username, password}} to it"
                elif host.kind == "esxi" and not use.datastore:
                    problem = f"host {host_name} is ESXi: give the VMFS datastore on the LUN as datastore"
                elif host.kind == "linux" and not use.mount:
                    problem = f"host {host_name} is Linux: give the filesystem's mount point as mount"
                if problem:
                    problems.append(InventoryProblem(hosts_file, name, f"{field}.hosts", problem))


def _check_outlets(
    equipment: dict[str, Equipment], pdus: set[str], hosts_file: str, problems: list[InventoryProblem]
) -> None:
    """Every pdu-outlet path names a PDU declared in the inventory, and no outlet powers two hosts."""
    users: dict[tuple[str, int], str] = {}
    for name, item in sorted(equipment.items()):
        if not isinstance(item, Host):
            continue
        for i, path in enumerate(item.power_paths):
            if path.type != "pdu-outlet" or path.pdu is None or path.outlet is None:
                continue
            field = "power.pdu" if i == 0 and not item.power_fallback else f"power.{i}.pdu"
            if path.pdu not in pdus:
                known = ", ".join(sorted(pdus)) or "none"
                problems.append(
                    InventoryProblem(
                        hosts_file,
                        name,
                        field,
                        f"pdu {path.pdu!r} is not in the inventory (add it with kind: pdu); PDUs: {known}",
                    )
                )
                continue
            other = users.setdefault((path.pdu, path.outlet), name)
            if other != name:
                problems.append(
                    InventoryProblem(
                        hosts_file,
                        name,
                        field.replace(".pdu", ".outlet"),
                        f"outlet {path.outlet} of {path.pdu} already powers {other}; one outlet, one host",
                    )
                )
