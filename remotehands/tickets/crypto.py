"""Encryption at rest for sensitive tickets (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from the ``ticket_key`` setting as a reference (env:/file:/vault:). Without one, a key file
is created once under the state directory with mode 0600, so a single-machine install works out of the box;
a shared deployment must set ``ticket_key`` so every worker uses the same key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from remotehands import secrets
from remotehands.config import Settings, state_dir
from remotehands.errors import ConfigError

PREFIX = "fernet:"


class TicketCipher:
    """Encrypts and decrypts the sensitive parts of tickets. Loads its key lazily, on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            ref = self._settings.ticket_key
            if ref is None:
                path = state_dir() / "ticket.key"
                if not path.exists():
                    _create_key_file(path)
                ref = f"file:{path}"
            try:
                self._fernet = Fernet(secrets.resolve(ref, field="ticket_key").encode())
            except ValueError as exc:
                raise ConfigError(
                    "ticket_key does not hold a valid Fernet key",
                    fix="generate one with cryptography's Fernet.generate_key() and reference it (env:, file: or vault:)",
                ) from exc
        return self._fernet

    def encrypt_text(self, text: str) -> str:
        return PREFIX + self._key().encrypt(text.encode()).decode()

    def decrypt_text(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored
        return self.decrypt_bytes(stored[len(PREFIX) :].encode()).decode()

    def encrypt_bytes(self, data: bytes) -> bytes:
        return self._key().encrypt(data)

    def decrypt_bytes(self, token: bytes) -> bytes:
        try:
            return self._key().decrypt(token)
        except InvalidToken as exc:
            raise ConfigError(
                "cannot decrypt a sensitive ticket with the configured ticket_key",
                fix="use the key the ticket was written with (ticket_key setting)",
            ) from exc


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first; use theirs
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(Fernet.generate_key().decode())
