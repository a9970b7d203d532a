"""What a network installer reads for one job: an answer file and, for PXE, the boot entry that loads it.

``DIR`` is ``[reimage] install_config_dir``, the root the site's TFTP and HTTP servers serve:

- ``DIR/answers/HOST.json``: the image to install and how to report back (``callback``: the URL of
  ``POST /callbacks/{job}``, ``token``: the job's callback token). The installer's last act (a kickstart
  ``%firstboot``, a NetInstall post-install script) posts ``{"event": "installed", "build": ...}`` there.
- ``DIR/pxelinux.cfg/01-aa-bb-cc-dd-ee-ff`` (pxe only): the host's PXE entry, named after its boot NIC, as
  pxelinux looks it up; it boots the image's installer with the answer file.

Both are written atomically with mode 0640 and removed when the job's installer has reported. The token in
them works for that one job only and only while it runs: an installer asks ``GET /callbacks/{job}`` before
it erases anything, so one booted from the entry of a cancelled or failed job stops. ``read`` is what the
lab's installer uses.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remotehands.errors import ConfigError, InvalidRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    job: int
    host: str
    image: str
    os: str
    version: str
    build: str
    callback: str
    token: str = field(repr=False)  # the job's callback token: never in a repr, a log or an error
    media: str | None = None  # the installer image (virtual media ISO), when there is one


def directory(configured: Path | None) -> Path:
    if configured is None:
        raise InvalidRequest(
            "reimaging over the network needs a directory for the installers' answer files",
            fix="set [reimage] install_config_dir in remotehands.toml (the TFTP/HTTP root the installers read)",
        )
    return configured


def answer_path(root: Path, host: str) -> Path:
    return root / "answers" / f"{host}.json"


def pxe_path(root: Path, boot_mac: str) -> Path:
    return root / "pxelinux.cfg" / ("01-" + boot_mac.lower().replace(":", "-"))


def write(root: Path, answer: Answer, *, boot_mac: str | None = None) -> list[Path]:
    """Write the answer file (and the PXE entry when ``boot_mac``); returns the paths written.

    Raises ``ConfigError`` when the directory cannot be written."""
    try:
        return _write_both(root, answer, boot_mac)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the installer's files in {root}: {exc.strerror}",
            fix="make [reimage] install_config_dir writable by remotehands (and readable by the TFTP/HTTP servers)",
        ) from None


def _write_both(root: Path, answer: Answer, boot_mac: str | None) -> list[Path]:
    written = [answer_path(root, answer.host)]
    _write(written[0], json.dumps(asdict(answer), indent=2) + "\n")
    if boot_mac is not None:
        written.append(pxe_path(root, boot_mac))
        _write(
            written[1],
            f"# remotehands job {answer.job}: install {answer.image} on {answer.host} once (removed after)\n"
            "DEFAULT install\nLABEL install\n"
            f"  KERNEL images/{answer.image}/mboot.c32\n"
            f"  APPEND -c images/{answer.image}/boot.cfg ks=answers/{answer.host}.json\n",
        )
    return written


def remove(root: Path, host: str, boot_mac: str | None = None) -> None:
    """Remove the host's answer file and PXE entry; one that cannot be removed is left (logged): the token
    in it is refused once its job has ended."""
    paths = [answer_path(root, host)] + ([pxe_path(root, boot_mac)] if boot_mac else [])
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc.strerror)


def remove_pxe(root: Path, boot_mac: str) -> None:
    """Withdraw the PXE entry (the installer runs; a reboot must not start it again)."""
    try:
        pxe_path(root, boot_mac).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove the PXE entry for %s: %s", boot_mac, exc.strerror)


def read(root: Path, host: str) -> Answer | None:
    """The answer file for ``host``, or None when there is none (or it is not one)."""
    try:
        data = json.loads(answer_path(root, host).read_text())
        return Answer(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)
