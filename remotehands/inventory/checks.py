"""Checks of single inventory values (text, addresses, ports, choices, credential references), each
reporting an ``InventoryProblem`` at a ``Spot`` (file, host, dotted field) and saying what to write instead.

A check returns the value when it is good and None after reporting it, so callers carry on and every
problem is reported at once. A credential never has its value echoed: a literal password is reported by
field name only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from remotehands.errors import InventoryProblem
from remotehands.secrets import HOW_TO_REFERENCE, is_reference

CREDENTIAL_FIELDS = ("username", "password")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Spot:
    """Where a value was written (file, host, dotted field); problems about it are reported here."""

    file: str
    host: str | None
    field: str
    problems: list[InventoryProblem]

    def report(self, message: str) -> None:
        """Record ``message`` as a problem at this spot."""
        self.problems.append(InventoryProblem(self.file, self.host, self.field, message))

    @property
    def leaf(self) -> str:
        """The last part of the dotted field, as the operator wrote it."""
        return self.field.rsplit(".", 1)[-1]

    def child(self, key: str) -> Spot:
        """The spot of ``key`` inside this value (``power`` -> ``power.credentials``)."""
        return Spot(self.file, self.host, f"{self.field}.{key}", self.problems)


def type_name(value: object) -> str:
    """How a YAML value reads to an operator: 'a list', 'a number', 'true/false', ..."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def text(spot: Spot, value: object, missing: str | None) -> str | None:
    """``value`` as non-empty text; reports (``missing`` when absent and required) and returns None otherwise."""
    if value is None:
        if missing is not None:
            spot.report(missing)
        return None
    if not isinstance(value, str):
        hint = (
            f"; quote it: '{value}'" if isinstance(value, int | float) and not isinstance(value, bool) else ""
        )
        spot.report(f"{spot.leaf} must be text, not {type_name(value)}{hint}")
        return None
    if not value.strip():
        spot.report(f"{spot.leaf} is empty; write a value" + ("" if missing else " or remove it"))
        return None
    if "{{" in value or "{%" in value:
        spot.report(
            f"{spot.leaf} holds a Jinja template; remotehands reads the inventory without Ansible, write the value itself"
        )
        return None
    return value


def is_address(value: str) -> bool:
    """True for an IPv4/IPv6 address or an RFC 1123 host name (whose last label is not all digits)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.split(".")
        return len(value) <= 253 and all(_DNS_LABEL.match(x) for x in labels) and not labels[-1].isdigit()
    return True


def address(spot: Spot, value: object, missing: str | None) -> str | None:
    """``value`` as an IP address or host name; reports (``missing`` when absent and required) otherwise."""
    found = text(spot, value, missing)
    if found is not None and not is_address(found):
        spot.report(
            f"{found!r} is not an IP address or host name; write e.g. 10.1.2.42 or bmc-01.mgmt.example.net"
        )
        return None
    return found


def number(spot: Spot, value: object, low: int, high: int | None, what: str) -> int | None:
    """``value`` as a whole number in [low, high] (no upper bound when ``high`` is None), else report it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        spot.report(f"{spot.leaf} must be a whole number ({what}), not {type_name(value)}")
        return None
    if high is None and value < low:
        spot.report(f"{value} is out of range; {what} is {low} or more")
        return None
    if high is not None and not low <= value <= high:
        spot.report(f"{value} is out of range; {what} is between {low} and {high}")
        return None
    return value


def port(spot: Spot, value: object) -> int | None:
    """``value`` as a TCP/UDP port (1-65535); None when absent or after reporting it."""
    return number(spot, value, 1, 65535, "a TCP/UDP port")


def choice(spot: Spot, value: object, choices: tuple[str, ...], missing: str) -> str | None:
    """``value`` as one of ``choices``; reports ``missing`` (with the choices) or the unknown value otherwise."""
    found = text(spot, value, f"{missing}; one of: {', '.join(choices)}")
    if found is not None and found not in choices:
        spot.report(f"unknown {spot.leaf} {found!r}; valid ones are: {', '.join(choices)}")
        return None
    return found


def unknown_keys(
    spot: Spot, body: Mapping[object, object], known: tuple[str, ...], context: str = ""
) -> None:
    """Report every key of ``body`` that is not in ``known``, listing the known ones."""
    for key in body:
        if key not in known:
            spot.child(str(key)).report(
                f"unknown field {key!s}{context}; known fields are {', '.join(known)}"
            )


def secret_reference(spot: Spot, value: object) -> str | None:
    """A well-formed env:/file:/vault: reference; never echoes ``value`` in a problem."""
    if value is None:
        spot.report(f"missing password; write a credential reference: {HOW_TO_REFERENCE}")
        return None
    if not isinstance(value, str) or not is_reference(value):
        spot.report(
            f"the field holds a literal secret; never put passwords in the inventory; {HOW_TO_REFERENCE}"
        )
        return None
    scheme, _, rest = value.partition(":")
    if scheme == "env" and not _ENV_NAME.match(rest):
        spot.report(
            "malformed env: reference; it needs a variable name of letters, digits and '_', e.g. env:BMC_PASSWORD"
        )
    elif scheme == "file" and not (rest.startswith("/") and len(rest) > 1):
        spot.report(
            "malformed file: reference; it needs an absolute path, e.g. file:/etc/remotehands/bmc_password"
        )
    elif scheme == "vault" and not _is_vault_spec(rest):
        spot.report(
            "malformed vault: reference; write vault:<mount>/<path>#<key>, e.g. vault:secret/bmc#password"
        )
    else:
        return value
    return None


def _is_vault_spec(spec: str) -> bool:
    path, sep, key = spec.partition("#")
    mount, slash, sub = path.partition("/")
    return bool(sep and key and mount and slash and sub)


def credentials(spot: Spot, value: object, missing: str | None) -> dict[str, object] | None:
    """``value`` as {username, password} with a well-formed password reference; None after reporting."""
    if value is None:
        if missing is not None:
            spot.report(missing)
        return None
    if not isinstance(value, Mapping):
        # Not echoed: a bare string here is most likely the password itself.
        spot.report(
            f"{spot.leaf} must be a mapping like {{username: admin, password: env:NAME}}, not {type_name(value)}"
        )
        return None
    unknown_keys(spot, value, CREDENTIAL_FIELDS)
    username = text(spot.child("username"), value.get("username"), "missing username")
    password = secret_reference(spot.child("password"), value.get("password"))
    if username is None or password is None:
        return None
    return {"username": username, "password": password}


def problems_from_validation_error(
    exc: ValidationError, host: str | None, file_of: Callable[[str], str]
) -> list[InventoryProblem]:
    """One problem per pydantic error, its field in inventory terms; never includes the rejected input."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        parts = [str(p) for p in error["loc"]]
        if parts and parts[0] == "mgmt_address":
            parts[0] = "ansible_host"
        field = ".".join(parts) or None
        message = f"{error['msg']}; correct this value in the inventory"
        problems.append(InventoryProblem(file_of(parts[0] if parts else ""), host, field, message))
    return problems
