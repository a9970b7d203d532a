"""Settings: ``remotehands.toml`` plus ``RH_*`` environment overrides.

The file is the one named by ``RH_CONFIG``, else ``./remotehands.toml`` if present; without either the
defaults apply. Every key can be overridden by an environment variable ``RH_<KEY>`` (upper case):

    db_url          RH_DB_URL          sqlite:///~/.local/state/remotehands/remotehands.db
    executor        RH_EXECUTOR        local            or celery: `remotehands worker --site S` per site
    broker_url      RH_BROKER_URL      (none)           celery's broker, redis://... or amqp://...
    inventory       RH_INVENTORY       ./inventory
    playbooks       RH_PLAYBOOKS       ./playbooks       the playbooks playbook.run may run, by name
    ticket_system   RH_TICKET_SYSTEM   builtin
    ticket_key      RH_TICKET_KEY      reference to the key that encrypts sensitive tickets (env:/file:/vault:)
    workers         RH_WORKERS         4                 threads of the local executor
    lease_seconds   RH_LEASE_SECONDS   60                how long a worker's claim on a job lasts unrenewed
    bmc_timeout     RH_BMC_TIMEOUT     5                 seconds to wait for one BMC answer before calling it unreachable
    log_file        RH_LOG_FILE        ~/.local/state/remotehands/remotehands.log
    builtin_webhook_secret  RH_BUILTIN_WEBHOOK_SECRET  reference to the HMAC key of builtin webhooks
    webhook_tolerance       RH_WEBHOOK_TOLERANCE       300   seconds a signed webhook's timestamp may be off
    alertmanager_token      RH_ALERTMANAGER_TOKEN      reference to the bearer token Alertmanager sends

External ticket systems are tables in the file only (``[ticket_systems.<name>]``, see ``TicketSystemConfig``),
as are ``[sla]``, ``[escalation]`` and ``[alerts]`` (see ``remotehands.alerts.settings``), ``[reimage]``
and ``[images.<name>]`` (see ``remotehands.reimage.settings``), and ``[ipam]`` (``IpamSettings``: where the
IP plan lives, the built-in one or NetBox).

Secrets are never written in settings: ``ticket_key`` is a reference resolved at the moment of use.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from remotehands.alerts.settings import AlertSettings, EscalationSettings, SlaSettings
from remotehands.errors import ConfigError
from remotehands.reimage.settings import ImageConfig, ReimageSettings
from remotehands.tickets.extract import FieldMap


def state_dir() -> Path:
    """Where remotehands keeps its database and logs by default (XDG state dir)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "remotehands"


class TicketSystemConfig(BaseModel):
    """One external ticket system. Credentials and the webhook key are references (env:/file:/vault:)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["jira", "servicenow", "zendesk", "rt"]
    url: str = Field(pattern=r"^https?://")
    user: str | None = None  # Jira: account e-mail; ServiceNow: user name; Zendesk: agent e-mail
    token: str | None = None  # reference: API token (Jira, Zendesk, RT) or password (ServiceNow)
    webhook_secret: str | None = None  # reference: the key the system signs its webhooks with
    tls_ca: str | None = None  # a pinned CA bundle for this system
    tls_insecure: bool = False  # explicit exception to TLS verification, for this system only
    fields: FieldMap = FieldMap()
    customer: str = "provider"  # when no field maps the customer
    subscription: str = "provider"  # when no field maps the subscription
    # Our status -> the system's status name, where the default mapping of the adapter does not fit.
    statuses: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)  # adapter-specific, documented per adapter


class IpamSettings(BaseModel):
    """Where customers' addresses come from: ``builtin`` (the inventory's ``ip_plan`` per site, assignments in
    our database) or ``netbox`` (NetBox's IPAM at ``netbox_url``; the token is a reference)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["builtin", "netbox"] = "builtin"
    netbox_url: str | None = None
    netbox_token: str | None = None  # env:/file:/vault: reference to the API token
    netbox_ca: str | None = None  # pinned CA bundle for NetBox's TLS certificate
    netbox_tls_insecure: bool = False  # explicit exception to TLS verification
    netbox_prefix_role: str | None = None  # only prefixes with this role are allocated from

    @model_validator(mode="after")
    def _netbox_needs_url_and_token(self) -> IpamSettings:
        if self.source == "netbox" and not (self.netbox_url and self.netbox_token):
            raise ValueError("source netbox needs netbox_url and netbox_token (a reference like env:NAME)")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = ""
    executor: Literal["local", "celery"] = "local"
    broker_url: str = ""  # celery: redis://... or amqp://... (one broker; one queue per site)
    inventory: Path = Path("inventory")
    playbooks: Path = Path("playbooks")  # what playbook.run may run (by name, nothing outside it)
    ticket_system: Literal["builtin"] = "builtin"
    ticket_key: str | None = None
    workers: int = 4
    lease_seconds: int = 60
    bmc_timeout: float = 5.0
    log_file: Path | None = None
    builtin_webhook_secret: str | None = None
    webhook_tolerance: int = 300
    alertmanager_token: str | None = None
    ticket_systems: dict[str, TicketSystemConfig] = Field(default_factory=dict)
    sla: SlaSettings = SlaSettings()
    escalation: EscalationSettings = EscalationSettings()
    alerts: AlertSettings = AlertSettings()
    reimage: ReimageSettings = ReimageSettings()
    images: dict[str, ImageConfig] = Field(default_factory=dict)
    ipam: IpamSettings = IpamSettings()
    source: str = "defaults"

    @field_validator("workers", "lease_seconds", "bmc_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{state_dir() / 'remotehands.db'}"

    def resolved_log_file(self) -> Path:
        return self.log_file or state_dir() / "remotehands.log"


_KEYS = (
    "db_url",
    "executor",
    "broker_url",
    "inventory",
    "playbooks",
    "ticket_system",
    "ticket_key",
    "workers",
    "lease_seconds",
    "log_file",
    "builtin_webhook_secret",
    "webhook_tolerance",
    "alertmanager_token",
)
_FILE_ONLY_KEYS = ("ticket_systems", "sla", "escalation", "alerts", "reimage", "images", "ipam")


def load_settings(environ: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the settings file (if any) and apply ``RH_*`` overrides.

    Raises ``ConfigError`` naming the file or variable and the field when anything is invalid.
    """
    env = dict(os.environ if environ is None else environ)
    here = cwd or Path.cwd()
    values: dict[str, object] = {}
    source = "defaults"
    path: Path | None = None
    if env.get("RH_CONFIG"):
        path = Path(env["RH_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"RH_CONFIG names {path}, which does not exist", fix="point RH_CONFIG at a remotehands.toml"
            )
    elif (here / "remotehands.toml").is_file():
        path = here / "remotehands.toml"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid TOML: {exc}", fix="fix the syntax at the line named"
            ) from exc
        unknown = sorted(set(data) - set(_KEYS) - set(_FILE_ONLY_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: unknown setting(s) {', '.join(unknown)}",
                fix=f"known settings are {', '.join(_KEYS + _FILE_ONLY_KEYS)}",
            )
        values.update(data)
        source = str(path)
    for key in ("inventory", "playbooks"):
        if key in values and path is not None:
            # A relative path in the file is relative to the file, not to wherever we were started.
            given = Path(str(values[key])).expanduser()
            values[key] = given if given.is_absolute() else path.parent / given
    for key in _KEYS:
        var = f"RH_{key.upper()}"
        if env.get(var):
            values[key] = env[var]
    try:
        return Settings.model_validate({**values, "source": source})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        origin = source if str(first["loc"][0]) in _FILE_ONLY_KEYS else f"{source} or RH_{field.upper()}"
        raise ConfigError(
            f"setting {field} (from {origin}): {first['msg']}",
            fix="see the settings table in README.md",
        ) from None
