"""Each directory under tests/corpus/inventory is a broken inventory plus an ``expected.yml`` listing exactly
the problems it must produce (file basename, host, field, a substring of the message), and optionally
``secret_literals`` that must never appear in any message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remotehands.errors import InventoryError, InventoryProblem
from remotehands.inventory import check_inventory, load_inventory

CORPUS = Path(__file__).parent / "corpus" / "inventory"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.yml").is_file())


def _matches(expected: dict[str, str | None], problem: InventoryProblem) -> bool:
    return (
        Path(problem.file).name == expected["file"]
        and problem.host == expected["host"]
        and problem.field == expected["field"]
        and str(expected["message"]) in problem.message
    )


def test_corpus_is_big_enough():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES)
def test_case_reports_exactly_the_expected_problems(case: str):
    spec = yaml.safe_load((CORPUS / case / "expected.yml").read_text())
    problems = check_inventory(CORPUS / case)

    unmatched = list(problems)
    missing = []
    for expected in spec["problems"]:
        found = next((p for p in unmatched if _matches(expected, p)), None)
        if found is None:
            missing.append(expected)
        else:
            unmatched.remove(found)
    assert not missing and not unmatched, (
        f"missing: {missing}\nunexpected: {[p.as_dict() for p in unmatched]}"
    )

    with pytest.raises(InventoryError) as caught:
        load_inventory(CORPUS / case)
    rendered = str(caught.value)
    assert rendered.startswith(f"{len(problems)} inventory problem(s):")
    for forbidden in ("Traceback", "ValidationError", "pydantic", "yaml.", 'File "'):
        assert forbidden not in rendered
    for literal in spec.get("secret_literals", []):
        assert str(literal) not in rendered
        assert all(str(literal) not in str(p.as_dict()) for p in problems)


@pytest.mark.parametrize("case", CASES)
def test_every_problem_names_a_file_of_its_inventory(case: str):
    for problem in check_inventory(CORPUS / case):
        assert Path(problem.file).is_relative_to(CORPUS / case)
        assert problem.message
