"""Stand-ins for the commands of a Mac and an ESXi host, for the playbook tests.

``bin/`` holds ``sw_vers``, ``softwareupdate``, ``pmset`` and ``esxcli``: small ``sh`` scripts that run
``python -m remotehands.lab.standins TOOL`` with ``$RH_STANDIN_PYTHON`` (default ``python3``). The stand-in
sshd (``remotehands.lab.openssh``) puts ``bin/`` first on its sessions' PATH and names the host's state
file in ``RH_STANDIN_STATE``; the commands read and change that JSON file (``state.py`` describes it), so
running a playbook twice shows the second run finding the work done. They print what the real tools print
(macOS 14, ESXi 8) for the options the playbooks use; anything else gets the real tool's usage error.
"""

from pathlib import Path

from remotehands.lab.standins.state import STATE_ENV, default_state, edit_state, read_state, write_state

BIN_DIR = Path(__file__).resolve().parent / "bin"
PYTHON_ENV = "RH_STANDIN_PYTHON"

__all__ = ["BIN_DIR", "PYTHON_ENV", "STATE_ENV", "default_state", "edit_state", "read_state", "write_state"]
