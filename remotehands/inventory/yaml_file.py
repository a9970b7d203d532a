"""Reading one inventory YAML file with ``yaml.safe_load``, turning any failure into an ``InventoryProblem``."""

from __future__ import annotations

from pathlib import Path

import yaml

from remotehands.errors import InventoryProblem


def load_yaml(path: Path, problems: list[InventoryProblem]) -> tuple[bool, object]:
    """Parse ``path`` with ``yaml.safe_load``; on failure append a problem (with the line) and return False."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        problems.append(
            InventoryProblem(
                file, None, None, f"cannot read the file: {reason}; fix its permissions or encoding"
            )
        )
        return False, None
    try:
        return True, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problems.append(InventoryProblem(file, None, None, _yaml_message(exc)))
        return False, None


def _yaml_message(exc: yaml.YAMLError) -> str:
    # Built from the problem and the position only: str(exc) quotes the offending line, which may hold a secret.
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown line"
    problem = str(getattr(exc, "problem", None) or "invalid YAML")
    if isinstance(exc, yaml.constructor.ConstructorError) and "!vault" in problem:
        return (
            f"YAML error at {where}: ansible-vault encrypted values (!vault) cannot be read by remotehands; "
            "use a credential reference such as vault:secret/path#key instead"
        )
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} started at line {context_mark.line + 1})"
    return f"YAML syntax error at {where}: {problem}; check the indentation and quoting there"
