"""How the CLI prints: Rich for people, ``--json`` for programs. Every printed string is redacted."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from remotehands import redaction

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


class SafeTable(Table):
    """A Rich table whose cells are plain text (a ticket title holding ``[/]`` is not markup), redacted."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = [Text(redaction.redact(c)) if isinstance(c, str) else c for c in renderables]
        super().add_row(*cells, **kwargs)


def emit(data: Any, as_json: bool, render: Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON when asked, else call ``render`` (or print ``data``)."""
    if as_json:
        plain = json.loads(json.dumps(data, default=_default))
        sys.stdout.write(json.dumps(redaction.redact_data(plain), indent=2) + "\n")
        return
    if render is not None:
        render()
    else:
        say(str(data))


def say(text: str, style: str | None = None) -> None:
    console.print(redaction.redact(text), style=style, markup=False, soft_wrap=True)


def warn(text: str) -> None:
    err_console.print(redaction.redact(text), style="yellow", markup=False, soft_wrap=True)
