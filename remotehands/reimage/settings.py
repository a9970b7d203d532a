"""Settings of reimaging (tables in remotehands.toml):

[reimage]
callback_url = "https://rh.example.net:8443"    # how installers reach `remotehands serve`
install_config_dir = "/srv/tftp/remotehands"    # answer files and PXE configs for installers (TFTP/HTTP root)
install_deadline_minutes = 60                   # from the start of an install to the new OS answering
callback_deadline_minutes = 30                  # from booting a network installer to its report
poll_max_seconds = 15                           # the longest gap between two looks of a wait
volume_owner = { username = "admin", password = "vault:secret/macs#owner" }   # Apple silicon erase-install
mdm_url = "https://mdm.example.net"
mdm_key = "env:NANOMDM_API_KEY"

[images.sonoma-14-6]
os = "macos"
version = "14.6"
build = "23G80"

[images.esxi-8u3]
os = "esxi"
version = "8.0.3"
build = "24022510"
iso_url = "https://repo.example.net/esxi-8.0u3.iso"
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    os: Literal["macos", "esxi", "linux"]
    version: str = Field(min_length=1)
    build: str = Field(min_length=1)  # what the host reports after the install; verified
    iso_url: str | None = None  # virtual-media / pxe installers
    ipsw: str | None = None  # dfu-restore: the IPSW's path on the controller Mac
    netboot_server: str | None = None  # netboot: bsdp://...
    # erase-install: a package startosinstall installs after the erase (--installpackage), e.g. one that
    # creates the admin account and enables SSH, so the host comes back reachable instead of at Setup
    # Assistant.
    provisioning_package: str | None = None


class VolumeOwner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(min_length=1)
    password: str = Field(min_length=1)  # a reference


class ReimageSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    callback_url: str = "http://127.0.0.1:8080"
    # Where a reimage writes what the installer reads: answers/HOST.json (image, callback URL and the job's
    # callback token) and, for pxe, pxelinux.cfg/01-<boot mac>. The TFTP and HTTP servers serve it.
    install_config_dir: Path | None = None
    install_deadline_minutes: int = Field(default=60, ge=1)
    # pxe, virtual-media, netboot: how long after the boot the installer has to report on /callbacks/{job}
    callback_deadline_minutes: int = Field(default=30, ge=1)
    # The longest gap between two looks of a wait (the new OS, the MDM, the installer's report); the first
    # looks come sooner (0.25 s, doubling). A callback wakes its job at once whatever this is.
    poll_max_seconds: float = Field(default=15.0, gt=0)
    volume_owner: VolumeOwner | None = None
    mdm_url: str | None = None
    mdm_key: str | None = None
