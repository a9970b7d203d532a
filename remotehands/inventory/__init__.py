"""The inventory: sites, racks, subscriptions and equipment, loaded from an Ansible YAML inventory directory."""

from remotehands.inventory.loader import check_inventory, load_inventory
from remotehands.inventory.models import (
    HOST_KINDS,
    PROVIDER,
    Credentials,
    Host,
    Inventory,
    NetworkDevice,
    PowerProfile,
    Site,
    StorageArray,
    Subscription,
)

__all__ = [
    "HOST_KINDS",
    "PROVIDER",
    "Credentials",
    "Host",
    "Inventory",
    "NetworkDevice",
    "PowerProfile",
    "Site",
    "StorageArray",
    "Subscription",
    "check_inventory",
    "load_inventory",
]
