"""Redfish payloads as declared fields: only what the driver reads, parsed once where the bytes arrive.

Every model ignores properties it does not declare (BMCs add OEM sections freely) and is frozen. Field
names are ours; aliases are the Redfish property names (DSP0268 schemas).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Link(_Payload):
    uri: str = Field(alias="@odata.id")


class RootLinks(_Payload):
    sessions: Link | None = Field(None, alias="Sessions")


class ServiceRoot(_Payload):
    systems: Link | None = Field(None, alias="Systems")
    managers: Link | None = Field(None, alias="Managers")
    session_service: Link | None = Field(None, alias="SessionService")
    links: RootLinks = Field(default_factory=RootLinks, alias="Links")

    def sessions_uri(self) -> str | None:
        """Where to POST a login: ``Links.Sessions``, else the fixed URI of DSP0266 when a session service exists."""
        if self.links.sessions is not None:
            return self.links.sessions.uri
        if self.session_service is not None:
            return "/redfish/v1/SessionService/Sessions"
        return None


class Collection(_Payload):
    members: list[Link] = Field(default_factory=list, alias="Members")


class ResetAction(_Payload):
    target: str
    allowable: list[str] | None = Field(None, alias="ResetType@Redfish.AllowableValues")
    action_info: str | None = Field(None, alias="@Redfish.ActionInfo")


class SystemActions(_Payload):
    reset: ResetAction | None = Field(None, alias="#ComputerSystem.Reset")


class Boot(_Payload):
    target: str | None = Field(None, alias="BootSourceOverrideTarget")
    enabled: str | None = Field(None, alias="BootSourceOverrideEnabled")
    mode: str | None = Field(None, alias="BootSourceOverrideMode")
    targets: list[str] | None = Field(None, alias="BootSourceOverrideTarget@Redfish.AllowableValues")
    modes: list[str] | None = Field(None, alias="BootSourceOverrideMode@Redfish.AllowableValues")

    @property
    def lists_mode(self) -> bool:
        """True when the BMC shows ``BootSourceOverrideMode`` (so it can be set), even as null."""
        return "mode" in self.model_fields_set or self.modes is not None


class SystemLinks(_Payload):
    managed_by: list[Link] = Field(default_factory=list, alias="ManagedBy")


class ComputerSystem(_Payload):
    """A ``ComputerSystem``: what discovery needs (actions, boot, links) and the power state."""

    id: str | None = Field(None, alias="Id")
    power_state: str | None = Field(None, alias="PowerState")
    boot: Boot = Field(default_factory=Boot, alias="Boot")
    actions: SystemActions = Field(default_factory=SystemActions, alias="Actions")
    links: SystemLinks = Field(default_factory=SystemLinks, alias="Links")
    virtual_media: Link | None = Field(None, alias="VirtualMedia")


class SystemPower(_Payload):
    """The one property a status read needs: parsing less is part of keeping a status call cheap."""

    power_state: str | None = Field(None, alias="PowerState")


class SystemBoot(_Payload):
    boot: Boot = Field(default_factory=Boot, alias="Boot")


class ActionInfoParameter(_Payload):
    name: str = Field(alias="Name")
    allowable: list[str] | None = Field(None, alias="AllowableValues")


class ActionInfo(_Payload):
    parameters: list[ActionInfoParameter] = Field(default_factory=list, alias="Parameters")


class Manager(_Payload):
    virtual_media: Link | None = Field(None, alias="VirtualMedia")


class ActionTarget(_Payload):
    target: str


class VirtualMediaActions(_Payload):
    insert: ActionTarget | None = Field(None, alias="#VirtualMedia.InsertMedia")
    eject: ActionTarget | None = Field(None, alias="#VirtualMedia.EjectMedia")


class VirtualMediaDevice(_Payload):
    media_types: list[str] = Field(default_factory=list, alias="MediaTypes")
    image: str | None = Field(None, alias="Image")
    inserted: bool | None = Field(None, alias="Inserted")
    actions: VirtualMediaActions = Field(default_factory=VirtualMediaActions, alias="Actions")

    @property
    def takes_cd(self) -> bool:
        return any(kind.upper() in ("CD", "DVD") for kind in self.media_types)


class Message(_Payload):
    message_id: str = Field("", alias="MessageId")
    message: str = Field("", alias="Message")

    @property
    def key(self) -> str:
        """The message key without registry and version: ``Base.1.16.ResourceInUse`` -> ``ResourceInUse``."""
        return self.message_id.rsplit(".", 1)[-1]


class ErrorDetail(_Payload):
    code: str = ""
    message: str = ""
    extended: list[Message] = Field(default_factory=list, alias="@Message.ExtendedInfo")


class ErrorBody(_Payload):
    """A Redfish error answer (DSP0266 9.6). Some BMCs put ``@Message.ExtendedInfo`` at the top level."""

    error: ErrorDetail | None = None
    extended: list[Message] = Field(default_factory=list, alias="@Message.ExtendedInfo")

    def messages(self) -> list[Message]:
        """Every message of the answer, the ``error.code`` one first."""
        found: list[Message] = []
        if self.error is not None:
            if self.error.code:
                found.append(Message(MessageId=self.error.code, Message=self.error.message))
            found += self.error.extended
        return found + self.extended
