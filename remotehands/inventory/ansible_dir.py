"""Reads an Ansible YAML inventory directory the way Ansible does, keeping the file each variable came from.

Mirrors, for the subset remotehands uses, three pieces of Ansible (checked against ansible-core 2.19):

- the ``yaml`` inventory plugin: ``hosts.yml`` (or ``hosts.yaml``) holding ``all:``, each group with
  ``vars``, ``children`` and ``hosts``; a group or host listed twice is one group or host whose variables
  are set key by key in file order; inline ``ansible_group_priority`` sets the group's priority;
- the ``host_group_vars`` vars plugin: the first of ``group_vars/<group>`` (a file, or a directory read
  recursively in sorted order, skipping hidden and ``~`` files), ``<group>.yml``, ``<group>.yaml`` and
  ``<group>.json``; the same for ``host_vars/<host>``; later files win;
- ``VariableManager`` with the default ``VARIABLE_PRECEDENCE`` and ``hash_behaviour=replace`` (a dict is
  replaced whole, never merged), lowest first: inline vars of ``all``; inline vars of the host's other
  groups; ``group_vars/all``; ``group_vars`` of the other groups; the host's vars in ``hosts.yml``;
  ``host_vars``. Groups are ordered by depth (longest path from ``all``), then priority, then name, the
  later winning. Hence a quirk Ansible users meet too: a parent's ``group_vars`` file beats a child
  group's inline ``vars:``.

Only ``yaml.safe_load`` is used. Problems are appended to a list, not raised, so that the caller can
report every one of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remotehands.errors import InventoryProblem
from remotehands.inventory.checks import type_name
from remotehands.inventory.yaml_file import load_yaml

HOSTS_FILES = ("hosts.yml", "hosts.yaml")
_VARS_EXTENSIONS = (".yml", ".yaml", ".json")
_GROUP_SECTIONS = ("vars", "children", "hosts")
# Host names end up in tickets, job records and host_vars paths: keep them to plain DNS-like labels.
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Sourced:
    """A variable's value and the file it was written in."""

    value: object
    file: str


VarMap = dict[str, Sourced]


@dataclass
class _Entry:
    """A group or a host: its inline vars from the hosts file and its vars files, in load order."""

    name: str
    inline: VarMap = field(default_factory=dict)
    file_layers: list[tuple[str, Mapping[object, object]]] = field(default_factory=list)

    def file_vars(self) -> VarMap:
        """The variables of the vars files, later files winning."""
        merged: VarMap = {}
        for file, data in self.file_layers:
            merged.update({str(k): Sourced(v, file) for k, v in data.items()})
        return merged

    def written(self) -> list[tuple[str, object]]:
        """Every (file, key) written for this entry, inline first; keys may be of any YAML type."""
        keys: list[tuple[str, object]] = [(s.file, k) for k, s in self.inline.items()]
        keys += [(file, k) for file, data in self.file_layers for k in data]
        return keys


@dataclass
class GroupEntry(_Entry):
    """A group: its parents, its priority and depth (Ansible's merge order) and its variables."""

    parents: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0


@dataclass
class HostEntry(_Entry):
    """A host: the groups it is listed under and its own variables."""

    groups: list[str] = field(default_factory=list)  # the groups it is listed under directly


@dataclass
class AnsibleDir:
    """An inventory directory as Ansible sees it: groups, hosts, and every variable with its file."""

    root: Path
    hosts_file: str
    groups: dict[str, GroupEntry] = field(default_factory=dict)
    hosts: dict[str, HostEntry] = field(default_factory=dict)

    def ancestors(self, group: str) -> set[str]:
        """Every group above ``group`` (not including itself)."""
        found: set[str] = set()
        stack = list(self.groups[group].parents)
        while stack:
            name = stack.pop()
            if name not in found:
                found.add(name)
                stack.extend(self.groups[name].parents)
        return found

    def groups_of(self, host: str) -> list[str]:
        """The host's groups and their ancestors except ``all``, in Ansible's merge order (lowest first)."""
        names: set[str] = set()
        for group in self.hosts[host].groups:
            names |= {group, *self.ancestors(group)}
        names.discard("all")
        entries = [self.groups[n] for n in names]
        return [g.name for g in sorted(entries, key=lambda g: (g.depth, g.priority, g.name))]

    def group_vars(self, group: str) -> VarMap:
        """The group's own variables: inline vars, overridden by its group_vars files."""
        entry = self.groups[group]
        return {**entry.inline, **entry.file_vars()}

    def host_vars(self, host: str) -> VarMap:
        """The host's variables resolved with Ansible's precedence, each with the file that won."""
        groups = [self.groups[g] for g in self.groups_of(host)]
        everyone = self.groups["all"]
        entry = self.hosts[host]
        resolved: VarMap = dict(everyone.inline)
        for group in groups:
            resolved.update(group.inline)
        resolved.update(everyone.file_vars())
        for group in groups:
            resolved.update(group.file_vars())
        resolved.update(entry.inline)
        resolved.update(entry.file_vars())
        return resolved


def read_ansible_dir(root: Path, problems: list[InventoryProblem]) -> AnsibleDir | None:
    """Read the inventory directory ``root``; None when there is no usable hosts file.

    Appends an ``InventoryProblem`` to ``problems`` for each structural problem (missing directory or
    hosts file, YAML errors, a layout that is not ``all:`` with groups below it, bad vars files) and
    carries on where it can. Raises nothing.
    """
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        problems.append(
            InventoryProblem(
                str(root), None, None, f"inventory directory {what}; pass the directory holding hosts.yml"
            )
        )
        return None
    present = [root / name for name in HOSTS_FILES if (root / name).is_file()]
    if not present:
        problems.append(
            InventoryProblem(
                str(root / HOSTS_FILES[0]),
                None,
                None,
                "no hosts.yml in the inventory directory; create it with 'all:' at the top",
            )
        )
        _check_vars_syntax(root, problems)
        return None
    if len(present) > 1:
        problems.append(
            InventoryProblem(
                str(present[1]),
                None,
                None,
                "both hosts.yml and hosts.yaml exist and Ansible reads both; keep one",
            )
        )
    inventory = AnsibleDir(root=root, hosts_file=str(present[0]))
    ok, data = load_yaml(present[0], problems)
    if ok:
        _HostsFileParser(inventory, problems).parse(data)
    if "all" not in inventory.groups:
        _check_vars_syntax(root, problems)
        return None
    _compute_depths(inventory)
    for subdir in ("group_vars", "host_vars"):
        if (root / subdir).exists() and not (root / subdir).is_dir():
            problems.append(
                InventoryProblem(
                    str(root / subdir), None, None, f"{subdir} must be a directory; Ansible skips it"
                )
            )
    for group in inventory.groups.values():
        group.file_layers = _read_vars_files(root / "group_vars", group.name, problems)
    for host in inventory.hosts.values():
        host.file_layers = _read_vars_files(root / "host_vars", host.name, problems)
    return inventory


class _HostsFileParser:
    """Walks hosts.yml like Ansible's yaml inventory plugin, reporting what that plugin would warn about."""

    def __init__(self, inventory: AnsibleDir, problems: list[InventoryProblem]) -> None:
        self.inventory = inventory
        self.problems = problems
        self.file = inventory.hosts_file

    def report(self, host: str | None, message: str, field: str | None = None) -> None:
        """Record a problem in the hosts file."""
        self.problems.append(InventoryProblem(self.file, host, field, message))

    def parse(self, data: object) -> None:
        """Read the hosts file's parsed YAML ``data`` into the inventory; problems are reported, not raised."""
        layout = (
            "the file must be a mapping whose only top-level key is 'all:', with groups under all: children:"
        )
        if data is None:
            self.report(None, f"the hosts file is empty; {layout}")
            return
        if not isinstance(data, Mapping):
            self.report(None, f"the top level is {type_name(data)}; {layout}")
            return
        if "plugin" in data:
            self.report(None, f"this is an inventory plugin configuration, not a YAML inventory; {layout}")
            return
        for key in data:
            if key != "all":
                self.report(None, f"top-level key {key!r} is outside 'all:'; {layout}")
        if "all" not in data:
            return
        self._group("all", data["all"], parent=None, path=())

    def _group(self, name: str, body: object, parent: str | None, path: tuple[str, ...]) -> None:
        groups = self.inventory.groups
        if name in path or (parent is not None and name in groups and parent in self._descendants(name)):
            self.report(None, f"group {name} is placed inside itself (under {parent}); remove the loop")
            return
        entry = groups.setdefault(name, GroupEntry(name))
        if parent is not None and parent not in entry.parents:
            entry.parents.append(parent)
        if body is None:
            return
        if not isinstance(body, Mapping):
            self.report(
                None,
                f"group {name} is {type_name(body)}; a group is a mapping with vars, children and/or hosts",
            )
            return
        for key, written in body.items():
            if key not in _GROUP_SECTIONS:
                self.report(
                    None,
                    f"group {name} has the key {key!r}; only vars, children and hosts are valid "
                    "(put variables under vars:)",
                )
                continue
            # Ansible accepts "hosts: name" for a single entry.
            section = {written: None} if isinstance(written, str) else written
            if section is None:
                continue
            if not isinstance(section, Mapping):
                self.report(None, f"group {name}: {key} is {type_name(section)}; it must be a mapping")
                continue
            if key == "vars":
                self._group_vars(entry, section)
            elif key == "children":
                for child, child_body in section.items():
                    if not isinstance(child, str):
                        self.report(None, f"group {name}: child group name {child!r} must be text")
                        continue
                    self._group(child, child_body, parent=name, path=(*path, name))
            else:
                for host, host_body in section.items():
                    self._host(host, host_body, name)

    def _descendants(self, name: str) -> set[str]:
        found: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            for group in self.inventory.groups.values():
                if current in group.parents and group.name not in found:
                    found.add(group.name)
                    stack.append(group.name)
        return found

    def _group_vars(self, entry: GroupEntry, section: Mapping[object, object]) -> None:
        for var, value in section.items():
            if var == "ansible_group_priority":
                if isinstance(value, int) and not isinstance(value, bool):
                    entry.priority = value
                else:
                    self.report(None, f"group {entry.name}: ansible_group_priority must be a whole number")
                continue
            entry.inline[str(var)] = Sourced(value, self.file)

    def _host(self, name: object, body: object, group: str) -> None:
        if not isinstance(name, str) or not _HOST_NAME.match(name):
            self.report(
                None,
                f"host name {name!r} under group {group} is not valid; use letters, digits, '.', '_' and '-' "
                "(ranges like mac-[01:10] are not supported: list each host)",
            )
            return
        if body is not None and not isinstance(body, Mapping):
            self.report(name, f"the host's entry is {type_name(body)}; it must be a mapping of variables")
            return
        entry = self.inventory.hosts.setdefault(name, HostEntry(name))
        if group not in entry.groups:
            entry.groups.append(group)
        for var, value in (body or {}).items():
            entry.inline[str(var)] = Sourced(value, self.file)


def _compute_depths(inventory: AnsibleDir) -> None:
    # Ansible's depth is the longest path from 'all'; loops were refused while parsing.
    depths: dict[str, int] = {}

    def depth(name: str) -> int:
        """Longest path from 'all' to group ``name``."""
        if name not in depths:
            parents = inventory.groups[name].parents
            depths[name] = 1 + max(depth(p) for p in parents) if parents else 0
        return depths[name]

    for group in inventory.groups.values():
        group.depth = depth(group.name)


def _read_vars_files(
    directory: Path, name: str, problems: list[InventoryProblem]
) -> list[tuple[str, Mapping[object, object]]]:
    if not directory.is_dir() or name in (".", "..") or "/" in name:
        return []
    candidates = [directory / name] + [directory / f"{name}{ext}" for ext in _VARS_EXTENSIONS]
    present = [c for c in candidates if c.exists()]
    if not present:
        return []
    if len(present) > 1:
        names = ", ".join(p.name for p in present)
        problems.append(
            InventoryProblem(
                str(present[1]),
                None,
                None,
                f"{directory.name} has {names} for {name}; Ansible reads only {present[0].name}: merge them into one",
            )
        )
    files = _dir_files(present[0]) if present[0].is_dir() else [present[0]]
    layers: list[tuple[str, Mapping[object, object]]] = []
    for path in files:
        ok, data = load_yaml(path, problems)
        if not ok or data is None:  # Ansible skips empty files
            continue
        if not isinstance(data, Mapping):
            problems.append(
                InventoryProblem(
                    str(path),
                    None,
                    None,
                    f"the file holds {type_name(data)}; it must be a mapping of variable: value",
                )
            )
            continue
        layers.append((str(path), data))
    return layers


def _check_vars_syntax(root: Path, problems: list[InventoryProblem]) -> None:
    # Without a usable hosts file the groups are unknown; still report broken vars files now, not later.
    for subdir in ("group_vars", "host_vars"):
        if (root / subdir).is_dir():
            for path in _dir_files(root / subdir):
                load_yaml(path, problems)


def _dir_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.name.endswith("~"):
            continue
        if path.is_dir() and not path.suffix:
            found.extend(_dir_files(path))
        elif path.is_file() and (not path.suffix or path.suffix in _VARS_EXTENSIONS):
            found.append(path)
    return found
