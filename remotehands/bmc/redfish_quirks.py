"""What BMCs do that the Redfish standard does not say, as data: error answers that mean something else.

Each ``Quirk`` recognises one answer by HTTP status and message key (the part of a ``MessageId`` after the
registry and version, so ``Base.1.8.X`` and ``Base.1.16.X`` match alike) or by message text, and says what
the driver does with it. A new BMC family's way of saying the same thing is an entry here, not code.

Also here: which ``ResetType`` values carry out each of our power verbs, in order of preference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from remotehands.bmc.base import PowerAction
from remotehands.bmc.redfish_models import Message


@dataclass(frozen=True)
class Quirk:
    """An error answer recognised by status and message key or text."""

    name: str
    statuses: frozenset[int]
    keys: frozenset[str] = frozenset()
    text: re.Pattern[str] | None = None

    def matches(self, status: int, messages: list[Message]) -> bool:
        """True when the answer has one of ``statuses`` and a message with a listed key or matching text."""
        if status not in self.statuses:
            return False
        return any(
            m.key in self.keys or (self.text is not None and self.text.search(m.message)) for m in messages
        )


# Power-on refused right after an off: the BMC is still finishing the off (seen on iDRAC, Supermicro,
# and the OpenBMC family). Retried after a short delay.
ON_RIGHT_AFTER_OFF = Quirk(
    "power-on refused right after an off",
    frozenset({400, 409}),
    frozenset({"ActionParameterValueConflict", "PropertyValueConflict"}),
)
ON_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)

# A boot override cannot be changed while the host is in POST (HPE iLO). Retried, then a retryable error.
BOOT_OVERRIDE_DURING_POST = Quirk(
    "boot override refused during POST",
    frozenset({400, 409, 503}),
    frozenset({"UnableToModifyDuringSystemPOST"}),
)
POST_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)

# An off of a host that is off answered with an error (iDRAC PSU501 "Server is already powered OFF.",
# others in words). The host is where it was asked to be: success.
ALREADY_OFF = Quirk(
    "already off",
    frozenset({400, 409}),
    frozenset({"PSU501"}),
    re.compile(r"\balready\b.*\b(powered[ -])?off\b|\bis (powered )?off already\b", re.IGNORECASE),
)

# InsertMedia refusing its optional parameters Inserted/WriteProtected (some Supermicro and Lenovo
# firmware): sent again with Image alone.
INSERT_PARAMETERS_REFUSED = Quirk(
    "InsertMedia refuses optional parameters",
    frozenset({400}),
    frozenset({"ActionParameterUnknown", "ActionParameterNotSupported", "PropertyUnknown"}),
)

# Reset types that carry out each verb, most preferred first. A plan of two reset types is sent as two
# commands (off, then on): a cycle on a BMC that offers neither PowerCycle nor ForceRestart.
RESET_PLANS: dict[PowerAction, tuple[tuple[str, ...], ...]] = {
    PowerAction.ON: (("On",), ("ForceOn",)),
    PowerAction.OFF: (("ForceOff",),),
    PowerAction.SOFT_OFF: (("GracefulShutdown",),),
    PowerAction.CYCLE: (("PowerCycle",), ("ForceRestart",), ("ForceOff", "On")),
}
OFF_RESET_TYPES = frozenset({"ForceOff", "GracefulShutdown"})
ON_RESET_TYPES = frozenset({"On", "ForceOn"})

# When a BMC lists no allowable values (neither inline nor in an ActionInfo), assume only what nearly
# every implementation takes.
ASSUMED_RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "ForceRestart")
