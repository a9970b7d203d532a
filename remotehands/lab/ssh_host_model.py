"""What a simulated lab host (``remotehands.lab.ssh_host``) is: its record (``SimHost``, and ``HostState``
snapshots of it), its host key, and the catalogue it draws from: the OS releases and Mac hardware that
``sw_vers``, ``esxcli``, ``/etc/os-release``, ``ioreg`` and ``system_profiler`` report, and which builds an
install can bring."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

FAULTS = frozenset(
    {"wrong_serial", "install_never_finishes", "installer_missing", "os_broken", "san_rescan_fails"}
)
MAC_KINDS = ("mac-mini", "mac-studio", "mac-pro")
KINDS = (*MAC_KINDS, "esxi", "linux")

MODELS = ("apple-silicon", "t2", "intel-legacy")


@dataclass(frozen=True)
class Release:
    """One OS release: ``version`` (macOS 14.5, ESXi 8.0.2, Ubuntu 24.04) and ``build`` (23F79, 22380479,
    or the Linux kernel release)."""

    family: str  # macos | esxi | linux
    version: str
    build: str
    label: str = ""  # Ubuntu's VERSION text


RELEASES = (
    *(
        Release("macos", v, b)
        for v, b in (
            ("11.7.10", "20G1427"),
            ("12.7.6", "21H1320"),
            ("13.7", "22H123"),
            ("14.4.1", "23E224"),
            ("14.5", "23F79"),
            ("14.6.1", "23G93"),
            ("14.7", "23H124"),
            ("15.0", "24A335"),
            ("15.1", "24B83"),
            ("15.2", "24C101"),
            ("15.3", "24D60"),
        )
    ),
    *(
        Release("esxi", v, b)
        for v, b in (
            ("7.0.3", "21930508"),
            ("8.0.1", "21495797"),
            ("8.0.2", "22380479"),
            ("8.0.3", "24022510"),
        )
    ),
    Release("linux", "22.04", "5.15.0-119-generic", "22.04.5 LTS (Jammy Jellyfish)"),
    Release("linux", "24.04", "6.8.0-45-generic", "24.04.1 LTS (Noble Numbat)"),
)
DEFAULT_RELEASE = {
    "apple-silicon": "14.5",
    "t2": "14.5",
    "intel-legacy": "12.7.6",
    "esxi": "8.0.2",
    "linux": "24.04",
}
MACOS_NAMES = {"11": "Big Sur", "12": "Monterey", "13": "Ventura", "14": "Sonoma", "15": "Sequoia"}


def find_release(family: str, value: str) -> Release:
    """The ``family`` release whose version or build is ``value``; ValueError when there is none."""
    for release in RELEASES:
        if release.family == family and value in (release.version, release.build):
            return release
    known = ", ".join(r.version for r in RELEASES if r.family == family)
    raise ValueError(f"no {family} release {value!r} in the lab's catalogue (known: {known})")


def version_key(version: str) -> tuple[int, ...]:
    """``"14.6.1"`` -> ``(14, 6, 1)``, for comparing versions."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def installer_app(version: str) -> str:
    """The name of the full installer app for macOS ``version``: ``Install macOS Sonoma.app``."""
    return f"Install macOS {MACOS_NAMES.get(version.split('.', maxsplit=1)[0], version)}.app"


@dataclass(frozen=True)
class Hardware:
    """What a Mac model reports about itself."""

    machine_model: str
    machine_name: str
    board: str  # the IOPlatformExpertDevice node in ioreg
    processor: str  # chip_type on Apple silicon, cpu_type on Intel
    speed: str  # current_processor_speed (Intel only)
    memory: str
    max_macos: int  # newest macOS major release the model runs


HARDWARE = {
    ("mac-mini", "apple-silicon"): Hardware(
        "Mac14,12", "Mac mini", "J474sAP", "Apple M2 Pro", "", "32 GB", 99
    ),
    ("mac-mini", "t2"): Hardware(
        "Macmini8,1", "Mac mini", "Macmini8,1", "6-Core Intel Core i7", "3.2 GHz", "32 GB", 15
    ),
    ("mac-mini", "intel-legacy"): Hardware(
        "Macmini7,1", "Mac mini", "Macmini7,1", "Dual-Core Intel Core i5", "2.6 GHz", "16 GB", 12
    ),
    ("mac-studio", "apple-silicon"): Hardware(
        "Mac14,13", "Mac Studio", "J475cAP", "Apple M2 Max", "", "64 GB", 99
    ),
    ("mac-pro", "apple-silicon"): Hardware(
        "Mac14,8", "Mac Pro", "J180dAP", "Apple M2 Ultra", "", "192 GB", 99
    ),
    ("mac-pro", "t2"): Hardware(
        "MacPro7,1", "Mac Pro", "MacPro7,1", "16-Core Intel Xeon W", "3.2 GHz", "96 GB", 15
    ),
    ("mac-pro", "intel-legacy"): Hardware(
        "MacPro6,1", "Mac Pro", "MacPro6,1", "6-Core Intel Xeon E5", "3.5 GHz", "64 GB", 12
    ),
}


def hardware(kind: str, model: str | None) -> Hardware:
    """The hardware of a ``kind`` Mac of ``model``; ValueError for combinations Apple never made."""
    try:
        return HARDWARE[(kind, model or "")]
    except KeyError:
        raise ValueError(f"no {kind} of model {model!r} (models: {', '.join(MODELS)})") from None


@dataclass(frozen=True)
class HostState:
    """One simulated host at one moment, as ``SshHosts.state`` reads it."""

    name: str
    kind: str
    model: str | None
    serial: str  # the true one; ``reported_serial`` is what the host says (see the wrong_serial fault)
    reported_serial: str
    version: str
    build: str
    port: int
    up: bool  # listening on its SSH port
    phase: str  # running | installing | dfu
    autorestart: bool
    erase_count: int
    mdm_enrolled: bool
    installers: tuple[str, ...]  # installer apps in /Applications
    next_boot: str | None  # "netboot" after bless --netboot
    faults: frozenset[str]
    key_fingerprint: str  # SHA256:...


@dataclass
class Install:
    """An install in progress: the host is dark until ``until`` (time.monotonic)."""

    release: Release
    erase: bool
    method: str
    until: float
    new_key: paramiko.PKey | None
    callbacks: list[Callable[[], None]] = field(default_factory=list)


@dataclass(eq=False)
class SimHost:
    """One simulated host. Mutable: change it only holding ``SshHosts.lock``."""

    name: str
    kind: str
    model: str | None
    serial: str
    version: str
    build: str
    powered: Callable[[], bool]
    key_type: str
    key: paramiko.PKey
    port: int = 0
    controller_of: str | None = None  # the target Mac this controller is paired with (USB-C, DFU)
    ecid: int = 0
    autorestart: bool = False
    erase_count: int = 0
    dep_enrolled: bool = True
    mdm_enrolled: bool = True
    installers: dict[str, Release] = field(default_factory=dict)  # app name -> what it installs
    next_boot: str | None = None
    netboot_server: str | None = None
    faults: set[str] = field(default_factory=set)
    phase: str = "running"
    install: Install | None = None
    on_since: float | None = None  # power on since (time.monotonic), None while off
    up: bool = False
    down: threading.Event = field(default_factory=threading.Event)  # set while not up

    @property
    def family(self) -> str:
        """``macos``, ``esxi`` or ``linux``."""
        return "macos" if self.kind in MAC_KINDS else self.kind

    @property
    def hardware(self) -> Hardware:
        """The Mac model's hardware (ValueError for ESXi and Linux hosts)."""
        return hardware(self.kind, self.model)

    @property
    def reported_serial(self) -> str:
        """The serial number the host reports: another, Apple-like one under the wrong_serial fault."""
        if "wrong_serial" not in self.faults:
            return self.serial
        return "C02" + hashlib.sha256(self.serial.encode()).hexdigest()[:7].upper()


def new_host_key(key_type: str = "ed25519") -> paramiko.PKey:
    """A fresh host key: ``ed25519`` (fast) or ``rsa`` (2048 bits, about 0.1 s)."""
    if key_type == "rsa":
        return paramiko.RSAKey.generate(2048)
    if key_type != "ed25519":
        raise ValueError(f"no host key type {key_type!r}: ed25519 or rsa")
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))
