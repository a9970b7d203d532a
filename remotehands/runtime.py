"""Everything a command or a worker needs, built once from the settings: DB, tickets, inventory, drivers."""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from remotehands.bmc.base import PowerDriver
from remotehands.config import Settings, load_settings
from remotehands.db import Database
from remotehands.errors import ConfigError
from remotehands.inventory.models import Host, Inventory, PowerProfile
from remotehands.tickets.base import TicketSystem
from remotehands.tickets.builtin import BuiltinTickets
from remotehands.tickets.crypto import TicketCipher

if TYPE_CHECKING:
    from remotehands.bmc.redfish_pool import RedfishSessionPool


class Runtime:
    """Lazily built services. Safe to share between the executor's threads."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._inventory: Inventory | None = None
        self._inventory_stamp: float | None = None
        self._lock = threading.Lock()
        self._systems: dict[str, TicketSystem] = {}

    @cached_property
    def cipher(self) -> TicketCipher:
        return TicketCipher(self.settings)

    @cached_property
    def db(self) -> Database:
        db = Database(self.settings.resolved_db_url(), cipher=self.cipher)
        db.migrate()
        return db

    @cached_property
    def tickets(self) -> BuiltinTickets:
        from remotehands.jobs import actions

        return BuiltinTickets(
            self.db,
            self.cipher,
            actions.names(),
            sla=self.settings.sla,
            escalation=self.settings.escalation,
        )

    def ticket_system(self, name: str) -> TicketSystem:
        """The adapter of ticket system ``name``: ``builtin`` or a ``[ticket_systems.<name>]`` of the settings.

        Raises ``ConfigError`` for a name the settings do not define."""
        if name == "builtin":
            return self.tickets
        with self._lock:
            if name not in self._systems:
                config = self.settings.ticket_systems.get(name)
                if config is None:
                    raise ConfigError(
                        f"ticket system {name!r} is not configured",
                        fix="add a [ticket_systems."
                        + name
                        + "] table to remotehands.toml; configured: "
                        + ", ".join(["builtin", *sorted(self.settings.ticket_systems)]),
                    )
                from remotehands.tickets import registry

                self._systems[name] = registry.build(name, config)
            return self._systems[name]

    @property
    def inventory_path(self) -> Path:
        return self.settings.inventory

    def inventory(self) -> Inventory:
        """The inventory, re-read when ``hosts.yml`` changes. Raises ``InventoryError`` listing every problem."""
        from remotehands.inventory import load_inventory

        path = self.inventory_path
        hosts_file = path / "hosts.yml"
        stamp = hosts_file.stat().st_mtime if hosts_file.exists() else None
        with self._lock:
            if self._inventory is None or stamp != self._inventory_stamp:
                self._inventory = load_inventory(path)
                self._inventory_stamp = stamp
            return self._inventory

    def power_driver(self, host: Host, profile: PowerProfile | None = None) -> PowerDriver:
        """The driver of one of ``host``'s power paths (the first by default), credentials resolved now."""
        from remotehands.bmc.factory import power_driver_for

        return power_driver_for(
            host,
            profile or host.power,
            self.inventory(),
            timeout=self.settings.bmc_timeout,
            redfish_sessions=self.redfish_sessions,
        )

    @cached_property
    def redfish_sessions(self) -> RedfishSessionPool:
        """One Redfish login per service and credentials for the whole process (bulk reads need it)."""
        from remotehands.bmc.redfish_pool import RedfishSessionPool

        return RedfishSessionPool()
