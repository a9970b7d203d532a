"""Collects contract targets: every ``target_*.py`` module here lists its session fixtures in ``FIXTURES``;
each fixture returns a ``ContractTarget``. Every test that asks for ``target`` runs once per target."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

TARGET_FIXTURES: list[str] = []

for _mod in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if _mod.name.startswith("target_"):
        _module = importlib.import_module(f"tests.contract.{_mod.name}")
        for _name in _module.FIXTURES:
            globals()[_name] = getattr(_module, _name)
            TARGET_FIXTURES.append(_name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_fixture" in metafunc.fixturenames:
        metafunc.parametrize("target_fixture", TARGET_FIXTURES)


@pytest.fixture
def target(request: pytest.FixtureRequest, target_fixture: str):
    return request.getfixturevalue(target_fixture)
