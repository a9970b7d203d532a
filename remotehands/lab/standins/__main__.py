"""``python -m remotehands.lab.standins TOOL ARGS...``: run one stand-in against ``$RH_STANDIN_STATE``.

The executables in ``bin/`` come here. Every run is logged in the state (argv and exit status), failed or
not, so a test can tell what a playbook ran.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from remotehands.lab.standins.esxi import esxcli
from remotehands.lab.standins.mac import pmset, softwareupdate, sw_vers
from remotehands.lab.standins.state import STATE_ENV, edit_state, state_path

TOOLS: dict[str, Callable[[list[str], dict[str, Any]], int]] = {
    "sw_vers": sw_vers,
    "softwareupdate": softwareupdate,
    "pmset": pmset,
    "esxcli": esxcli,
}


def main(argv: list[str]) -> int:
    """Run ``argv[0]`` (a stand-in's name) with ``argv[1:]``; returns its exit status (2: no such tool,
    3: no state file)."""
    if not argv or argv[0] not in TOOLS:
        print(f"remotehands stand-ins: no tool {argv[:1]}; have {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    try:
        path = state_path()
    except KeyError:
        print(f"{argv[0]}: {STATE_ENV} is not set (this is a remotehands lab stand-in)", file=sys.stderr)
        return 3
    with edit_state(path) as state:
        rc = TOOLS[argv[0]](argv[1:], state)
        state["log"].append({"argv": argv, "rc": rc})
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
