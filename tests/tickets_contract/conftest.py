"""Collects ticket contract targets: every ``target_*.py`` module here lists its fixtures in ``FIXTURES``
(each returns a ``TicketTarget``) and, in ``HTTP_FIXTURES``, those that talk HTTP to a simulator.
Tests asking for ``target`` run once per target; tests asking for ``http_target`` once per HTTP target."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

TARGETS: list[str] = []
HTTP_TARGETS: list[str] = []

for _mod in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if _mod.name.startswith("target_"):
        _module = importlib.import_module(f"tests.tickets_contract.{_mod.name}")
        for _name in getattr(_module, "SUPPORT", ()):
            globals()[_name] = getattr(_module, _name)
        for _name in _module.FIXTURES:
            globals()[_name] = getattr(_module, _name)
            TARGETS.append(_name)
        for _name in getattr(_module, "HTTP_FIXTURES", ()):
            HTTP_TARGETS.append(_name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_fixture" in metafunc.fixturenames:
        metafunc.parametrize("target_fixture", TARGETS)
    if "http_target_fixture" in metafunc.fixturenames:
        metafunc.parametrize("http_target_fixture", HTTP_TARGETS)


@pytest.fixture
def target(request: pytest.FixtureRequest, target_fixture: str):
    return request.getfixturevalue(target_fixture)


@pytest.fixture
def http_target(request: pytest.FixtureRequest, http_target_fixture: str):
    return request.getfixturevalue(http_target_fixture)
