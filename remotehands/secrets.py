"""Credential references: ``env:NAME``, ``file:/path`` and ``vault:path#key``.

Credentials never sit in the inventory or settings as literals; they are references resolved at the
moment of use. Every resolved value is registered with ``remotehands.redaction`` before it is returned,
so it is masked in every log line, ticket comment, attachment, DB row and exception message after that.
"""

from __future__ import annotations

import os
from pathlib import Path

from remotehands import redaction
from remotehands.errors import SecretError

SCHEMES = ("env:", "file:", "vault:")
HOW_TO_REFERENCE = (
    "put the secret in an environment variable and write 'env:NAME', in a file readable only by you and "
    "write 'file:/path/to/file', or in Vault and write 'vault:secret/path#key'"
)


def is_reference(value: str) -> bool:
    """True when ``value`` is written as a credential reference rather than a literal."""
    return value.startswith(SCHEMES)


def resolve(reference: str, *, field: str = "credential") -> str:
    """Return the secret that ``reference`` points at, registered for redaction.

    Raises ``SecretError`` naming the field and the reference (never the value) when the reference is
    malformed, the variable or file is missing or empty, or Vault cannot be read.
    """
    if not is_reference(reference):
        raise SecretError(
            f"{field} is not a credential reference",
            fix=HOW_TO_REFERENCE,
        )
    scheme, _, rest = reference.partition(":")
    if scheme == "env":
        value = _from_env(rest, field)
    elif scheme == "file":
        value = _from_file(rest, field)
    else:
        value = _from_vault(rest, field)
    if len(value) < redaction.MIN_SECRET_LENGTH:
        raise SecretError(
            f"{field}: the secret behind {reference} is shorter than {redaction.MIN_SECRET_LENGTH} characters",
            fix="use a real credential; values that short cannot be masked safely in logs",
        )
    redaction.register(value)
    return value


def _from_env(name: str, field: str) -> str:
    if not name:
        raise SecretError(f"{field}: 'env:' needs a variable name", fix="write env:NAME")
    value = os.environ.get(name)
    if not value:
        raise SecretError(
            f"{field}: environment variable {name} is not set or empty",
            fix=f"export {name} in the environment of the process that runs remotehands",
        )
    return value


def _from_file(path: str, field: str) -> str:
    if not path.startswith("/"):
        raise SecretError(
            f"{field}: 'file:' needs an absolute path, got {path!r}", fix="write file:/abs/path"
        )
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise SecretError(
            f"{field}: cannot read secret file {path}: {exc.strerror}",
            fix=f"create {path} (mode 0600) holding the secret, or fix the reference",
        ) from exc
    if not value:
        raise SecretError(f"{field}: secret file {path} is empty", fix=f"write the secret into {path}")
    return value


def _from_vault(spec: str, field: str) -> str:
    path, sep, key = spec.partition("#")
    if not path or not sep or not key:
        raise SecretError(
            f"{field}: vault reference must look like vault:path#key", fix="e.g. vault:secret/bmc#password"
        )
    addr = os.environ.get("VAULT_ADDR")
    token = os.environ.get("VAULT_TOKEN")
    if not addr or not token:
        raise SecretError(
            f"{field}: vault reference needs VAULT_ADDR and VAULT_TOKEN in the environment",
            fix="export VAULT_ADDR and VAULT_TOKEN (or use env:/file: references)",
        )
    import hvac  # imported lazily: most installs never use Vault
    import hvac.exceptions

    mount, _, sub = path.partition("/")
    try:
        client = hvac.Client(url=addr, token=token)
        data = client.secrets.kv.v2.read_secret_version(
            path=sub, mount_point=mount, raise_on_deleted_version=True
        )
        value = data["data"]["data"][key]
    except KeyError as exc:
        raise SecretError(
            f"{field}: vault secret {path} has no key {key}", fix="check the key after '#'"
        ) from exc
    except (hvac.exceptions.VaultError, OSError) as exc:
        raise SecretError(
            f"{field}: cannot read vault secret {path}: {type(exc).__name__}",
            fix="check VAULT_ADDR, the token's policy and the path",
        ) from exc
    return str(value)
