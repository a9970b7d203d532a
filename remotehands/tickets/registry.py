"""Which adapter serves which ticket system: the builtin one, and each ``[ticket_systems.<name>]``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from remotehands import secrets
from remotehands.config import TicketSystemConfig
from remotehands.errors import ConfigError
from remotehands.tickets.base import TicketSystem
from remotehands.tickets.http import HttpSettings

# kind -> "module:Class"; each class takes (name, config, http) and implements ``TicketSystem``.
ADAPTERS = {
    "jira": "remotehands.tickets.jira:JiraTickets",
    "zendesk": "remotehands.tickets.zendesk:ZendeskTickets",
    "servicenow": "remotehands.tickets.servicenow:ServiceNowTickets",
    "rt": "remotehands.tickets.rt:RtTickets",
}


def http_settings(name: str, config: TicketSystemConfig) -> HttpSettings:
    """Connection settings with the credential resolved now (it is registered with the redactor)."""
    token = secrets.resolve(config.token, field=f"ticket_systems.{name}.token") if config.token else None
    verify: bool | str = config.tls_ca or (not config.tls_insecure)
    auth: dict[str, str] = {}
    basic: tuple[str, str] | None = None
    if token is not None:
        if config.kind == "rt":
            auth["Authorization"] = f"token {token}"
        elif config.kind == "zendesk":
            basic = (f"{config.user}/token", token)
        elif config.user:
            basic = (config.user, token)  # Jira: e-mail + API token; ServiceNow: user + password
        else:
            auth["Authorization"] = f"Bearer {token}"
    return HttpSettings(base_url=config.url, auth=auth, basic=basic, verify=verify)


def adapter_class(kind: str) -> Callable[..., TicketSystem]:
    module_name, _, class_name = ADAPTERS[kind].partition(":")
    cls: Callable[..., TicketSystem] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build(name: str, config: TicketSystemConfig) -> TicketSystem:
    """The adapter for one configured system. Raises ``ConfigError``/``SecretError`` naming the setting."""
    if config.kind not in ADAPTERS:
        raise ConfigError(
            f"ticket_systems.{name}.kind {config.kind!r} has no adapter", fix="one of " + ", ".join(ADAPTERS)
        )
    return adapter_class(config.kind)(name, config, http_settings(name, config))
