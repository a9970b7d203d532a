"""The one log file of remotehands (rotated, every record redacted), shared by the CLI and the Ansible
modules."""

from __future__ import annotations

import logging
import logging.handlers

from remotehands import redaction
from remotehands.config import Settings

# redfish logs every request at INFO and its X-Auth-Token at DEBUG: these are kept to warnings.
NOISY = ("alembic", "pyghmi", "redfish", "httpx", "uvicorn.access", "paramiko")


def log_to_file(settings: Settings) -> str | None:
    """Send the root logger (INFO) to the settings' log file, redacted; the path, or None if it cannot be
    opened."""
    path = settings.resolved_log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    handler.addFilter(redaction.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return str(path)
