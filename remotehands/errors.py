"""The one exception tree of remotehands.

Every error that leaves a remotehands module is a ``RemoteHandsError``. Errors from the libraries we use
(pyghmi, SQLAlchemy, hvac, ...) are translated where they enter, with ``raise ... from exc``, so callers
never need to catch a third-party type. Whether an error is worth retrying is part of its type, not a flag
somebody has to remember to set.

    RemoteHandsError                 base; ``exit_code`` says what the CLI returns
    ├── BadInput                     the request, a flag or a file is wrong (exit 2); fatal
    │   ├── ConfigError              remotehands.toml or an RH_* variable
    │   ├── InventoryError           one or more inventory problems (file, host, field each)
    │   ├── SecretError              a credential reference cannot be resolved
    │   ├── UnknownTarget            a host/device name that the inventory does not have
    │   ├── TicketNotFound           a ticket id that the ticket system does not have
    │   └── InvalidRequest           a ticket's request fails validation
    │       ├── AddressInUse         an IP address the plan has already assigned (IPAM)
    │       └── PrefixExhausted      a prefix without enough free addresses for an allocation (IPAM)
    ├── NotPermitted                 refused by policy (exit 3); fatal
    │   ├── NotApproved              the ticket is not approved at its own system
    │   ├── JobCancelled             a step stopped part-way on a cancel request
    │   ├── SelfApproval             the approver is the requester
    │   ├── WrongSubscription        a customer's ticket targets a host outside its subscription
    │   ├── TargetBusy               another active job holds the target (carries the blocking job id)
    │   └── NotAuthenticated         an API token or webhook signature is missing, wrong or stale (HTTP 401)
    ├── ActionFailed                 the equipment did not do what was asked (exit 1)
    │   ├── RetryableError           transient: timeouts, busy BMC, ticket system down; try again later
    │   │   ├── DeviceUnreachable    no answer from a BMC/PDU/device (may be a dead BMC)
    │   │   └── TicketSystemUnavailable
    │   ├── FatalError               retrying cannot help
    │   │   ├── DeviceRefused        the device answered and refused (bad credentials, unsupported command)
    │   │   ├── TicketSystemRefused  the ticket system answered and refused (credentials, a field it rejects)
    │   │   └── VerificationFailed   the action ran but the read-back does not show the expected state
    │   └── NeedsOperator            a human must look (e.g. a crash left it unknown whether a cycle was sent)
    └── InternalError                a bug in remotehands; the CLI logs the traceback and shows one line

Every message names what was wrong and what to do about it. Messages pass through the redactor when they
are rendered (``str(exc)``), so a secret value that slipped into one is masked.
"""

from __future__ import annotations

from remotehands import redaction


class RemoteHandsError(Exception):
    """Base of every remotehands error. ``retryable`` and ``exit_code`` are class attributes."""

    retryable: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message)

    def __str__(self) -> str:
        text = self.message if not self.fix else f"{self.message}. Fix: {self.fix}"
        return redaction.redact(text)


class BadInput(RemoteHandsError):
    """The input (a flag, a file, a ticket's request) is wrong; nothing was done."""

    exit_code = 2


class ConfigError(BadInput):
    """remotehands.toml or an RH_* environment variable is wrong."""


class SecretError(BadInput):
    """A credential reference (env:, file:, vault:) cannot be resolved, or a literal secret was given."""


class UnknownTarget(BadInput):
    """A host or device name the inventory does not know."""


class TicketNotFound(BadInput):
    """The ticket system has no ticket with that id."""


class InvalidRequest(BadInput):
    """A ticket's request (action, targets, params) fails validation."""


class AddressInUse(InvalidRequest):
    """An IP address asked for is already assigned in the site's IP plan; nothing was assigned."""


class PrefixExhausted(InvalidRequest):
    """No prefix of the site's IP plan has enough free addresses for the allocation; nothing was assigned."""


class InventoryError(BadInput):
    """One or more inventory problems; ``problems`` holds every one, each with file, host and field."""

    def __init__(self, problems: list[InventoryProblem]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems]
        super().__init__(
            f"{len(problems)} inventory problem(s):\n  " + "\n  ".join(lines),
            fix=None,
        )


class InventoryProblem:
    """One inventory problem: where it is (file, host, field) and what to do."""

    def __init__(self, file: str, host: str | None, field: str | None, message: str) -> None:
        self.file = file
        self.host = host
        self.field = field
        self.message = message

    def as_dict(self) -> dict[str, str | None]:
        return {
            "file": self.file,
            "host": self.host,
            "field": self.field,
            "message": redaction.redact(self.message),
        }

    def __str__(self) -> str:
        where = self.file
        if self.host:
            where += f": host {self.host}"
        if self.field:
            where += f": field {self.field}"
        return redaction.redact(f"{where}: {self.message}")

    def __repr__(self) -> str:
        return f"InventoryProblem({self!s})"


class NotPermitted(RemoteHandsError):
    """Policy refuses the action; nothing was done."""

    exit_code = 3


class NotApproved(NotPermitted):
    """The ticket is not approved at its own ticket system."""


class JobCancelled(NotPermitted):
    """A step stopped part-way because its job was cancelled on request (a playbook run)."""


class SelfApproval(NotPermitted):
    """The approver of a ticket must be someone other than its requester."""


class WrongSubscription(NotPermitted):
    """A customer's ticket may only target hosts of that customer's subscription."""


class TargetBusy(NotPermitted):
    """Another active job holds the target; ``blocking_job_id`` names it."""

    def __init__(self, target: str, blocking_job_id: int) -> None:
        self.target = target
        self.blocking_job_id = blocking_job_id
        super().__init__(
            f"target {target} is busy with job {blocking_job_id}",
            fix=f"wait for job {blocking_job_id} to finish (remotehands jobs follow {blocking_job_id}) "
            f"or cancel it (remotehands jobs cancel {blocking_job_id})",
        )


class NotAuthenticated(NotPermitted):
    """The caller could not be authenticated: no or unknown API token, a bad or stale webhook signature."""


class ActionFailed(RemoteHandsError):
    """The equipment or a system we depend on did not do what was asked."""

    exit_code = 1


class RetryableError(ActionFailed):
    """Transient failure; the same call may succeed later."""

    retryable = True


class DeviceUnreachable(RetryableError):
    """No answer from a device (BMC, PDU, switch). A BMC that stays silent may be dead."""


class TicketSystemUnavailable(RetryableError):
    """The ticket system did not accept a call; the outbox keeps the event and retries."""


class FatalError(ActionFailed):
    """Retrying cannot help."""


class DeviceRefused(FatalError):
    """The device answered and refused: bad credentials, unsupported command, invalid parameter."""


class TicketSystemRefused(FatalError):
    """The ticket system answered and refused: bad credentials, no permission, a field or value it rejects."""


class VerificationFailed(FatalError):
    """The action ran but reading the equipment back does not show the expected state."""


class NeedsOperator(ActionFailed):
    """A human has to decide; the message says what they should check."""


class InternalError(RemoteHandsError):
    """A bug in remotehands."""

    exit_code = 1
